"""What the HTTP/1.1 server answers and logs when things fail, on every engine.

One policy (``rama_http.server.handler_failure``): the handler's own faults
are a 500 logged once at ERROR with the traceback; ``ServiceTimeout`` is 504
and ``Overloaded`` 503 with ``Retry-After``, both at INFO without traceback;
the peer's faults get their 4xx. Error bodies carry the reason phrase only.
Errors on the second and later requests of a keep-alive connection are
answered like those on the first.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from rama_http_h1_peer import RawClient, echo, hello, http1_server

from rama_core import Context, service_fn
from rama_core.layers import ConcurrencyLimitLayer, LimitPolicy, TimeoutLayer
from rama_http import Request, Response
from rama_http.server import available_engines

pytestmark = pytest.mark.anyio

LOGGER = "rama.http.h1"
GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.fixture(params=available_engines())
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= level]


async def one(port: int, raw: bytes = GET) -> Any:
    async with RawClient.connect(port) as c:
        await c.send(raw)
        with anyio.fail_after(5):
            return await c.response()


async def test_invalid_header_built_by_the_handler_is_a_500_logged_once(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def bad(ctx: Context, req: Request) -> Response:
        return Response.from_text("x", headers={"X-Bad": "a\r\nb"})

    caplog.set_level(logging.DEBUG, LOGGER)
    async with http1_server(bad, engine) as port:
        r = await one(port)
        assert r.status == 500
        assert r.body == b"Internal Server Error\n"
        assert b"X-Bad" not in r.body
        errors = records(caplog, logging.ERROR)
        assert len(errors) == 1, errors
        assert errors[0].exc_info is not None
        assert "InvalidHeader" in caplog.text
        # the server goes on serving
        assert (await one(port)).status == 500


async def test_service_timeout_is_a_504_at_info_without_traceback(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def slow(ctx: Context, req: Request) -> Response:
        await anyio.sleep(10)
        return Response.from_text("late")

    caplog.set_level(logging.DEBUG, LOGGER)
    svc = TimeoutLayer(0.05).layer(service_fn(slow))
    async with http1_server(svc, engine) as port:
        r = await one(port)
    assert r.status == 504
    assert r.body == b"Gateway Timeout\n"
    assert not records(caplog, logging.WARNING)
    info = [r for r in records(caplog, logging.INFO) if "504" in r.getMessage()]
    assert len(info) == 1
    assert info[0].levelno == logging.INFO
    assert info[0].exc_info is None


async def test_overloaded_is_a_503_with_retry_after_at_info(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    entered = anyio.Event()
    release = anyio.Event()

    async def held(ctx: Context, req: Request) -> Response:
        entered.set()
        await release.wait()
        return Response.from_text("done")

    caplog.set_level(logging.DEBUG, LOGGER)
    svc = ConcurrencyLimitLayer(1, LimitPolicy.REJECT).layer(service_fn(held))
    async with http1_server(svc, engine) as port, RawClient.connect(port) as first:
        await first.send(GET)
        with anyio.fail_after(5):
            await entered.wait()
        r = await one(port)
        release.set()
        with anyio.fail_after(5):
            assert (await first.response()).status == 200
    assert r.status == 503
    assert r.get("retry-after") == "1"
    assert r.body == b"Service Unavailable\n"
    assert not records(caplog, logging.WARNING)
    assert [x.exc_info for x in records(caplog, logging.INFO)] == [None]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + b"3ff\r\n", 413),
    ],
    ids=["bad-chunk", "too-large"],
)
async def test_peer_body_errors_while_the_handler_reads_are_their_4xx(
    engine: str, caplog: pytest.LogCaptureFixture, raw: bytes, status: int
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    async with http1_server(echo, engine, max_body_size=1000) as port:
        async with RawClient.connect(port) as c:
            await c.send(raw + (b"x" * 1023 + b"\r\n" if status == 413 else b""))
            with anyio.fail_after(5):
                r = await c.response()
            assert r.status == status
            assert r.get("connection") == "close"
            assert await c.at_eof()
    assert not records(caplog, logging.WARNING)


async def test_body_error_raised_by_the_handler_is_its_4xx(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def strict(ctx: Context, req: Request) -> Response:
        await req.json()  # not JSON: BodyError, the peer's fault
        return Response.from_text("ok")

    caplog.set_level(logging.DEBUG, LOGGER)
    async with http1_server(strict, engine) as port:
        r = await one(port, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n{{{")
    assert r.status == 400
    assert r.body == b"Bad Request\n"
    assert not records(caplog, logging.WARNING)


async def test_handler_returning_a_non_response_is_reported_and_a_500(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def wrong(ctx: Context, req: Request) -> Any:
        return {"not": "a response"}

    caplog.set_level(logging.DEBUG, LOGGER)
    async with http1_server(wrong, engine) as port:
        r = await one(port)
    assert r.status == 500
    errors = records(caplog, logging.ERROR)
    assert [e.getMessage() for e in errors] == ["HTTP handler returned dict, not a Response"]


@pytest.mark.parametrize(
    ("raw", "status", "body"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01secret\r\n\r\n", 400, b"Bad Request\n"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, b"Bad Request\n"),
        (b"GET / HTTP/7.0\r\nHost: a\r\n\r\n", 505, b"HTTP Version Not Supported\n"),
        (b"GET /" + b"s" * 9000 + b" HTTP/1.1\r\n\r\n", 414, b"Request-URI Too Long\n"),
    ],
    ids=["control-char", "no-host", "version", "long-target"],
)
async def test_parse_errors_carry_the_reason_phrase_only(
    engine: str, raw: bytes, status: int, body: bytes
) -> None:
    async with http1_server(hello, engine) as port:
        r = await one(port, raw)
    assert r.status == status
    assert r.body == body


# -- errors on the second and later requests of a connection ---------------------------

SECOND = [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 5000 + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999\r\n\r\n", 413),
]
SECOND_IDS = ["400-garbage", "400-no-host", "414", "431", "501", "505", "413"]


@pytest.mark.parametrize(("raw", "status"), SECOND, ids=SECOND_IDS)
@pytest.mark.parametrize("together", [False, True], ids=["after", "pipelined"])
async def test_errors_on_a_later_request_are_answered(
    engine: str, raw: bytes, status: int, together: bool
) -> None:
    limits: dict[str, Any] = {
        "max_request_line": 2048,
        "max_header_size": 4096,
        "max_body_size": 4096,
    }
    async with http1_server(hello, engine, **limits) as port, RawClient.connect(port) as c:
        with anyio.fail_after(5):
            for _ in range(2):
                if together:
                    await c.send(GET + GET + raw)
                    assert (await c.response()).status == 200
                else:
                    await c.send(GET)
                assert (await c.response()).status == 200
                if not together:
                    continue
                break
            if not together:
                await c.send(raw)
            r = await c.response()
            assert r.status == status
            assert r.get("connection") == "close"
            assert await c.at_eof()


async def test_a_stalled_later_head_gets_408(engine: str) -> None:
    async with http1_server(hello, engine, header_read_timeout=0.3) as port:
        async with RawClient.connect(port) as c:
            with anyio.fail_after(5):
                await c.send(GET)
                assert (await c.response()).status == 200
                await c.send(b"GET / HTTP/1.1\r\nHo")
                r = await c.response()
                assert r.status == 408
                assert await c.at_eof()


async def test_a_stalled_later_body_gets_408(engine: str) -> None:
    async with http1_server(echo, engine, body_read_timeout=0.3) as port:
        async with RawClient.connect(port) as c:
            with anyio.fail_after(5):
                await c.send(GET)
                assert (await c.response()).status == 200
                await c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
                r = await c.response()
                assert r.status == 408
                assert await c.at_eof()


# -- pipelines: large reads and errors behind valid requests ------------------------------


async def test_a_large_pipeline_in_one_write_is_answered_in_full(engine: str) -> None:
    # Reads of up to 64 KiB end inside a head: only that head's bytes count to its limit.
    n = 6000
    req = b"GET /p HTTP/1.1\r\nHost: a\r\nUser-Agent: pipeline-test\r\n\r\n"
    async with (
        http1_server(hello, engine, max_header_size=4096) as port,
        RawClient.connect(port) as c,
    ):
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(c.send, req * n)
                for _ in range(n):
                    assert (await c.response()).status == 200


async def test_a_valid_post_before_garbage_in_one_write_is_run_then_400(engine: str) -> None:
    seen: list[bytes] = []

    async def record(ctx: Context, req: Request) -> Response:
        seen.append(await req.read())
        return Response.from_text("ran")

    post = b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    async with http1_server(record, engine) as port, RawClient.connect(port) as c:
        await c.send(GET + post + b"\x00GARBAGE\r\n\r\n")
        with anyio.fail_after(5):
            assert (await c.response()).status == 200
            r = await c.response()
            assert (r.status, r.body) == (200, b"ran")
            bad = await c.response()
            assert bad.status == 400
            assert await c.at_eof()
    assert seen == [b"", b"hello"]


# -- hostile framing over a real socket ----------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\xa0\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x85chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\xa0\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \x855\r\n\r\nhello",
    ],
    ids=["te-nbsp", "te-nel", "cl-nbsp", "cl-nel"],
)
async def test_framing_values_padded_with_unicode_whitespace_are_rejected(
    engine: str, raw: bytes
) -> None:
    ran: list[str] = []

    async def record(ctx: Context, req: Request) -> Response:
        ran.append(req.target)
        return Response.from_text("ran")

    async with http1_server(record, engine) as port:
        r = await one(port, raw + GET)
    assert r.status in (400, 501)
    assert ran == []


@pytest.mark.parametrize(
    "raw",
    [
        b"GET http://[::1/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://a:99999/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"CONNECT nohost HTTP/1.1\r\nHost: a\r\n\r\n",
    ],
    ids=["ipv6", "port", "authority"],
)
async def test_an_unparsable_request_target_is_the_peers_400(
    engine: str, caplog: pytest.LogCaptureFixture, raw: bytes
) -> None:
    async def uses_uri(ctx: Context, req: Request) -> Response:
        return Response.from_text(f"{req.uri.host} {req.path} {req.query}")

    caplog.set_level(logging.DEBUG, LOGGER)
    async with http1_server(uses_uri, engine) as port:
        r = await one(port, raw)
        assert r.status == 400
        ok = await one(port, b"GET http://a:81/p?q=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (ok.status, ok.body) == (200, b"a /p q=1")
    assert not records(caplog, logging.WARNING)


# -- the client's connection lost vs. a handler's own ConnectionLost ------------------------


async def test_a_client_resetting_mid_response_is_not_an_error(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    import socket
    import struct

    from rama_http import Body

    finished = anyio.Event()

    async def endless(ctx: Context, req: Request) -> Response:
        if req.path != "/endless":
            return Response.from_text("ok")

        async def chunks() -> Any:
            try:
                while True:
                    yield b"x" * 65536
                    await anyio.sleep(0)
            finally:
                finished.set()

        return Response(200, body=Body.from_iter(chunks()))

    caplog.set_level(logging.DEBUG, LOGGER)
    async with http1_server(endless, engine) as port:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.send(b"GET /endless HTTP/1.1\r\nHost: a\r\n\r\n")
        await stream.receive()
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()  # RST
        with anyio.fail_after(5):
            await finished.wait()
        assert (await one(port)).status == 200
    assert not records(caplog, logging.WARNING)


async def test_a_handlers_own_connection_lost_is_a_500(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    from rama_net import ConnectionLost

    async def proxy(ctx: Context, req: Request) -> Response:
        raise ConnectionLost("upstream reset")  # not the client's connection

    caplog.set_level(logging.DEBUG, LOGGER)
    async with http1_server(proxy, engine) as port:
        r = await one(port)
    assert r.status == 500
    assert len(records(caplog, logging.ERROR)) == 1


async def test_an_answer_that_cannot_be_framed_is_a_500_logged_once(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    from rama_http import Body

    async def bad(ctx: Context, req: Request) -> Response:
        async def chunks() -> Any:
            yield b"x"

        return Response(200, headers={"Content-Length": "abc"}, body=Body.from_iter(chunks()))

    caplog.set_level(logging.DEBUG)
    async with http1_server(bad, engine) as port:
        r = await one(port)
        assert r.status == 500
        assert r.body == b"Internal Server Error\n"
    errors = [x for x in caplog.records if x.levelno >= logging.ERROR]
    assert [x.name for x in errors] == [LOGGER]
