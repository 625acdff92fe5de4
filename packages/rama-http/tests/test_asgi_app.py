"""AsgiApp: a rama service (a Router with typed handlers) mounted under a real uvicorn,
driven by httpx: routing, JSON, request and response streaming, failures, lifespan."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
import uvicorn

from rama_core import Context, service_fn
from rama_http import Body, Request, Response
from rama_http.asgi import AsgiApp
from rama_http.web import Router
from rama_net import SocketInfo

pytestmark = [
    pytest.mark.anyio,
    # uvicorn runs on asyncio (and uvloop) only
    pytest.mark.parametrize(
        "anyio_backend",
        [
            pytest.param("asyncio", id="asyncio"),
            pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        ],
    ),
]

TIMEOUT = 5.0


def make_router() -> Router:
    router = Router()

    @service_fn
    async def hello(ctx: Context, req: Request) -> Response:
        info = ctx.get(SocketInfo)
        return Response.from_json(
            {
                "path": req.path,
                "query": req.query,
                "version": str(req.version),
                "peer": str(info.peer_addr.ip) if info else None,
                "ua": req.headers.get("user-agent"),
            }
        )

    @service_fn
    async def echo(ctx: Context, req: Request) -> Response:
        n = 0
        chunks = 0
        async for chunk in req.body:
            n += len(chunk)
            chunks += 1
        return Response.from_json({"bytes": n, "chunks": chunks})

    @service_fn
    async def stream(ctx: Context, req: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            for i in range(5):
                yield f"part{i}\n".encode()
                await anyio.sleep(0.01)

        return Response(200, headers=[("Content-Type", "text/plain")], body=Body.from_iter(gen()))

    @service_fn
    async def fail(ctx: Context, req: Request) -> Response:
        raise RuntimeError("internal detail")

    router.route("/hello/{name}", hello, methods=["GET"])
    router.route("/echo", echo, methods=["POST"])
    router.route("/stream", stream, methods=["GET"])
    router.route("/fail", fail, methods=["GET"])
    return router


@asynccontextmanager
async def uvicorn_serving(app: Any) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: server.serve(sockets=[sock]))
        with anyio.fail_after(TIMEOUT):
            while not server.started:
                await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
    sock.close()


async def test_rama_router_under_uvicorn(caplog: pytest.LogCaptureFixture) -> None:
    async with (
        uvicorn_serving(AsgiApp(make_router())) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as c,
    ):
        r = await c.get("/hello/world?x=1", headers={"user-agent": "t"})
        assert r.status_code == 200
        assert r.json() == {
            "path": "/hello/world",
            "query": "x=1",
            "version": "HTTP/1.1",
            "peer": "127.0.0.1",
            "ua": "t",
        }
        assert r.headers["content-type"] == "application/json"

        async def body() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"z" * 5000
                await anyio.sleep(0.01)

        r = await c.post("/echo", content=body())
        assert r.json()["bytes"] == 20000
        assert r.json()["chunks"] >= 2
        r = await c.post("/echo", content=b"abc")
        assert r.json() == {"bytes": 3, "chunks": 1}

        async with c.stream("GET", "/stream") as resp:
            assert resp.headers.get("transfer-encoding") == "chunked"
            parts = [p async for p in resp.aiter_text()]
        assert "".join(parts) == "".join(f"part{i}\n" for i in range(5))

        r = await c.get("/fail")
        assert r.status_code == 500
        assert "internal detail" not in r.text
        assert any(rec.exc_info for rec in caplog.records if rec.name == "rama.http.asgi")
        assert (await c.get("/nowhere")).status_code == 404
        assert (await c.post("/hello/x")).status_code == 405
        assert (await c.head("/hello/x")).status_code == 200  # the router's automatic HEAD


async def test_asgi_app_round_trip_through_asgi_service() -> None:
    """rama -> ASGI -> rama: AsgiService(AsgiApp(router)) on rama's own server."""
    from rama_http.asgi import AsgiService
    from rama_http.server import serve
    from rama_net import TcpListener

    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(listener, AsgiService(AsgiApp(make_router()))))
        url = f"http://127.0.0.1:{listener.local_addr.port}"
        async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as c:
            r = await c.get("/hello/loop")
            assert json.loads(r.text)["path"] == "/hello/loop"
            r = await c.post("/echo", content=b"x" * 100000)
            assert r.json()["bytes"] == 100000
            assert (await c.get("/stream")).text.count("part") == 5
        tg.cancel_scope.cancel()
