"""An HTTP/1.1 server with rama-http: hello, echo, streaming and a JA4H endpoint.

Run:  python examples/http_hello.py [--listen 127.0.0.1:0] [--engine auto|fast|h11|httptools]
                                    [--backend asyncio|trio]

It prints ``listening on HOST:PORT`` once it accepts connections, then serves
until SIGINT (Ctrl-C) or SIGTERM. Shutdown is graceful: idle keep-alive
connections are closed at once, requests in flight get ``--grace`` seconds to
finish (answered with ``Connection: close``), then it prints ``stopped (REASON)``.

Routes:

- ``GET /``: ``hello`` as text;
- ``POST /echo``: the request body back (at most 1 MiB), with the request's
  header names in a ``X-Header-Names`` response header, order and casing kept;
- ``GET /stream?n=N``: N numbered lines, streamed with chunked encoding;
- ``GET /ja4h``: the client's JA4H fingerprint and its raw form, as JSON.

What it shows: a handler is ``async def (ctx, request) -> Response``;
``Http1Server`` plugs it into a ``TcpListener``; ``ServerConfig`` holds the
limits (sizes, timeouts) and picks the HTTP/1.1 engine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Sequence

import anyio

from rama_core import Context, Shutdown, service_fn
from rama_http import Body, Request, Response
from rama_http.fingerprint import Ja4hFingerprint
from rama_http.server import Http1Server, ServerConfig
from rama_net import TcpListener

__all__ = ["handle", "main", "run"]


async def _lines(n: int) -> AsyncIterator[bytes]:
    for i in range(n):
        yield f"line {i}\n".encode()
        await anyio.sleep(0)


@service_fn
async def handle(ctx: Context, req: Request) -> Response:
    """Route a request (see module docs)."""
    path = req.path
    if path == "/" and req.method in ("GET", "HEAD"):
        return Response.from_text("hello\n")
    if path == "/echo" and req.method == "POST":
        body = await req.read(limit=1 << 20)
        names = ",".join(req.headers.names())
        return Response.from_bytes(body, headers=[("X-Header-Names", names)])
    if path == "/stream":
        query = dict(p.partition("=")[::2] for p in (req.query or "").split("&") if p)
        n = min(int(query.get("n", "3") or 3), 10_000)
        return Response(
            200, headers=[("Content-Type", "text/plain")], body=Body.from_iter(_lines(n))
        )
    if path == "/ja4h":
        fp = Ja4hFingerprint.from_request(req)
        return Response.from_json({"ja4h": fp.text, "ja4h_r": fp.raw})
    return Response.error(404)


async def run(listen: str, engine: str, grace: float) -> None:
    """Serve until a signal asks to stop."""
    listener = TcpListener.bind(listen)
    config = ServerConfig(
        http1_engine=engine,  # type: ignore[arg-type]
        max_body_size=1 << 20,
        header_read_timeout=10,
        keep_alive_timeout=30,
        server_header="rama-example",
    )
    async with Shutdown(grace=grace) as shutdown:
        shutdown.spawn(listener.serve, Http1Server(handle, config))  # joins the Shutdown
        print(f"listening on {listener.local_addr}", flush=True)
    # "forced" when a second signal cut the drain short
    print(f"stopped ({shutdown.outcome})", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="HTTP/1.1 hello server (rama-http example)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: any)")
    parser.add_argument("--engine", default="auto", choices=["auto", "fast", "h11", "httptools"])
    parser.add_argument("--grace", type=float, default=5.0, help="drain seconds on shutdown")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args(argv)
    anyio.run(run, args.listen, args.engine, args.grace, backend=args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
