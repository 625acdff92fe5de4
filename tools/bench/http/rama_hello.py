"""rama-http hello-world server for tools/bench/bench_http.sh.

Usage: rama_hello.py PORT ENGINE [uvloop] [server] [profile]
Serves ``hello`` (text/plain, 5 bytes) on 127.0.0.1:PORT with the given
HTTP/1.1 engine (fast, h11, httptools, auto). ``server`` uses the auto server
(``rama_http.server.serve``: h1 and h2 on one port, preface detection) instead
of the HTTP/1.1-only server. ``profile`` writes a pyinstrument report to
stderr when the process gets SIGINT.
"""

from __future__ import annotations

import signal
import sys

import anyio

from rama_core import service_fn
from rama_http import Response
from rama_http.server import Http1Server, ServerConfig
from rama_http.server import serve as serve_auto
from rama_net import TcpListener

__all__ = ["main"]

_HEADERS = [("content-type", "text/plain")]


async def hello(ctx: object, req: object) -> Response:
    """The same trivial handler as the ASGI app the others serve."""
    return Response(200, headers=_HEADERS, body=b"hello")


async def serve(port: int, engine: str, auto: bool) -> None:
    """Serve until cancelled."""
    listener = TcpListener.bind(f"127.0.0.1:{port}")
    cfg = ServerConfig(http1_engine=engine, date_header=True)  # type: ignore[arg-type]
    if auto:
        await serve_auto(listener, service_fn(hello), cfg)
    else:
        await listener.serve(Http1Server(service_fn(hello), cfg))


def main() -> None:
    """Parse argv and run."""
    port, engine = int(sys.argv[1]), sys.argv[2]
    flags = set(sys.argv[3:])
    profiler = None
    if "profile" in flags:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled", interval=0.0005)
        profiler.start()

        def stop(*_: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
    try:
        anyio.run(
            serve,
            port,
            engine,
            "server" in flags,
            backend_options={"use_uvloop": "uvloop" in flags},
        )
    except KeyboardInterrupt:
        pass
    finally:
        if profiler is not None:
            profiler.stop()
            sys.stderr.write(profiler.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    main()
