"""AsgiService: real Starlette and FastAPI apps served by rama, driven by httpx and curl,
over HTTP/1.1, h2 (prior knowledge) and TLS; the scope, streaming both ways, disconnects,
failures, lifespan."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
import httpx
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from rama_core import Shutdown
from rama_http.asgi import AsgiService, LifespanError, Receive, Scope, Send
from rama_http.server import ServerConfig, serve
from rama_net import TcpListener
from rama_tls import StaticCertResolver, TlsAcceptorConfig, self_signed

pytestmark = pytest.mark.anyio

TIMEOUT = 5.0


@asynccontextmanager
async def running(service: AsgiService, **kwargs: Any) -> AsyncIterator[str]:
    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(listener, service, **kwargs))
        scheme = "https" if "tls" in kwargs else "http"
        yield f"{scheme}://127.0.0.1:{listener.local_addr.port}"
        tg.cancel_scope.cancel()


# -- a FastAPI app -------------------------------------------------------------------------
class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


events: list[str] = []


def token(x_token: Annotated[str, Header()]) -> str:
    """A dependency (module level: FastAPI resolves the string annotations here)."""
    if x_token != "secret":
        raise HTTPException(status_code=401, detail="bad token")
    return x_token


def make_fastapi() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        yield {"db": {"answer": 42}}
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/items/{item_id}")
    async def get_item(item_id: int, q: str | None = None) -> dict[str, Any]:
        return {"item_id": item_id, "q": q}

    @app.post("/items")
    async def create_item(item: Item) -> dict[str, Any]:
        return {"created": item.name, "total": item.price * 2, "tags": item.tags}

    @app.get("/private")
    async def private(tok: Annotated[str, Depends(token)]) -> dict[str, str]:
        return {"token": tok}

    @app.get("/state")
    async def state(request: StarletteRequest) -> dict[str, Any]:
        return {"db": request.state.db}

    @app.get("/sync")
    def sync_route() -> dict[str, str]:  # runs in a worker thread
        return {"sync": "yes"}

    done = anyio.Event()
    app.state.bg_done = done

    async def slow_job(tag: str) -> None:
        await anyio.sleep(0.2)
        events.append(f"bg:{tag}")
        done.set()

    @app.get("/count")
    async def count(n: int = 3) -> StreamingResponse:
        async def numbers() -> AsyncIterator[bytes]:
            for i in range(n):
                yield b"%d\n" % i
                await anyio.sleep(0)

        return StreamingResponse(numbers(), media_type="text/plain")

    @app.post("/size")
    async def size(request: StarletteRequest) -> dict[str, int]:
        chunks = [len(c) async for c in request.stream()]
        return {"bytes": sum(chunks)}

    @app.post("/jobs/{tag}")
    async def job(tag: str, background: BackgroundTasks) -> dict[str, str]:
        background.add_task(slow_job, tag)
        return {"queued": tag}

    return app


async def test_fastapi_routes_validation_and_dependencies() -> None:
    async with (
        running(AsgiService(make_fastapi())) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as c,
    ):
        r = await c.get("/items/7", params={"q": "x y"})
        assert r.status_code == 200
        assert r.json() == {"item_id": 7, "q": "x y"}
        r = await c.get("/items/seven")  # path param of the wrong type
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["path", "item_id"]
        r = await c.post("/items", json={"name": "pen", "price": 1.5, "tags": ["a"]})
        assert r.status_code == 200, r.text
        assert r.json() == {"created": "pen", "total": 3.0, "tags": ["a"]}
        r = await c.post("/items", json={"name": "pen"})  # Pydantic: price missing
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "price"]
        r = await c.post(
            "/items", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422
        assert (await c.get("/private", headers={"x-token": "secret"})).json() == {
            "token": "secret"
        }
        assert (await c.get("/private", headers={"x-token": "nope"})).status_code == 401
        assert (await c.get("/private")).status_code == 422  # missing header
        assert (await c.get("/sync")).json() == {"sync": "yes"}
        assert (await c.get("/missing")).status_code == 404
        r = await c.head("/items/1")
        assert r.status_code == 405  # FastAPI routes GET only


async def test_fastapi_lifespan_state_and_background_tasks() -> None:
    events.clear()
    app = make_fastapi()
    async with AsgiService(app) as svc:
        assert events == ["startup"]
        async with running(svc) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as c:
            assert (await c.get("/state")).json() == {"db": {"answer": 42}}
            started = anyio.current_time()
            r = await c.post("/jobs/one")
            assert r.json() == {"queued": "one"}
            # the answer came before the background job (0.2 s) ran
            assert anyio.current_time() - started < 0.2
            assert "bg:one" not in events
            with anyio.fail_after(TIMEOUT):
                await app.state.bg_done.wait()
            assert "bg:one" in events
    assert events[-1] == "shutdown"


async def test_h2_prior_knowledge_with_httpx() -> None:
    async with (
        running(AsgiService(make_fastapi())) as url,
        httpx.AsyncClient(base_url=url, http1=False, http2=True, timeout=TIMEOUT) as c,
    ):
        r = await c.get("/items/3")
        assert r.http_version == "HTTP/2"
        assert r.json() == {"item_id": 3, "q": None}
        r = await c.post("/items", json={"name": "x", "price": 2})
        assert r.json()["total"] == 4.0
        r = await c.get("/count", params={"n": 500})
        assert r.text == "".join(f"{i}\n" for i in range(500))

        async def upload() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"u" * 30000
                await anyio.sleep(0)

        r = await c.post("/size", content=upload())
        assert r.json() == {"bytes": 300000}
        rs = await _gather(*(lambda i=i: c.get(f"/items/{i}") for i in range(20)))
        assert sorted(r.json()["item_id"] for r in rs) == list(range(20))


async def _gather(*fns: Callable[[], Any]) -> list[Any]:
    out: list[Any] = [None] * len(fns)

    async def one(i: int) -> None:
        out[i] = await fns[i]()

    async with anyio.create_task_group() as tg:
        for i in range(len(fns)):
            tg.start_soon(one, i)
    return out


# -- scope ---------------------------------------------------------------------------------
def scope_app(seen: list[dict[str, Any]]) -> Callable[[Scope, Receive, Send], Any]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        seen.append(dict(scope))
        out = {
            k: (v.decode("latin-1") if isinstance(v, bytes) else v)
            for k, v in scope.items()
            if k not in ("headers", "state", "extensions")
        }
        out["headers"] = [[k.decode(), v.decode()] for k, v in scope["headers"]]
        out["body"] = len(body)
        tls = scope.get("extensions", {}).get("tls")
        if tls is not None:
            out["tls"] = {k: v for k, v in tls.items() if k != "client_hello"}
        data = json.dumps(out).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"X-Seen", b"1")],
            }
        )
        await send({"type": "http.response.body", "body": data})

    return app


async def test_scope_http11_and_h2() -> None:
    seen: list[dict[str, Any]] = []
    svc = AsgiService(scope_app(seen), root_path="/api/", state={"k": "v"})
    async with running(svc) as url:
        async with httpx.AsyncClient(timeout=TIMEOUT) as c:
            r = await c.post(
                url + "/a%20b/c%2Fd?x=1&y=%20",
                content=b"hello",
                headers=[("X-First", "1"), ("x-SECOND", "2"), ("X-First", "3")],
            )
        s = r.json()
        assert r.headers["x-seen"] == "1"
        assert s["type"] == "http"
        assert s["asgi"] == {"version": "3.0", "spec_version": "2.4"}
        assert s["http_version"] == "1.1"
        assert s["method"] == "POST"
        assert s["scheme"] == "http"
        assert s["root_path"] == "/api"
        assert s["path"] == "/api/a b/c/d"  # decoded, with the root path in front
        assert s["raw_path"] == "/api/a%20b/c%2Fd"
        assert s["query_string"] == "x=1&y=%20"
        names = [k for k, _ in s["headers"]]
        assert names == [n.lower() for n in names]
        custom = [h for h in s["headers"] if h[0] in ("x-first", "x-second")]
        assert custom == [["x-first", "1"], ["x-second", "2"], ["x-first", "3"]]
        assert s["client"][0] == "127.0.0.1"
        assert isinstance(s["client"][1], int)
        assert s["server"] == ["127.0.0.1", int(url.rsplit(":", 1)[1])]
        assert s["body"] == 5
        assert seen[0]["state"] == {"k": "v"}
        assert seen[0]["state"] is not svc.state
        assert isinstance(seen[0]["raw_path"], bytes)
        async with httpx.AsyncClient(http1=False, http2=True, timeout=TIMEOUT) as c:
            r = await c.get(url + "/h2%21?q")
        s = r.json()
        assert s["http_version"] == "2"
        assert s["path"] == "/api/h2!"
        assert s["query_string"] == "q"
        assert ["x-seen", "1"] not in s["headers"]


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "5", *args], capture_output=True, text=True)


async def test_curl_http11_h2_and_tls(require_peer: Callable[[str], str]) -> None:
    require_peer("curl")
    tls = TlsAcceptorConfig(resolver=StaticCertResolver(default=self_signed("localhost")))
    async with running(AsgiService(scope_app([])), tls=tls, plaintext=True) as url:
        port = url.rsplit(":", 1)[1]
        p = await anyio.to_thread.run_sync(
            lambda: _curl("-d", "abc", f"http://127.0.0.1:{port}/curl?z=9")
        )
        s = json.loads(p.stdout)
        assert s["http_version"] == "1.1"
        assert s["body"] == 3
        assert s["scheme"] == "http"
        assert "tls" not in s
        p = await anyio.to_thread.run_sync(
            lambda: _curl("--http2-prior-knowledge", f"http://127.0.0.1:{port}/h2c")
        )
        assert json.loads(p.stdout)["http_version"] == "2"
        p = await anyio.to_thread.run_sync(
            lambda: _curl("-k", "--http2", f"https://127.0.0.1:{port}/t")
        )
        s = json.loads(p.stdout)
        assert s["scheme"] == "https"
        assert s["http_version"] == "2"
        t = s["tls"]
        assert t["tls_version"] == 0x0304
        assert isinstance(t["cipher_suite"], int)
        assert t["alpn_protocol"] == "h2"
        assert t["client_cert_chain"] == []
        ja4 = t["ja4"]
        # curl to an IP sends no SNI: "i" in the JA4 head
        assert ja4.startswith("t13i"), ja4
        assert len(ja4.split("_")) == 3
        assert t["ja4_r"].startswith("t13i")
        assert len(t["ja3"]) == 32
        p = await anyio.to_thread.run_sync(
            lambda: _curl("-k", "--http1.1", f"https://127.0.0.1:{port}/t")
        )
        s1 = json.loads(p.stdout)
        assert s1["http_version"] == "1.1"
        # same client, other ALPN list: the JA4's ALPN part differs (h2 vs h1)
        assert ja4.split("_")[0][-2:] == "h2"
        assert s1["tls"]["ja4"].split("_")[0][-2:] == "h1"


async def test_tls_extension_matches_the_acceptor_fingerprint() -> None:
    from rama_tls import ClientHello, ja4

    recorded: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        hello = scope["extensions"]["tls"]["client_hello"]
        assert isinstance(hello, ClientHello)
        recorded.append(ja4(hello).text)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send(
            {"type": "http.response.body", "body": scope["extensions"]["tls"]["ja4"].encode()}
        )

    tls = TlsAcceptorConfig(resolver=StaticCertResolver(default=self_signed("localhost")))
    async with (
        running(AsgiService(app, lifespan="off"), tls=tls) as url,
        httpx.AsyncClient(verify=False, timeout=TIMEOUT) as c,
    ):
        r = await c.get(url + "/")
        assert r.text == recorded[0]
        assert r.text.startswith("t1")


# -- streaming -----------------------------------------------------------------------------
async def test_streaming_response_arrives_incrementally_and_disconnect() -> None:
    release = anyio.Event()
    closed = anyio.Event()

    async def stream(request: StarletteRequest) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            try:
                yield b"first\n"
                await release.wait()
                yield b"second\n"
            finally:
                closed.set()

        return StreamingResponse(gen(), media_type="text/plain")

    async def upload(request: StarletteRequest) -> JSONResponse:
        sizes = [len(c) async for c in request.stream()]
        return JSONResponse({"chunks": len([s for s in sizes if s]), "total": sum(sizes)})

    app = Starlette(routes=[Route("/stream", stream), Route("/upload", upload, methods=["POST"])])
    async with running(AsgiService(app)) as url, httpx.AsyncClient(timeout=TIMEOUT) as c:
        async with c.stream("GET", url + "/stream") as r:
            it = r.aiter_raw()
            assert r.headers["content-type"].startswith("text/plain")
            with anyio.fail_after(TIMEOUT):
                assert await it.__anext__() == b"first\n"  # before the generator goes on
            release.set()
            rest = b"".join([c async for c in it])
            assert rest == b"second\n"

        async def body() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"y" * 10000
                await anyio.sleep(0.01)

        r = await c.post(url + "/upload", content=body())
        assert r.json()["total"] == 50000
        assert r.json()["chunks"] >= 2


async def test_client_leaving_an_endless_stream_is_told_to_the_app() -> None:
    told: list[str] = []
    done = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return

        async def listen() -> None:  # the pre-2.4 way: a receive() that returns disconnect
            while (await receive())["type"] != "http.disconnect":
                pass
            told.append("receive")

        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            try:
                while True:
                    await send(
                        {"type": "http.response.body", "body": b"x" * 4096, "more_body": True}
                    )
                    await anyio.sleep(0.001)
            except OSError:  # the 2.4 way: send raises once the client is gone
                told.append("send")
            with anyio.fail_after(TIMEOUT):
                while "receive" not in told:
                    await anyio.sleep(0.01)
        done.set()

    async with (
        running(AsgiService(app, lifespan="off")) as url,
        httpx.AsyncClient(timeout=TIMEOUT) as c,
    ):
        async with c.stream("GET", url + "/forever") as r:
            n = 0
            async for chunk in r.aiter_raw():
                n += len(chunk)
                if n > 50000:
                    break
        with anyio.fail_after(TIMEOUT):
            await done.wait()
    assert sorted(told) == ["receive", "send"]


async def test_disconnect_after_response_and_raw_streaming_app() -> None:
    got: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        assert (await receive())["more_body"] is False
        await send({"type": "http.response.start", "status": 201, "headers": [(b"x-a", b"b")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"%d" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        with anyio.fail_after(TIMEOUT):
            got.append((await receive())["type"])

    async with running(AsgiService(app)) as url, httpx.AsyncClient(timeout=TIMEOUT) as c:
        r = await c.get(url + "/")
        assert r.status_code == 201
        assert r.text == "012"
        assert r.headers["x-a"] == "b"
        with anyio.fail_after(TIMEOUT):
            while not got:
                await anyio.sleep(0.01)
        assert got == ["http.disconnect"]


# -- failures ------------------------------------------------------------------------------
async def test_app_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/before":
            raise RuntimeError("secret internals")
        if scope["path"] == "/none":
            return
        if scope["path"] == "/bad-header":
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"x", b"a\r\nb")]}
            )
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        await anyio.sleep(0.05)
        raise RuntimeError("after start")

    caplog.set_level(logging.INFO)
    async with (
        running(AsgiService(app, lifespan="off")) as url,
        httpx.AsyncClient(timeout=TIMEOUT) as c,
    ):
        r = await c.get(url + "/before")
        assert r.status_code == 500
        assert "secret" not in r.text
        errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
        assert len(errors) == 1
        assert errors[0].exc_info is not None
        r = await c.get(url + "/none")
        assert r.status_code == 500
        r = await c.get(url + "/bad-header")
        assert r.status_code == 500
        assert "\r\n" not in r.headers.get("x", "")
        caplog.clear()
        with pytest.raises(httpx.HTTPError):
            async with c.stream("GET", url + "/after") as resp:
                async for _ in resp.aiter_raw():
                    pass
        errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
        assert len(errors) == 1
        assert "after start" in str(errors[0].exc_info)
        # the server goes on
        assert (await c.get(url + "/before")).status_code == 500


# -- lifespan ------------------------------------------------------------------------------
async def test_lifespan_startup_failure_raises() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.raises(LifespanError, match="no database"):
        async with AsgiService(app):
            pass

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("lifespan not supported")

    async with AsgiService(broken):  # auto: goes on without
        pass
    with pytest.raises(LifespanError):
        async with AsgiService(broken, lifespan="on"):
            pass
    async with AsgiService(broken, lifespan="off"):
        pass
    with pytest.raises(ValueError, match="lifespan"):
        AsgiService(broken, lifespan="maybe")  # type: ignore[arg-type]


async def test_lifespan_driven_by_shutdown() -> None:
    events.clear()
    app = make_fastapi()
    listener = TcpListener.bind("127.0.0.1:0")
    url = f"http://127.0.0.1:{listener.local_addr.port}"
    with anyio.fail_after(TIMEOUT):
        async with Shutdown(grace=2, signals=None) as shutdown:
            shutdown.spawn(serve, listener, AsgiService(app))
            async with httpx.AsyncClient(timeout=TIMEOUT) as c:
                r = await c.get(url + "/state")  # startup ran before the first request
                assert r.json() == {"db": {"answer": 42}}
            assert events == ["startup"]
            shutdown.trigger("test")
    assert events == ["startup", "shutdown"]


async def test_plain_text_and_many_requests_on_one_connection() -> None:
    async def hello(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse("hi " + request.path_params["n"])

    app = Starlette(routes=[Route("/hi/{n}", hello)])
    async with running(AsgiService(app)) as url, httpx.AsyncClient(timeout=TIMEOUT) as c:
        for i in range(50):
            r = await c.get(f"{url}/hi/{i}")
            assert r.text == f"hi {i}"


async def test_request_body_over_the_server_limit_is_413() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"b" * 1000
            await anyio.sleep(0)

    config = ServerConfig(max_body_size=4000)
    async with (
        running(AsgiService(make_fastapi()), config=config) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as c,
    ):
        r = await c.post("/size", content=chunks())  # chunked: the limit trips mid-body
        assert r.status_code == 413
        r = await c.post("/size", content=b"x" * 100)
        assert r.json() == {"bytes": 100}
