"""What an h2 client is answered, and what is logged, when a handler fails.

The same policy as HTTP/1.1 (``rama_http.server.handler_failure``): our own
faults are a 500 with an ERROR traceback, timeouts 504 and overload 503 at
INFO, the peer's faults their 4xx; the body is the reason phrase only. Before
the response head a failure is answered, after it the stream is reset.
Clients: httpx over h2 (prior knowledge) and the raw h2 peer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import h2.events
import httpx
import pytest
from h2.errors import ErrorCodes
from rama_http_h2_peer import RawH2, h2_server

from rama_core import Context, Overloaded, service_fn
from rama_core.layers import TimeoutLayer
from rama_http import Body, Request, Response
from rama_http._errors import RemoteProtocolError
from rama_http.server._config import ServerConfig

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("h2_engine")]

_SECRET = "db password is hunter2"


def _client(port: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(http1=False, http2=True, base_url=f"http://127.0.0.1:{port}")


def _h2_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "rama.http.h2"]


async def _slow(ctx: Context, req: Request) -> Response:
    await anyio.sleep(30)
    return Response.from_text("never")


_TIMED = TimeoutLayer(0.05).layer(service_fn(_slow))


async def _handler(ctx: Context, req: Request) -> Any:
    if req.path == "/bug":
        raise RuntimeError(_SECRET)
    if req.path == "/bad-header":
        return Response(200, headers={"X-Bad": "a\r\nb"})
    if req.path == "/timeout":
        return await _TIMED.serve(ctx, req)
    if req.path == "/overloaded":
        raise Overloaded(_SECRET, retry_after=2.5)
    if req.path == "/not-a-response":
        return "hello"
    if req.path == "/peer":
        raise RemoteProtocolError(_SECRET, status=422)
    return Response.from_text("fine")


@pytest.mark.parametrize(
    ("path", "status", "level", "traceback"),
    [
        ("/bug", 500, logging.ERROR, True),
        ("/bad-header", 500, logging.ERROR, True),
        ("/timeout", 504, logging.INFO, False),
        ("/overloaded", 503, logging.INFO, False),
        ("/peer", 422, logging.DEBUG, False),
    ],
)
async def test_a_failing_handler_is_answered_by_the_policy(
    caplog: pytest.LogCaptureFixture, path: str, status: int, level: int, traceback: bool
) -> None:
    caplog.set_level(logging.DEBUG, logger="rama.http.h2")
    async with h2_server(_handler) as port, _client(port) as client:
        resp = await client.get(path)
        fine = await client.get("/fine")
    assert resp.status_code == status
    assert resp.http_version == "HTTP/2"
    # The reason phrase only: the exception's message never reaches the peer.
    assert resp.text == httpx.codes.get_reason_phrase(status) + "\n"
    assert _SECRET not in resp.text
    assert fine.text == "fine"
    records = [
        r for r in _h2_records(caplog) if r.levelno >= logging.DEBUG and path in r.getMessage()
    ]
    assert len(records) == 1, [r.getMessage() for r in _h2_records(caplog)]
    (record,) = records
    assert record.levelno == level
    assert (record.exc_info is not None) is traceback
    # Nothing else about this request at ERROR.
    errors = [r for r in _h2_records(caplog) if r.levelno >= logging.ERROR]
    assert errors == ([record] if level >= logging.ERROR else [])


async def test_overloaded_carries_retry_after() -> None:
    async with h2_server(_handler) as port, _client(port) as client:
        resp = await client.get("/overloaded")
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "3"


async def test_a_handler_returning_a_non_response_gets_500_and_a_clear_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rama.http.h2")
    async with h2_server(_handler) as port, _client(port) as client:
        resp = await client.get("/not-a-response")
    assert resp.status_code == 500
    assert resp.text == "Internal Server Error\n"
    errors = [r for r in _h2_records(caplog) if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["HTTP handler returned 'str', not a Response"]


async def test_a_failure_after_the_head_resets_the_stream_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rama.http.h2")

    async def handler(ctx: Context, req: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first\n"
            raise RuntimeError(_SECRET)

        if req.path == "/stream":
            return Response(200, body=Body.from_iter(chunks()))
        return Response.from_text("fine")

    async with h2_server(handler) as port, RawH2.connect(port) as c:
        sid = await c.request("/stream")
        await c.until(lambda: c.ended(sid))
        assert c.status(sid) == 200
        assert c.body(sid) == b"first\n"
        assert c.reset_code(sid) == ErrorCodes.INTERNAL_ERROR
        after = await c.request("/after")
        await c.until(lambda: c.ended(after))
        assert c.of(after, h2.events.StreamEnded)
        assert c.goaway() is None
    errors = [r for r in _h2_records(caplog) if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert "/stream" in errors[0].getMessage()


async def test_a_handler_error_on_one_stream_leaves_the_others_alone() -> None:
    async with h2_server(_handler) as port, RawH2.connect(port) as c:
        bad = await c.request("/bug")
        good = await c.request("/fine")
        await c.until(lambda: c.ended(bad) and c.ended(good))
        assert c.status(bad) == 500
        assert c.reset_code(bad) is None  # answered, not reset
        assert c.body(good) == b"fine"
        assert c.goaway() is None


async def test_a_head_request_to_a_failing_handler_gets_a_bodyless_500() -> None:
    async with h2_server(_handler) as port, _client(port) as client:
        resp = await client.head("/bug")
    assert resp.status_code == 500
    assert resp.content == b""


async def test_upload_over_the_limit_is_not_logged_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The peer's fault: 413 (or a reset once the answer started), never an ERROR traceback."""
    caplog.set_level(logging.DEBUG, logger="rama.http.h2")

    async def handler(ctx: Context, req: Request) -> Response:
        if req.path == "/started":

            async def stream() -> AsyncIterator[bytes]:
                yield b"started\n"
                async for _ in req.body:
                    pass

            return Response(200, body=Body.from_iter(stream()))
        return Response.from_bytes(await req.read())

    config = ServerConfig(max_body_size=10_000)
    async with h2_server(handler, config) as port, RawH2.connect(port) as c:
        reading = await c.request("/read", "POST", body=b"a" * 20_000)
        await c.until(lambda: c.ended(reading))
        assert c.status(reading) == 413
        started = await c.request("/started", "POST", end=False)
        await c.until(lambda: c.body(started) == b"started\n")
        c.conn.send_data(started, b"b" * 12_000)
        await c.flush()
        await c.until(lambda: c.ended(started))
        assert c.reset_code(started) == ErrorCodes.CANCEL
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [r for r in caplog.records if r.exc_info is not None]
