"""httpx on rama's connection stack: ``httpx.AsyncClient(transport=HttpxTransport(client))``.

Run ``python examples/httpx_transport.py [URL]``. Without a URL it starts a
local rama server. httpx keeps its API (redirects, streaming, exceptions);
rama's pool, connectors and HTTP/1.1 engine carry the bytes.
"""

from __future__ import annotations

import sys

import anyio
import httpx

from rama_core import Context, service_fn
from rama_http import Request, Response
from rama_http.client import HttpClient, HttpxTransport
from rama_http.server import serve
from rama_net import TcpListener


async def app(ctx: Context, req: Request) -> Response:
    """``/`` redirects to ``/hello``, which greets."""
    if req.path == "/":
        return Response.redirect("/hello")
    return Response.from_text(f"hello from {req.path}\n")


async def fetch(url: str) -> None:
    """Fetch ``url`` with httpx through rama."""
    rama = HttpClient()
    async with httpx.AsyncClient(transport=HttpxTransport(rama), follow_redirects=True) as client:
        r = await client.get(url)
        print(f"status: {r.status_code} {r.http_version}")
        print(f"redirects: {[h.status_code for h in r.history]}")
        print(f"body: {r.text.strip()[:200]}")
        print(f"pool: {rama.pool_stats().idle} idle connection(s)")
        try:
            await client.get("http://127.0.0.1:1/")
        except httpx.ConnectError as e:
            print(f"error: httpx.ConnectError ({type(e.__cause__).__name__} in rama)")


async def main() -> None:
    if len(sys.argv) > 1:
        await fetch(sys.argv[1])
        return
    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(listener, service_fn(app)))
        await fetch(f"http://127.0.0.1:{listener.local_addr.port}/")
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main)
