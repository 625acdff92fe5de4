"""GET with rama's HTTP client: headers go out in the order and casing given.

Run ``python examples/http_client_get.py [URL]``. Without a URL it starts a
local rama server that echoes what it received, so you can see the request
exactly as it went out; with one it fetches it and prints status, headers and
the size of the body.
"""

from __future__ import annotations

import json
import sys

import anyio

from rama_core import Context, service_fn
from rama_http import Request, Response
from rama_http.client import HttpClient
from rama_http.server import serve
from rama_net import TcpListener


async def echo(ctx: Context, req: Request) -> Response:
    """Answer with what arrived: method, target and header fields in order."""
    body = await req.read(limit=1 << 20)
    return Response.from_json(
        {
            "method": req.method,
            "target": req.target,
            "headers": req.headers.items(),
            "body": body.decode(),
        }
    )


async def fetch(url: str) -> None:
    """Fetch ``url`` and print what came back."""
    async with HttpClient() as client:
        r = await client.get(url, headers=[("X-B", "2"), ("x-a", "1")])
        print(f"status: {r.status} {r.reason_phrase}")
        for name, value in r.headers:
            print(f"header: {name}: {value}")
        body = await r.read()
        print(f"body: {len(body)} bytes")
        if r.headers.get("content-type", "").startswith("application/json"):
            echoed = json.loads(body)
            print(f"received: {echoed['method']} {echoed['target']}")
            for name, value in echoed["headers"]:
                print(f"received: {name}: {value}")
        # streaming: the body arrives chunk by chunk
        async with client.stream("POST", url, json={"hello": "world"}) as r:
            size = 0
            async for chunk in r.body:
                size += len(chunk)
            print(f"streamed: {r.status}, {size} bytes")
        print(f"pool: {client.pool_stats().idle} idle connection(s)")


async def main() -> None:
    if len(sys.argv) > 1:
        await fetch(sys.argv[1])
        return
    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(listener, service_fn(echo)))
        await fetch(f"http://127.0.0.1:{listener.local_addr.port}/hello?x=1")
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main)
