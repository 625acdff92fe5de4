"""One handler for HTTP/1.1 and HTTP/2, cleartext and TLS, with rama-http's auto server.

Run:  python examples/http_auto_server.py [--listen 127.0.0.1:0] [--tls-listen 127.0.0.1:0]
                                          [--cert-out cert.pem] [--backend asyncio|trio]

It prints ``listening on HOST:PORT`` (cleartext: HTTP/1.1, and h2 with prior
knowledge, told apart by the first bytes) and ``tls on HOST:PORT`` (TLS with a
self-signed certificate made at start; ALPN picks h2 or http/1.1). With
``--cert-out`` the certificate is written there so clients can verify it.
SIGINT or SIGTERM shut down gracefully: h2 connections get GOAWAY, requests in
flight finish, idle connections close; then it prints ``stopped (REASON)``.

Routes:

- ``GET /``: which HTTP version and method the handler saw;
- ``GET /fp``: for h2, the client's Akamai HTTP/2 fingerprint (from the
  SETTINGS, WINDOW_UPDATE, PRIORITY frames and pseudo-header order it sent), as JSON;
- ``GET /slow?s=N``: answers after N seconds (try it during a shutdown).
"""

from __future__ import annotations

import argparse
import functools
import ssl
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import anyio

from rama_core import Context, Shutdown, service_fn
from rama_http import H2PrefaceRecord, Request, Response
from rama_http.fingerprint import AkamaiH2Fingerprint
from rama_http.server import serve
from rama_net import TcpListener
from rama_tls import self_signed

__all__ = ["handle", "main", "run"]


@service_fn
async def handle(ctx: Context, req: Request) -> Response:
    """Route a request (see module docs)."""
    path = req.target.split("?", 1)[0]
    if path == "/":
        return Response.from_text(f"{req.version} {req.method}\n")
    if path == "/fp":
        record = ctx.get(H2PrefaceRecord)
        if record is None:
            return Response.from_json({"version": str(req.version), "akamai": None})
        fp = AkamaiH2Fingerprint.from_record(record)
        return Response.from_json({"version": str(req.version), "akamai": fp.text, "hash": fp.hash})
    if path == "/slow":
        query = dict(p.partition("=")[::2] for p in req.target.partition("?")[2].split("&") if p)
        await anyio.sleep(min(float(query.get("s", "1") or 1), 30))
        return Response.from_text("slow done\n")
    return Response.from_text("not found\n", 404)


def _tls_context(cert_out: Path | None) -> ssl.SSLContext:
    ck = self_signed("localhost", "127.0.0.1", "::1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as d:
        cert, key = Path(d) / "cert.pem", Path(d) / "key.pem"
        cert.write_bytes(ck.cert_pem())
        key.write_bytes(ck.key_pem())
        ctx.load_cert_chain(cert, key)
    # serve() uses the context as it is: its ALPN protocols decide h2 or HTTP/1.1
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    if cert_out is not None:
        cert_out.write_bytes(ck.cert_pem())
    return ctx


async def run(listen: str, tls_listen: str, cert_out: Path | None, grace: float) -> None:
    """Serve both listeners until a signal asks to stop."""
    plain = TcpListener.bind(listen)
    tls = TcpListener.bind(tls_listen)
    ssl_ctx = _tls_context(cert_out)
    async with Shutdown(grace=grace) as shutdown:
        # no ctx= needed: servers started in the block join the Shutdown
        shutdown.spawn(serve, plain, handle)
        shutdown.spawn(functools.partial(serve, tls, handle, ssl_context=ssl_ctx))
        print(f"listening on {plain.local_addr}", flush=True)
        print(f"tls on {tls.local_addr}", flush=True)
    # "forced" when a second signal cut the drain short
    print(f"stopped ({shutdown.outcome})", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="HTTP/1.1 + h2 auto server (rama-http example)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="cleartext host:port")
    parser.add_argument("--tls-listen", default="127.0.0.1:0", help="TLS host:port")
    parser.add_argument("--cert-out", type=Path, help="write the self-signed certificate here")
    parser.add_argument("--grace", type=float, default=5.0, help="drain seconds on shutdown")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args(argv)
    anyio.run(run, args.listen, args.tls_listen, args.cert_out, args.grace, backend=args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
