"""HttpClient against the rama server and raw sockets: wire exactness, API, pooling."""

from __future__ import annotations

import gzip
import json
import zlib

import anyio
import pytest
from rama_http_client_peer import RawServer, answering, echo, rama_server

from rama_core import Context
from rama_http import Request, Response
from rama_http.client import HttpClient, HTTPStatusError, ReadTimeout

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["fast", "h11", "httptools"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_entry_point_headers_in_order_and_casing(engine: str) -> None:
    captured: list[bytes] = []
    srv = RawServer(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", capture=captured))
    async with srv.run(), HttpClient(http1_engine=engine) as c:
        r = await c.get(f"http://127.0.0.1:{srv.port}/p?x=1", headers=[("X-B", "2"), ("x-a", "1")])
        assert r.status == 200
        assert isinstance(r.status, int)
        assert await r.read() == b"ok"
    assert captured == [
        f"GET /p?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nX-B: 2\r\nx-a: 1\r\n\r\n".encode()
    ]


async def test_callers_host_keeps_its_place(engine: str) -> None:
    captured: list[bytes] = []
    srv = RawServer(answering(b"HTTP/1.1 204 No Content\r\n\r\n", capture=captured))
    async with srv.run(), HttpClient(http1_engine=engine) as c:
        r = await c.post(
            f"http://127.0.0.1:{srv.port}/",
            headers=[("X-First", "1"), ("host", "virt.example")],
            content=b"abc",
        )
        assert r.status == 204
    assert (
        captured[0]
        == b"POST / HTTP/1.1\r\nX-First: 1\r\nhost: virt.example\r\nContent-Length: 3\r\n\r\n"
    )


async def test_against_rama_server_keep_alive_and_json(engine: str) -> None:
    async with (
        rama_server(echo) as port,
        HttpClient(http1_engine=engine, base_url=f"http://127.0.0.1:{port}/api") as c,
    ):
        r1 = await c.post("/items", params={"q": "a b"}, json={"k": [1, 2]})
        d = await r1.json()
        assert d["method"] == "POST"
        assert d["target"] == "/api/items?q=a+b"
        assert json.loads(d["body"]) == {"k": [1, 2]}
        assert ["Content-Type", "application/json"] in d["headers"]
        r2 = await c.put("/x", data={"a": "1"})
        assert (await r2.json())["body"] == "a=1"
        stats = c.pool_stats()
        assert stats.idle == 1
        assert stats.active == 0
        assert c.pool.connector is not None
        # both requests used one connection
        assert sum(len(v) for v in c.pool._conns.values()) == 1
        r3 = await c.delete("/d")
        assert r3.status == 200
        r4 = await c.head("/h")
        assert r4.status == 200
        assert await r4.read() == b""
        r5 = await c.options("/o")
        assert r5.status == 200
        r6 = await c.patch("/p", content="z")
        assert (await r6.json())["body"] == "z"


async def test_stream_and_text_and_raise_for_status() -> None:
    async def handler(ctx: Context, req: Request) -> Response:
        if req.path == "/missing":
            return Response.from_text("nope", status=404)

        async def gen():  # type: ignore[no-untyped-def]
            for i in range(5):
                yield b"chunk%d;" % i

        from rama_http import Body

        return Response(
            200,
            headers=[("Content-Type", "text/plain; charset=latin-1")],
            body=Body.from_iter(gen()),
        )

    async with rama_server(handler) as port, HttpClient() as c:
        async with c.stream("GET", f"http://127.0.0.1:{port}/s") as r:
            assert r.status == 200
            chunks = [ch async for ch in r.body]
        assert b"".join(chunks) == b"".join(b"chunk%d;" % i for i in range(5))
        r = await c.get(f"http://127.0.0.1:{port}/missing")
        assert await r.text() == "nope"
        with pytest.raises(HTTPStatusError) as ei:
            r.raise_for_status()
        assert ei.value.response.status == 404
        assert c.pool_stats().active == 0


async def test_decompression() -> None:
    import brotli
    import zstandard

    payload = b"hello " * 1000
    bodies = {
        "gzip": gzip.compress(payload),
        "deflate": zlib.compress(payload),
        "br": brotli.compress(payload),
        "zstd": zstandard.ZstdCompressor().compress(payload),
    }

    async def handler(ctx: Context, req: Request) -> Response:
        coding = req.path.strip("/")
        return Response(200, headers=[("Content-Encoding", coding)], body=bodies[coding])

    async with rama_server(handler) as port, HttpClient() as c:
        for coding in bodies:
            r = await c.get(
                f"http://127.0.0.1:{port}/{coding}", headers={"Accept-Encoding": coding}
            )
            assert await r.read() == payload, coding


async def test_redirects_strip_credentials_cross_origin() -> None:
    seen: dict[str, list[tuple[str, str]]] = {}

    async def other(ctx: Context, req: Request) -> Response:
        seen["other"] = req.headers.items()
        return Response.from_text("landed")

    async with rama_server(other) as other_port:

        async def first(ctx: Context, req: Request) -> Response:
            if req.path == "/start":
                return Response(302, headers=[("Location", "/same")])
            if req.path == "/same":
                seen["same"] = req.headers.items()
                return Response(307, headers=[("Location", f"http://localhost:{other_port}/far")])
            return Response.from_text("?", status=500)

        async with rama_server(first) as port, HttpClient() as c:
            r = await c.get(
                f"http://127.0.0.1:{port}/start",
                headers=[("Authorization", "Bearer s3cret"), ("Cookie", "a=b"), ("X-Keep", "1")],
            )
            assert await r.text() == "landed"
            assert [h.status for h in r.history] == [302, 307]
            assert r.url == f"http://localhost:{other_port}/far"
            assert ("Authorization", "Bearer s3cret") in seen["same"]
            names = [n.lower() for n, _ in seen["other"]]
            assert "authorization" not in names
            assert "cookie" not in names
            assert "x-keep" in names
            r = await c.get(f"http://127.0.0.1:{port}/start", follow_redirects=False)
            assert r.status == 302


async def test_too_many_redirects() -> None:
    from rama_http.client import TooManyRedirects

    async def loop(ctx: Context, req: Request) -> Response:
        return Response(302, headers=[("Location", "/again")])

    async with rama_server(loop) as port, HttpClient(max_redirects=3) as c:
        with pytest.raises(TooManyRedirects):
            await c.get(f"http://127.0.0.1:{port}/")
        assert c.pool_stats().active == 0


async def test_cookies_basic_auth_and_multipart() -> None:
    async def handler(ctx: Context, req: Request) -> Response:
        if req.path == "/login":
            return Response(
                200, headers=[("Set-Cookie", "sid=42; Path=/"), ("Set-Cookie", "x=1; Max-Age=0")]
            )
        return await echo(ctx, req)

    async with rama_server(handler) as port, HttpClient(auth=("user", "pw")) as c:
        base = f"http://127.0.0.1:{port}"
        await c.get(f"{base}/login")
        d = await (
            await c.post(
                f"{base}/up", data={"f": "v"}, files={"file": ("a.txt", b"DATA", "text/plain")}
            )
        ).json()
        hdrs = dict((n.lower(), v) for n, v in d["headers"])
        assert hdrs["cookie"] == "sid=42"
        assert hdrs["authorization"] == "Basic dXNlcjpwdw=="
        assert hdrs["content-type"].startswith("multipart/form-data; boundary=")
        assert 'name="file"; filename="a.txt"' in d["body"]
        assert "DATA" in d["body"]
        assert 'name="f"' in d["body"]


async def test_read_timeout_is_typed_and_leaks_nothing(engine: str) -> None:
    async def stall(stream, n):  # type: ignore[no-untyped-def]
        await anyio.sleep(30)

    srv = RawServer(stall)
    async with srv.run(), HttpClient(http1_engine=engine, timeout=0.3) as c:
        with anyio.fail_after(5):
            with pytest.raises(ReadTimeout):
                await c.get(f"http://127.0.0.1:{srv.port}/")
        s = c.pool_stats()
        assert (s.idle, s.active, s.connecting) == (0, 0, 0)


def _expect_server(mode: str, got: list[bytes]):  # type: ignore[no-untyped-def]
    async def handler(stream, n):  # type: ignore[no-untyped-def]
        from rama_http_client_peer import read_head

        head, rest = await read_head(stream)
        if not head:
            return
        if mode == "reject":
            await stream.send(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
            try:
                with anyio.move_on_after(0.5):
                    while chunk := await stream.receive():
                        rest += chunk
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
            got.append(rest)
            return
        if mode == "continue":
            await stream.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        while len(rest) < 5:
            rest += await stream.receive()
        got.append(rest)
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + rest[:5])

    return handler


@pytest.mark.parametrize("mode", ["continue", "ignore", "reject"])
async def test_expect_100_continue(engine: str, mode: str) -> None:
    got: list[bytes] = []
    srv = RawServer(_expect_server(mode, got))
    async with srv.run(), HttpClient(http1_engine=engine) as c:
        with anyio.fail_after(5):
            r = await c.post(
                f"http://127.0.0.1:{srv.port}/",
                headers=[("Expect", "100-continue")],
                content=b"hello",
            )
        if mode == "reject":
            assert r.status == 417
            assert c.pool_stats().total == 0  # the unsent body: not reusable
            with anyio.fail_after(2):
                while not got:
                    await anyio.sleep(0.01)
        else:
            assert r.status == 200
            assert await r.read() == b"hello"
            assert c.pool_stats().idle == 1
    if mode == "reject":
        assert got == [b""]  # the body never went out


async def test_streamed_upload_is_chunked_and_response_trailers_arrive(engine: str) -> None:
    from rama_http import Body, Headers

    async def handler(ctx: Context, req: Request) -> Response:
        data = await req.read()

        async def gen():  # type: ignore[no-untyped-def]
            yield data.upper()

        te = req.headers.get("transfer-encoding", "")
        return Response(
            200,
            headers=[("X-TE", te)],
            body=Body.from_iter(gen(), trailers=Headers([("X-Checksum", str(len(data)))])),
        )

    async def upload():  # type: ignore[no-untyped-def]
        for part in (b"abc", b"def", b"ghi"):
            yield part

    async with rama_server(handler) as port, HttpClient(http1_engine=engine) as c:
        r = await c.post(f"http://127.0.0.1:{port}/", content=upload())
        assert r.headers.get("x-te") == "chunked"
        assert await r.read() == b"ABCDEFGHI"
        assert r.trailers is not None
        assert r.trailers.get("x-checksum") == "9"
        assert c.pool_stats().idle == 1


async def test_client_is_a_service() -> None:
    from rama_core import Service

    async with rama_server(echo) as port, HttpClient(follow_redirects=False) as c:
        assert isinstance(c, Service)
        resp = await c.serve(
            Context(), Request("GET", f"http://127.0.0.1:{port}/svc", headers=[("X-A", "1")])
        )
        assert resp.status == 200
        d = json.loads(await resp.body.read())
        assert d["target"] == "/svc"
        assert d["headers"][1] == ["X-A", "1"]
