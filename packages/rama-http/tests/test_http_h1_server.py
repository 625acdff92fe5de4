"""The HTTP/1.1 server over real loopback sockets, run against every engine.

Every test is parametrized over the engines (h11, the pure-Python fast
parser, httptools) and, through the ``anyio_backend`` fixture, over asyncio
and trio. Clients are the ones users meet: httpx, curl, the ``websockets``
client, and raw sockets for what those refuse to send.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import ByteStream
from rama_http_h1_peer import RawClient, echo, hello, http1_server
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Message, TextMessage
from wsproto.utilities import generate_accept_token

from rama_core import Context, Shutdown
from rama_http import Body, Request, Response
from rama_http.server import available_engines

pytestmark = pytest.mark.anyio


@pytest.fixture(params=available_engines())
def engine(request: pytest.FixtureRequest) -> str:
    """Every HTTP/1.1 engine installed here (httptools is a dev dependency)."""
    return str(request.param)


def test_every_engine_is_tested() -> None:
    assert sorted(available_engines()) == ["fast", "h11", "httptools"]


# -- basics over httpx -----------------------------------------------------------------


async def test_httpx_keep_alive_and_header_casing_both_ways(engine: str) -> None:
    async with http1_server(echo, engine) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            sent = [("X-Custom-Header", "One"), ("x-second", "two"), ("X-MiXeD", "3")]
            r1 = await client.get("/a?b=c", headers=sent)
            r2 = await client.post("/post", content=b"payload")
    assert r1.status_code == 200
    data = r1.json()
    assert data["target"] == "/a?b=c"
    assert data["version"] == "HTTP/1.1"
    names = [n for n, _ in data["headers"]]
    # httpx puts its own headers first, then ours in the order and casing given
    assert names[-3:] == ["X-Custom-Header", "x-second", "X-MiXeD"]
    raw_names = [n for n, _ in r1.headers.raw]
    assert b"X-Custom-Header" in raw_names
    assert b"x-lower" in raw_names
    assert r2.json()["body"] == "payload"
    assert r2.json()["method"] == "POST"
    # same connection: same client port
    assert r1.json()["peer_port"] == r2.json()["peer_port"]


async def test_streamed_request_and_response_bodies_with_httpx(engine: str) -> None:
    async def stream_back(ctx: Context, req: Request) -> Response:
        writer, body = Body.channel()

        async def produce() -> None:
            async with writer:
                async for chunk in req.body:
                    await writer.send(chunk.upper())

        # The body streams while the request body is still arriving.
        ctx.executor.spawn(produce)
        return Response(200, body=body)

    async def upload() -> AsyncIterator[bytes]:
        for i in range(50):
            yield b"abc%d," % i

    async with http1_server(stream_back, engine) as port:
        async with httpx.AsyncClient() as client:
            r = await client.post(f"http://127.0.0.1:{port}/", content=upload())
    assert r.status_code == 200
    assert r.headers["transfer-encoding"] == "chunked"
    assert r.content == b"".join(b"ABC%d," % i for i in range(50))


async def test_handler_error_is_a_500_and_the_server_keeps_serving(engine: str) -> None:
    async def boom(ctx: Context, req: Request) -> Response:
        if req.path == "/boom":
            raise RuntimeError("handler bug")
        return Response.from_text("fine")

    async with http1_server(boom, engine) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            r1 = await client.get("/boom")
            r2 = await client.get("/ok")
    assert r1.status_code == 500
    assert r2.status_code == 200
    assert r2.text == "fine"


# -- curl --------------------------------------------------------------------------------


async def test_curl_keep_alive_upload_and_casing(
    engine: str, require_peer: Callable[[str], str]
) -> None:
    curl = require_peer("curl")
    async with http1_server(echo, engine) as port:
        url = f"http://127.0.0.1:{port}"
        result = await anyio.run_process(
            [
                curl, "-sS", "--http1.1", "-v", "-H", "X-Curl-Case: Yes",
                f"{url}/one", f"{url}/two",
            ]
        )  # fmt: skip
        upload = await anyio.run_process(
            [curl, "-sS", "--http1.1", "-H", "Transfer-Encoding: chunked",
             "--data-binary", "@-", f"{url}/up"],
            input=b"x" * 100_000,
        )  # fmt: skip
    err = result.stderr.decode()
    assert "Re-using existing connection" in err or "Reusing existing connection" in err
    assert "< X-Custom-Header: Kept" in err
    assert "< x-lower: kept" in err
    first, second = (
        json.loads(line) for line in result.stdout.decode().replace("}{", "}\n{").split("\n")
    )
    assert first["target"] == "/one"
    assert second["target"] == "/two"
    assert ["X-Curl-Case", "Yes"] in first["headers"]
    up = json.loads(upload.stdout)
    assert up["body"] == "x" * 100_000
    assert ["Transfer-Encoding", "chunked"] in up["headers"]


# -- framing over raw sockets --------------------------------------------------------------


async def test_pipelined_requests_are_answered_in_order(engine: str) -> None:
    async with http1_server(echo, engine) as port, RawClient.connect(port) as c:
        await c.send(
            b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
            b"HEAD /3 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /4 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
            b"GET /5 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        r1 = await c.response()
        r2 = await c.response()
        r3 = await c.response(head_request=True)
        r4 = await c.response()
        r5 = await c.response()
        assert await c.at_eof()
    assert [r1.json()["target"], r2.json()["target"], r4.json()["target"]] == ["/1", "/2", "/4"]
    assert r2.json()["body"] == "hello"
    assert r4.json()["body"] == "abc"
    assert r3.status == 200
    assert r3.get("content-length") is not None
    assert r3.body == b""
    assert r5.json()["target"] == "/5"
    assert r5.get("connection") == "close"


async def test_chunked_in_and_out_with_trailers(engine: str) -> None:
    async def trailers(ctx: Context, req: Request) -> Response:
        data = await req.read()
        got = req.body.trailers
        writer, body = Body.channel(buffer=4)

        async def produce() -> None:
            async with writer:
                await writer.send(data)
                await writer.send(b"-tail")
                await writer.send_trailers(
                    Headers_([("X-Checksum", str(len(data))), ("X-Got", got["x-t"] if got else "")])
                )

        ctx.executor.spawn(produce)
        return Response(200, body=body)

    async with http1_server(trailers, engine) as port, RawClient.connect(port) as c:
        await c.send(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: trailer-value\r\n\r\n"
        )
        r = await c.response()
    assert r.get("transfer-encoding") == "chunked"
    assert r.body == b"hello world-tail"
    assert ("X-Checksum", "11") in r.trailers
    assert ("X-Got", "trailer-value") in r.trailers


def Headers_(pairs: list[tuple[str, str]]) -> Any:
    from rama_http import Headers

    return Headers(pairs)


async def test_head_never_carries_a_body_and_keeps_the_connection(engine: str) -> None:
    async def big(ctx: Context, req: Request) -> Response:
        if req.path == "/stream":

            async def chunks() -> AsyncIterator[bytes]:
                yield b"a" * 1000

            return Response(200, body=Body.from_iter(chunks()))
        return Response.from_bytes(b"b" * 1000)

    async with http1_server(big, engine) as port, RawClient.connect(port) as c:
        await c.send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
        r1 = await c.response(head_request=True)
        await c.send(b"HEAD /stream HTTP/1.1\r\nHost: a\r\n\r\n")
        r2 = await c.response(head_request=True)
        await c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        r3 = await c.response()
    assert r1.get("content-length") == "1000"
    assert r2.status == 200
    assert r3.body == b"b" * 1000


async def test_expect_100_continue(engine: str) -> None:
    async def guarded(ctx: Context, req: Request) -> Response:
        if req.headers.get("x-allow") != "yes":
            return Response.error(403)
        return Response.from_bytes(await req.read())

    async with http1_server(guarded, engine) as port:
        async with RawClient.connect(port) as c:
            await c.send(
                b"PUT / HTTP/1.1\r\nHost: a\r\nX-Allow: yes\r\nContent-Length: 4\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            interim = await c.response()
            assert interim.status == 100
            await c.send(b"data")
            final = await c.response()
            assert final.status == 200
            assert final.body == b"data"
        async with RawClient.connect(port) as c:
            # Refused before the body was asked for: no 100, and the connection
            # closes since the unread body would otherwise be parsed as a request.
            await c.send(
                b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
            )
            refused = await c.response()
            assert refused.status == 403
            assert refused.get("connection") == "close"
            assert await c.at_eof()
        async with httpx.AsyncClient() as client:
            r = await client.put(
                f"http://127.0.0.1:{port}/",
                content=b"z" * 5000,
                headers={"Expect": "100-continue", "X-Allow": "yes"},
            )
        assert r.status_code == 200
        assert r.content == b"z" * 5000


async def test_http10_closes_after_the_response(engine: str) -> None:
    async with http1_server(echo, engine) as port, RawClient.connect(port) as c:
        await c.send(b"GET /old HTTP/1.0\r\n\r\n")
        r = await c.response()
        assert r.json()["version"] == "HTTP/1.0"
        assert await c.at_eof()


# -- CONNECT and Upgrade ---------------------------------------------------------------------


async def test_connect_hands_over_the_raw_stream(engine: str) -> None:
    async def tunnel(ctx: Context, req: Request) -> Response:
        assert req.is_connect
        assert req.target == "example.com:443"

        async def echo_upper(stream: ByteStream) -> None:
            while True:
                try:
                    data = await stream.receive()
                except anyio.EndOfStream:
                    return
                await stream.send(data.upper())

        return Response(200, on_upgrade=echo_upper)

    async with http1_server(tunnel, engine) as port, RawClient.connect(port) as c:
        # Bytes right behind the request must reach the tunnel, not the parser.
        await c.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nearly ")
        r = await c.response(head_request=True)
        assert r.status == 200
        assert r.get("content-length") is None
        assert r.get("transfer-encoding") is None
        assert await c.read_exactly(6) == b"EARLY "
        await c.send(b"GET / HTTP/1.1\r\n")
        assert await c.read_exactly(16) == b"GET / HTTP/1.1\r\n"


async def test_connect_refused_keeps_parsing_http(engine: str) -> None:
    async def deny(ctx: Context, req: Request) -> Response:
        if req.is_connect:
            return Response.error(403)
        return Response.from_text("after")

    async with http1_server(deny, engine) as port, RawClient.connect(port) as c:
        await c.send(
            b"CONNECT x:1 HTTP/1.1\r\nHost: x:1\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        r1 = await c.response()
        r2 = await c.response()
    assert r1.status == 403
    assert r2.status == 200
    assert r2.body == b"after"


async def _ws_handler(ctx: Context, req: Request) -> Response:
    if req.headers.get("upgrade", "").lower() != "websocket":
        return Response.error(426)
    key = req.headers["sec-websocket-key"]

    async def run(stream: ByteStream) -> None:
        ws = Connection(ConnectionType.SERVER)
        while True:
            try:
                data = await stream.receive()
            except anyio.EndOfStream:
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, TextMessage):
                    await stream.send(ws.send(Message(data=f"echo: {event.data}")))
                elif isinstance(event, CloseConnection):
                    await stream.send(ws.send(event.response()))
                    return

    return Response(
        101,
        headers=[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", generate_accept_token(key.encode()).decode()),
        ],
        on_upgrade=run,
    )


async def test_websocket_upgrade_with_the_websockets_client(engine: str) -> None:
    from websockets.sync.client import connect

    def client(port: int) -> list[str]:
        with connect(f"ws://127.0.0.1:{port}/chat", open_timeout=5, close_timeout=5) as ws:
            ws.send("hi")
            first = str(ws.recv(timeout=5))
            ws.send("again")
            second = str(ws.recv(timeout=5))
        return [first, second]

    async with http1_server(_ws_handler, engine) as port:
        with anyio.fail_after(20):
            got = await anyio.to_thread.run_sync(client, port)
    assert got == ["echo: hi", "echo: again"]


async def test_upgrade_declined_is_a_normal_response(engine: str) -> None:
    async with http1_server(hello, engine) as port, RawClient.connect(port) as c:
        await c.send(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n"
            b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        r1 = await c.response()
        r2 = await c.response()
    assert r1.status == 200
    assert r2.status == 200


# -- limits and malformed input --------------------------------------------------------------


_POST = b"POST / HTTP/1.1\r\nHost: a\r\n"
_CHUNKED = _POST + b"Transfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n", 400),
        (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 5000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-H: v\r\n" * 40 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: v\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400),
        (_POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX", 400),
        (_CHUNKED + b"400\r\n" + b"a" * 1024 + b"\r\n1000\r\n" + b"b" * 4096, 413),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ],
    ids=[
        "garbage", "bad-request-line", "long-target", "big-header", "many-headers",
        "bad-header-name", "no-host", "body-too-large", "bad-content-length", "cl-and-te",
        "bad-chunk-size", "missing-chunk-crlf", "chunked-too-large", "http2-request-line",
    ],
)  # fmt: skip
async def test_malformed_requests_get_a_4xx_and_others_keep_working(
    engine: str, request_bytes: bytes, status: int
) -> None:
    limits: dict[str, Any] = {
        "max_request_line": 2048,
        "max_header_size": 4096,
        "max_headers": 30,
        "max_body_size": 4096,
    }
    async with http1_server(echo, engine, **limits) as port:
        async with RawClient.connect(port) as good, RawClient.connect(port) as bad:
            # a healthy keep-alive connection, opened before and used after
            await good.send(b"GET /before HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await good.response()).status == 200
            await bad.send(request_bytes)
            r = await bad.response()
            assert r.status == status, r.body
            assert r.get("connection") == "close"
            assert await bad.at_eof()
            await good.send(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await good.response()).json()["target"] == "/after"


async def test_slow_client_gets_408_and_others_are_served(engine: str) -> None:
    async with http1_server(hello, engine, header_read_timeout=0.5) as port:
        async with RawClient.connect(port) as slow:
            await slow.send(b"GET / HTTP/1.1\r\nHo")
            with anyio.fail_after(5):
                async with RawClient.connect(port) as fast:
                    await fast.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                    assert (await fast.response()).status == 200
                r = await slow.response()
            assert r.status == 408
            assert await slow.at_eof()


async def test_slow_body_gets_408(engine: str) -> None:
    async with http1_server(echo, engine, body_read_timeout=0.5) as port:
        async with RawClient.connect(port) as slow:
            await slow.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
            with anyio.fail_after(5):
                r = await slow.response()
            assert r.status == 408
            assert await slow.at_eof()


async def test_idle_keep_alive_connection_is_closed(engine: str) -> None:
    async with http1_server(hello, engine, keep_alive_timeout=0.3) as port:
        async with RawClient.connect(port) as c:
            await c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await c.response()).status == 200
            start = anyio.current_time()
            assert await c.at_eof(timeout=5)
            assert anyio.current_time() - start < 3


async def test_client_that_stops_reading_is_dropped_after_the_write_timeout(engine: str) -> None:
    closed = anyio.Event()

    async def endless(ctx: Context, req: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"x" * 65536
            finally:
                closed.set()

        return Response(200, body=Body.from_iter(chunks()))

    async with http1_server(endless, engine, write_timeout=0.5) as port:
        async with RawClient.connect(port) as c:
            await c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            # never read: the socket buffers fill, the server's write waits, then gives up
            with anyio.fail_after(20):
                await closed.wait()
        # the server is fine afterwards
        async with RawClient.connect(port) as other:
            await other.send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await other.response(head_request=True)).status == 200


async def test_handler_returning_garbage_is_a_500(engine: str) -> None:
    async def wrong(ctx: Context, req: Request) -> Any:
        return "not a response"

    async with http1_server(wrong, engine) as port, RawClient.connect(port) as c:
        await c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await c.response()).status == 500


async def test_peer_vanishing_mid_body_does_not_hurt_the_server(engine: str) -> None:
    seen: list[str] = []

    async def reader(ctx: Context, req: Request) -> Response:
        try:
            await req.read()
        except Exception as e:
            seen.append(type(e).__name__)
            raise
        return Response.from_text("ok")

    async with http1_server(reader, engine) as port:
        async with RawClient.connect(port) as c:
            await c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
            await anyio.sleep(0.1)
        with anyio.fail_after(5):
            while not seen:
                await anyio.sleep(0.02)
        async with httpx.AsyncClient() as client:
            r = await client.get(f"http://127.0.0.1:{port}/")
    assert seen == ["BodyError"]
    assert r.status_code == 200


# -- graceful shutdown --------------------------------------------------------------------


async def test_graceful_shutdown_finishes_in_flight_and_closes_idle(engine: str) -> None:
    started = anyio.Event()
    release = anyio.Event()

    async def slow(ctx: Context, req: Request) -> Response:
        if req.path == "/slow":
            started.set()
            await release.wait()
            return Response.from_text("finished")
        return Response.from_text("quick")

    async with Shutdown(grace=10, signals=None) as sd:
        async with http1_server(slow, engine, shutdown=sd) as port:
            async with RawClient.connect(port) as idle, RawClient.connect(port) as busy:
                await idle.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                assert (await idle.response()).status == 200
                await busy.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
                with anyio.fail_after(5):
                    await started.wait()
                sd.trigger()
                # the idle keep-alive connection is closed at once
                assert await idle.at_eof(timeout=5)
                # the in-flight request still gets its answer, with Connection: close
                release.set()
                r = await busy.response()
                assert r.body == b"finished"
                assert r.get("connection") == "close"
                assert await busy.at_eof()
            # no new connections are accepted
            with pytest.raises(OSError, match=r"refused|Connect call failed|All connection"):
                with anyio.fail_after(5):
                    while True:
                        s = await anyio.connect_tcp("127.0.0.1", port)
                        await s.aclose()
                        await anyio.sleep(0.05)
    assert sd.report is not None
    assert sd.report.clean


async def test_handler_answers_with_a_wrong_content_length_get_a_500(engine: str) -> None:
    async def lying(ctx: Context, req: Request) -> Response:
        return Response(200, headers=[("Content-Length", "10")], body=b"abc")

    async with http1_server(lying, engine) as port:
        async with RawClient.connect(port) as c:
            await c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            resp = await c.response()
            assert resp.status == 500
        async with RawClient.connect(port) as other:  # the server is fine afterwards
            # a HEAD answer may announce any size: no error there
            await other.send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
            head = await other.response(head_request=True)
            assert (head.status, head.get("content-length")) == (200, "10")


async def test_transfer_encoding_wins_over_a_handler_content_length(engine: str) -> None:
    async def both(ctx: Context, req: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"hello "
            yield b"world"

        headers = [("Content-Length", "3"), ("Transfer-Encoding", "chunked")]
        return Response(200, headers=headers, body=Body.from_iter(chunks()))

    async with http1_server(both, engine) as port, RawClient.connect(port) as c:
        await c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        resp = await c.response()
        assert resp.status == 200
        assert resp.get("content-length") is None
        assert resp.body == b"hello world"
        # the connection is still in step: a second request works
        await c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await c.response()).body == b"hello world"


async def test_upgrade_accepted_without_reading_the_body_still_switches(engine: str) -> None:
    async def upgrade(ctx: Context, req: Request) -> Response:
        async def takeover(stream: ByteStream) -> None:
            await stream.send(b"switched:" + await stream.receive())

        return Response(
            101, headers=[("Upgrade", "x-test"), ("Connection", "Upgrade")], on_upgrade=takeover
        )

    async with http1_server(upgrade, engine) as port, RawClient.connect(port) as c:
        await c.send(
            b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x-test\r\n"
            b"Content-Length: 5\r\n\r\nhelloPING"
        )
        resp = await c.response(head_request=True)
        assert resp.status == 101
        assert await c.read_exactly(len(b"switched:PING")) == b"switched:PING"


async def test_shutdown_grace_ends_a_request_that_does_not_finish(engine: str) -> None:
    started = anyio.Event()
    cancelled: list[bool] = []

    async def stuck(ctx: Context, req: Request) -> Response:
        if req.path == "/stuck":
            started.set()
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                cancelled.append(True)
                raise
        return Response.from_text("quick")

    async with Shutdown(grace=30, signals=None) as sd:
        async with http1_server(stuck, engine, shutdown=sd, shutdown_grace=0.3) as port:
            async with RawClient.connect(port) as busy:
                await busy.send(b"GET /stuck HTTP/1.1\r\nHost: a\r\n\r\n")
                with anyio.fail_after(5):
                    await started.wait()
                sd.trigger()
                start = anyio.current_time()
                # closed after the grace, long before the Shutdown deadline
                assert await busy.at_eof(timeout=5)
                assert 0.2 < anyio.current_time() - start < 3
    assert cancelled == [True]


# -- fairness ----------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_client_pipelining_at_full_speed_does_not_starve_others() -> None:
    # The yield is in the connection loop, the same for every engine: run the default one.
    import time

    engine = "auto"

    async def busy(ctx: Context, req: Request) -> Response:
        if req.path == "/p":
            end = time.perf_counter() + 0.0005  # CPU-bound work, never awaits
            while time.perf_counter() < end:
                pass
        return Response.from_text("ok")

    n = 8000
    latencies: list[float] = []
    async with http1_server(busy, engine) as port:
        async with RawClient.connect(port) as piper, RawClient.connect(port) as other:
            await other.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await other.response()).status == 200
            answered = 0

            async def read_all() -> None:
                nonlocal answered
                for _ in range(n):
                    assert (await piper.response()).status == 200
                    answered += 1

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(read_all)
                    await piper.send(b"GET /p HTTP/1.1\r\nHost: a\r\n\r\n" * n)
                    while answered < 100:
                        await anyio.sleep(0.01)
                    for _ in range(5):
                        start = anyio.current_time()
                        await other.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                        assert (await other.response()).status == 200
                        latencies.append(anyio.current_time() - start)
                        await anyio.sleep(0.02)
                    # the probes ran while the pipeline was being served
                    # (without a yield in the loop they wait for all of it)
                    assert answered < n, (answered, latencies)
    # typical probes are fast; one may stall on a loaded machine
    assert sorted(latencies)[len(latencies) // 2] < 0.25, latencies
    assert max(latencies) < 2.0, latencies


# -- one clock: the event loop's -----------------------------------------------------------


def _autojump() -> Any:
    from trio.testing import MockClock

    return ("trio", {"clock": MockClock(autojump_threshold=0)})


@pytest.mark.parametrize("anyio_backend", [pytest.param(_autojump(), id="trio-autojump")])
async def test_timeouts_run_on_the_event_loop_clock(engine: str) -> None:
    # Under trio's autojump clock a 30 s keep-alive timeout passes in no real
    # time; with deadlines on time.monotonic it would never be seen to pass.
    import time

    real = time.monotonic()
    async with http1_server(hello, engine, keep_alive_timeout=30, header_read_timeout=20) as port:
        async with RawClient.connect(port) as c:
            await c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await c.response()).status == 200
            start = anyio.current_time()
            assert await c.at_eof(timeout=100)
            assert 29 <= anyio.current_time() - start < 45
            async with RawClient.connect(port) as slow:
                await slow.send(b"GET / HTTP/1.1\r\nHo")
                assert (await slow.response()).status == 408
    assert time.monotonic() - real < 10
