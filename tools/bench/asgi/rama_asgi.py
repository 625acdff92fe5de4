"""rama's ASGI host serving tools/bench/asgi/fastapi_app.py for tools/bench/bench_asgi.sh.

Usage: rama_asgi.py PORT [ENGINE] [asyncio|uvloop]   (defaults: httptools, uvloop)
Serves the FastAPI app through ``AsgiService`` on rama's auto server
(HTTP/1.1 + h2) until SIGINT/SIGTERM (a graceful rama Shutdown).
"""

from __future__ import annotations

import sys

import anyio

from rama_core import Shutdown
from rama_http.asgi import AsgiService
from rama_http.server import ServerConfig, serve
from rama_net import TcpListener

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from fastapi_app import app

__all__ = ["main"]


async def run(port: int, engine: str) -> None:
    """Serve until SIGINT/SIGTERM (graceful: drain, then lifespan shutdown)."""
    listener = TcpListener.bind(f"127.0.0.1:{port}")
    cfg = ServerConfig(http1_engine=engine, date_header=True)  # type: ignore[arg-type]
    async with AsgiService(app) as service, Shutdown(grace=2):
        await serve(listener, service, cfg)


def main() -> None:
    """Parse argv and run."""
    port = int(sys.argv[1])
    engine = sys.argv[2] if len(sys.argv) > 2 else "httptools"
    loop = sys.argv[3] if len(sys.argv) > 3 else "uvloop"

    anyio.run(
        run, port, engine, backend="asyncio", backend_options={"use_uvloop": loop == "uvloop"}
    )


if __name__ == "__main__":
    main()
