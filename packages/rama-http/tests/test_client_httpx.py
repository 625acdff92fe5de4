"""httpx.AsyncClient on the rama client through HttpxTransport, tested with httpx's own API."""

from __future__ import annotations

import anyio
import httpx
import pytest
from anyio.abc import SocketStream
from rama_http_client_peer import RawServer, echo, rama_server, read_head

from rama_core import Context
from rama_http import Body, Request, Response
from rama_http.client import HttpClient, HttpxTransport

pytestmark = pytest.mark.anyio


async def handler(ctx: Context, req: Request) -> Response:
    if req.path == "/redirect":
        return Response(302, headers=[("Location", "/echo")])
    if req.path == "/stream":

        async def gen():  # type: ignore[no-untyped-def]
            for i in range(3):
                yield b"part%d" % i

        return Response(200, body=Body.from_iter(gen()))
    return await echo(ctx, req)


async def test_httpx_api_through_rama() -> None:
    async with rama_server(handler) as port:
        rama = HttpClient()
        async with httpx.AsyncClient(
            transport=HttpxTransport(rama), base_url=f"http://127.0.0.1:{port}"
        ) as c:
            r = await c.post("/echo", json={"a": 1}, headers={"X-Custom-Header": "Kept"})
            assert r.status_code == 200
            d = r.json()
            assert d["method"] == "POST"
            assert d["body"] == '{"a":1}'
            assert ["X-Custom-Header", "Kept"] in d["headers"]
            assert r.http_version == "HTTP/1.1"
            async with c.stream("GET", "/stream") as s:
                parts = [p async for p in s.aiter_bytes()]
            assert b"".join(parts) == b"part0part1part2"
            # redirects are httpx's business: off by default, on when asked
            r = await c.get("/redirect")
            assert r.status_code == 302
            r = await c.get("/redirect", follow_redirects=True)
            assert r.status_code == 200
            assert [h.status_code for h in r.history] == [302]
            assert rama.pool_stats().active == 0
        # closing httpx closed the rama pool
        assert rama.pool_stats().total == 0


async def test_errors_map_to_httpx_exceptions() -> None:
    async def stall(stream: SocketStream, n: int) -> None:
        await read_head(stream)
        if n == 0:
            await anyio.sleep(30)
        else:
            await stream.send(b"HTTP/1.1 200 OK\r\nX-Bad: a\rb\r\nContent-Length: 0\r\n\r\n")

    srv = RawServer(stall)
    async with srv.run():
        async with httpx.AsyncClient(transport=HttpxTransport(HttpClient()), timeout=0.3) as c:
            with anyio.fail_after(5), pytest.raises(httpx.ReadTimeout):
                await c.get(f"http://127.0.0.1:{srv.port}/")
            with pytest.raises(httpx.RemoteProtocolError):
                await c.get(f"http://127.0.0.1:{srv.port}/")
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()
        async with httpx.AsyncClient(transport=HttpxTransport(HttpClient())) as c:
            with pytest.raises(httpx.ConnectError):
                await c.get(f"http://127.0.0.1:{port}/")
