"""Serve a directory over HTTP: validators, ranges, precompressed files, compression.

Run:  python examples/static_files.py [--root DIR] [--listen 127.0.0.1:0] [--listing]

It prints ``listening on HOST:PORT``, then serves until SIGINT or SIGTERM.
``/`` serves the directory (``index.html`` if present, or an index page with
``--listing``); ``/healthz`` answers ``ok``. Responses carry ETag and
Last-Modified (304 on revalidation), honour Range (206, multipart ranges,
416), use ``.br``/``.zst``/``.gz`` siblings when the client accepts them,
and text without a sibling is compressed on the fly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from rama_core import Shutdown
from rama_http.layers import AccessLogLayer, CompressionLayer
from rama_http.server import HttpServer
from rama_http.web import HealthService, Router, ServeDir
from rama_net import TcpListener

__all__ = ["build", "main"]


def build(root: Path, *, listing: bool) -> Router:
    """The routes: health probes, then the directory."""
    router = Router()
    health = HealthService(livez_path="/healthz", readyz_path="/readyz")
    router.route("/healthz", health, methods=["GET", "HEAD"])
    router.route("/readyz", health, methods=["GET", "HEAD"])
    files = ServeDir(root, listing=listing, cache_control="public, max-age=60")
    router.fallback(files)
    return router


async def run(listen: str, root: Path, listing: bool) -> None:
    """Serve until a signal asks to stop."""
    listener = TcpListener.bind(listen)
    service = AccessLogLayer("common").layer(CompressionLayer().layer(build(root, listing=listing)))
    async with Shutdown(grace=2.0) as shutdown:
        shutdown.spawn(listener.serve, HttpServer(service))
        print(f"listening on {listener.local_addr}", flush=True)
    print(f"stopped ({shutdown.outcome})", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="static file server (rama-http example)")
    parser.add_argument("--root", type=Path, default=Path("."), help="directory to serve")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: any)")
    parser.add_argument("--listing", action="store_true", help="index pages for directories")
    args = parser.parse_args(argv)
    anyio.run(run, args.listen, args.root.resolve(), args.listing)
    return 0


if __name__ == "__main__":
    sys.exit(main())
