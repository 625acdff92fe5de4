"""The h2 server connection over real loopback sockets.

Normal traffic goes through httpx (h2 prior knowledge); edge cases through a
raw client built on the ``h2`` library, or hand-made frames where ``h2``
would refuse to misbehave.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator

import anyio
import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import httpx
import pytest
from anyio.abc import ByteStream
from h2.errors import ErrorCodes
from hyperframe.frame import (
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
)
from rama_http_h2_peer import RawH2, h2_server, hello, read_frames

from rama_core import Context, Shutdown, service_fn
from rama_http import Body, H2Config, HttpError, Request, Response
from rama_http._h2._record import CONNECTION_PREFACE, H2PrefaceRecord, PseudoHeaderOrder
from rama_http.fingerprint._akamai import AkamaiH2Fingerprint
from rama_http.server._config import ServerConfig
from rama_http.server._h2 import ExtendedConnectProtocol
from rama_net import ConnectionLost, TcpListener

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("h2_engine")]


async def _echo(ctx: Context, req: Request) -> Response:
    data = await req.read()
    return Response.from_bytes(data)


def _client(port: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(http1=False, http2=True, base_url=f"http://127.0.0.1:{port}")


# -- ordinary traffic -----------------------------------------------------------------------
async def test_httpx_gets_hello_over_h2_and_handler_sees_the_request() -> None:
    seen: list[Request] = []

    async def handler(ctx: Context, req: Request) -> Response:
        seen.append(req)
        return Response.from_text("hello\n", headers=[("X-Custom-Header", "v")])

    async with h2_server(handler) as port, _client(port) as client:
        r = await client.get("/a/b?x=1", headers={"X-Trace": "t1"})
    assert r.http_version == "HTTP/2"
    assert r.status_code == 200
    assert r.text == "hello\n"
    assert r.headers["x-custom-header"] == "v"
    assert r.headers["content-length"] == "6"
    assert "date" in r.headers
    (req,) = seen
    assert str(req.version) == "HTTP/2"
    assert req.method == "GET"
    assert req.target == "/a/b?x=1"
    assert req.path == "/a/b"
    assert req.query == "x=1"
    assert req.uri.scheme == "http"
    assert req.authority == f"127.0.0.1:{port}"
    assert req.headers.get("x-trace") == "t1"


async def test_streams_are_handled_concurrently() -> None:
    running = 0
    peak = 0

    async def handler(ctx: Context, req: Request) -> Response:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.3)
        running -= 1
        return Response.from_text(req.path)

    async with h2_server(handler) as port, _client(port) as client:
        results: dict[int, str] = {}

        async def one(i: int) -> None:
            results[i] = (await client.get(f"/{i}")).text

        with anyio.fail_after(3):
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, i)
    assert results == {i: f"/{i}" for i in range(20)}
    assert peak == 20


async def test_multi_megabyte_upload_and_download_respect_windows() -> None:
    up = bytes(range(256)) * (6 * 4096)  # 6 MiB, larger than every window involved

    async def handler(ctx: Context, req: Request) -> Response:
        if req.path == "/down":

            async def chunks() -> AsyncIterator[bytes]:
                for i in range(80):
                    yield bytes([i]) * 100_000

            return Response(200, body=Body.from_iter(chunks()))
        digest = hashlib.sha256()
        async for chunk in req.body:
            digest.update(chunk)
        return Response.from_text(digest.hexdigest())

    async with h2_server(handler) as port, _client(port) as client:
        with anyio.fail_after(30):
            r = await client.post("/up", content=up)
            assert r.text == hashlib.sha256(up).hexdigest()
            d = await client.get("/down")
    assert len(d.content) == 8_000_000
    assert d.content[-1] == 79


async def test_request_and_response_trailers() -> None:
    async def handler(ctx: Context, req: Request) -> Response:
        data = await req.read()
        assert req.body.trailers is not None
        sent = req.body.trailers.get("x-checksum")
        writer, body = Body.channel(1)

        async def produce() -> None:
            async with writer:
                await writer.send(data.upper())
                from rama_http import Headers

                await writer.send_trailers(Headers([("x-got", sent or "none")]))

        ctx.executor.with_task_group(tg).spawn(produce)
        return Response(200, body=body)

    async with anyio.create_task_group() as tg:
        async with h2_server(handler) as port, RawH2.connect(port) as c:
            sid = await c.request("/t", "POST", body=b"abc", end=False)
            c.conn.send_headers(sid, [("x-checksum", "c1")], end_stream=True)
            await c.flush()
            await c.until(lambda: c.ended(sid))
            assert c.status(sid) == 200
            assert c.body(sid) == b"ABC"
            (trailers,) = c.of(sid, h2.events.TrailersReceived)
            assert (b"x-got", b"c1") in trailers.headers


# -- failures stay on their stream ------------------------------------------------------------
async def test_handler_error_answers_500_on_its_stream_only() -> None:
    """A handler bug is a 500 (not a reset) on its stream; an HttpError that is not the
    peer's fault is ours too (see test_h2_errors for the whole policy)."""

    async def handler(ctx: Context, req: Request) -> Response:
        if req.path == "/boom":
            raise RuntimeError("handler bug")
        if req.path == "/teapot":
            raise _Teapot("short and stout")
        return Response.from_text("ok")

    async with h2_server(handler) as port, RawH2.connect(port) as c:
        bad = await c.request("/boom")
        tea = await c.request("/teapot")
        good = await c.request("/fine")
        await c.until(lambda: c.ended(bad) and c.ended(good) and c.ended(tea))
        assert c.status(bad) == 500
        assert c.body(bad) == b"Internal Server Error\n"
        assert c.reset_code(bad) is None
        assert c.status(tea) == 500
        assert b"stout" not in c.body(tea)
        assert c.body(good) == b"ok"
        assert c.goaway() is None


class _Teapot(HttpError):
    status = 418


async def test_client_reset_cancels_the_handler_and_connection_goes_on() -> None:
    cancelled = anyio.Event()
    started = anyio.Event()

    async def handler(ctx: Context, req: Request) -> Response:
        if req.path == "/slow":
            started.set()
            try:
                await anyio.sleep(30)
            finally:
                cancelled.set()
        return Response.from_text("ok")

    async with h2_server(handler) as port, RawH2.connect(port) as c:
        slow = await c.request("/slow")
        with anyio.fail_after(5):
            await started.wait()
        c.conn.reset_stream(slow, ErrorCodes.CANCEL)
        await c.flush()
        with anyio.fail_after(5):
            await cancelled.wait()
        after = await c.request("/after")
        await c.until(lambda: c.ended(after))
        assert c.body(after) == b"ok"


async def test_bad_preface_closes_that_connection_only() -> None:
    async with h2_server(hello) as port:
        bad = await anyio.connect_tcp("127.0.0.1", port)
        await bad.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 40)
        got = b""
        with anyio.fail_after(5):
            try:
                while True:
                    got += await bad.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
        await bad.aclose()
        # A server SETTINGS, then GOAWAY(PROTOCOL_ERROR = 1), then close.
        assert b"\x07\x00\x00\x00\x00\x00" in got
        async with _client(port) as client:
            assert (await client.get("/")).text == "hello\n"


async def test_oversized_header_list_ends_connection_with_enhance_your_calm() -> None:
    config = ServerConfig(h2=H2Config(max_header_list_size=4096))
    async with h2_server(hello, config) as port:
        async with RawH2.connect(port) as c:
            await c.until(lambda: c.conn.remote_settings.max_header_list_size == 4096)
            # Ignore the advertised limit on purpose (h2 itself does not enforce it).
            await c.request("/", extra=[("x-big", "v" * 8000)])
            await c.until(lambda: c.goaway() is not None)
            goaway = c.goaway()
            assert goaway is not None
            assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
        async with _client(port) as client:
            assert (await client.get("/", headers={"x-ok": "v" * 1000})).status_code == 200


async def test_a_stream_over_the_concurrency_limit_is_refused_not_the_connection() -> None:
    release = anyio.Event()
    served: list[str] = []

    async def handler(ctx: Context, req: Request) -> Response:
        served.append(req.path)
        if req.path != "/later":
            await release.wait()
        return Response.from_text("ok")

    config = ServerConfig(h2=H2Config(max_concurrent_streams=2))
    async with h2_server(handler, config) as port, RawH2.connect(port) as c:
        # Sent before the server's SETTINGS arrive, so h2 lets the client open a third.
        first, second, third = [await c.request(f"/{i}") for i in range(3)]
        await c.until(lambda: c.ended(third))
        (reset,) = c.of(third, h2.events.StreamReset)
        assert reset.error_code == ErrorCodes.REFUSED_STREAM
        assert c.conn.remote_settings.max_concurrent_streams == 2
        release.set()
        await c.until(lambda: c.ended(first) and c.ended(second))
        assert c.body(first) == c.body(second) == b"ok"
        later = await c.request("/later")
        await c.until(lambda: c.ended(later))
        assert c.body(later) == b"ok"
        assert c.goaway() is None
    assert sorted(served) == ["/0", "/1", "/later"]  # the refused one never ran


async def test_flow_control_stall_blocks_one_stream_not_the_connection() -> None:
    async def handler(ctx: Context, req: Request) -> Response:
        if req.path == "/big":
            return Response.from_bytes(b"x" * 200_000)
        return Response.from_text("small")

    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000}
    async with h2_server(handler) as port, RawH2.connect(port, settings=settings) as c:
        big = await c.request("/big")
        await c.until(lambda: len(c.body(big)) >= 1000)
        await anyio.sleep(0.2)
        assert len(c.body(big)) == 1000  # exactly the window: the server waits
        small = await c.request("/small")
        await c.until(lambda: c.ended(small))
        assert c.body(small) == b"small"
        assert not c.ended(big)
        # Open the windows; the rest arrives.
        for _ in range(400):
            c.ack_all()
            await c.flush()
            if c.ended(big):
                break
            await c.pump()
        assert len(c.body(big)) == 200_000


async def test_unread_upload_stops_at_the_stream_window() -> None:
    got_headers = anyio.Event()
    release = anyio.Event()

    async def handler(ctx: Context, req: Request) -> Response:
        got_headers.set()
        await release.wait()
        return Response.from_text(str(len(await req.read())))

    config = ServerConfig(h2=H2Config(initial_window_size=65535))
    async with h2_server(handler, config) as port, RawH2.connect(port) as c:
        await c.until(lambda: c.conn.remote_settings.initial_window_size == 65535)
        sid = await c.request("/up", "POST", end=False)
        with anyio.fail_after(5):
            await got_headers.wait()
        sent = 0
        while c.conn.local_flow_control_window(sid) > 0:
            n = min(c.conn.local_flow_control_window(sid), 16384)
            c.conn.send_data(sid, b"u" * n)
            sent += n
        await c.flush()
        await anyio.sleep(0.2)
        assert sent == 65535
        assert c.conn.local_flow_control_window(sid) == 0  # no window came back unread
        release.set()
        for _ in range(200):
            await c.pump()
            window = c.conn.local_flow_control_window(sid)
            if window:
                break
        c.conn.send_data(sid, b"z", end_stream=True)
        await c.flush()
        await c.until(lambda: c.ended(sid))
        assert c.body(sid) == b"65536"


async def test_body_over_the_limit_gets_413_and_the_connection_goes_on() -> None:
    config = ServerConfig(max_body_size=10_000)
    async with h2_server(_echo, config) as port, RawH2.connect(port) as c:
        sid = await c.request("/up", "POST", body=b"a" * 20_000)
        await c.until(lambda: c.ended(sid))
        assert c.status(sid) == 413
        assert b"10000" in c.body(sid)
        ok = await c.request("/up", "POST", body=b"small")
        await c.until(lambda: c.ended(ok))
        assert c.body(ok) == b"small"


# -- lifecycle -------------------------------------------------------------------------------
async def test_graceful_shutdown_sends_goaway_and_finishes_in_flight() -> None:
    started = anyio.Event()

    async def handler(ctx: Context, req: Request) -> Response:
        started.set()
        await anyio.sleep(0.5)
        return Response.from_text("finished")

    async with Shutdown(grace=5, signals=None) as shutdown:
        async with h2_server(handler, shutdown=shutdown) as port:
            stream = await anyio.connect_tcp("127.0.0.1", port)
            block = hpack.Encoder().encode(
                [(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", "/")]
            )
            f = HeadersFrame(1, block)
            f.flags.add("END_HEADERS")
            f.flags.add("END_STREAM")
            await stream.send(CONNECTION_PREFACE + SettingsFrame(0).serialize() + f.serialize())
            with anyio.fail_after(5):
                await started.wait()
            shutdown.trigger()
            frames = await read_frames(stream, lambda fs: "EOF" in fs)
            await stream.aclose()
    kinds = [type(f).__name__ if not isinstance(f, str) else f for f in frames]
    goaway = kinds.index("GoAwayFrame")
    assert frames[goaway].last_stream_id == 1
    assert frames[goaway].error_code == ErrorCodes.NO_ERROR
    # The in-flight response comes after the GOAWAY, then the server closes.
    assert goaway < kinds.index("HeadersFrame") < kinds.index("DataFrame")
    data = [f for f in frames if isinstance(f, DataFrame)]
    assert b"".join(f.data for f in data) == b"finished"
    assert "END_STREAM" in data[-1].flags
    assert kinds[-1] == "EOF"


def _headers_frame(enc: hpack.Encoder, sid: int, path: str = "/", *, end: bool = True) -> bytes:
    block = enc.encode(
        [(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", path)]
    )
    f = HeadersFrame(sid, block)
    f.flags.add("END_HEADERS")
    if end:
        f.flags.add("END_STREAM")
    return bytes(f.serialize())


async def test_in_flight_requests_are_answered_after_a_client_goaway(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = anyio.Event()
    release = anyio.Event()

    async def handler(ctx: Context, req: Request) -> Response:
        started.set()
        await release.wait()
        return Response.from_text("answered")

    caplog.set_level(logging.INFO, logger="rama.http.h2")
    async with h2_server(handler) as port:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        enc = hpack.Encoder()
        await stream.send(
            CONNECTION_PREFACE + SettingsFrame(0).serialize() + _headers_frame(enc, 1)
        )
        with anyio.fail_after(5):
            await started.wait()
        # The client is done with this connection (no pushes wanted, last_stream_id 0),
        # but still wants stream 1 answered; a stream it opens afterwards is refused.
        goaway = GoAwayFrame(0, last_stream_id=0, error_code=ErrorCodes.NO_ERROR)
        await stream.send(goaway.serialize() + _headers_frame(enc, 3))
        frames = await read_frames(
            stream, lambda fs: any(isinstance(f, RstStreamFrame) for f in fs)
        )
        release.set()
        frames += await read_frames(stream, lambda fs: "EOF" in fs)
        await stream.aclose()
    (refused,) = [f for f in frames if isinstance(f, RstStreamFrame)]
    assert refused.stream_id == 3
    assert refused.error_code == ErrorCodes.REFUSED_STREAM
    (head,) = [f for f in frames if isinstance(f, HeadersFrame)]
    assert head.stream_id == 1
    data = [f for f in frames if isinstance(f, DataFrame) and f.stream_id == 1]
    assert b"".join(f.data for f in data) == b"answered"
    assert "END_STREAM" in data[-1].flags
    (server_goaway,) = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert server_goaway.last_stream_id == 1
    assert server_goaway.error_code == ErrorCodes.NO_ERROR
    assert frames[-1] == "EOF"  # closed once the in-flight stream was done
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_idle_connection_is_closed_with_goaway() -> None:
    config = ServerConfig(h2=H2Config(keep_alive_timeout=0.3))
    async with h2_server(hello, config) as port, RawH2.connect(port) as c:
        sid = await c.request("/")
        await c.until(lambda: c.ended(sid))
        with anyio.fail_after(5):
            while not c.closed:
                await c.pump()
        assert c.goaway() is not None


# -- recording and extended CONNECT ---------------------------------------------------------
async def test_preface_and_pseudo_header_order_are_recorded() -> None:
    seen: list[tuple[H2PrefaceRecord, PseudoHeaderOrder]] = []

    async def handler(ctx: Context, req: Request) -> Response:
        seen.append((ctx.require(H2PrefaceRecord), ctx.require(PseudoHeaderOrder)))
        return Response.from_text("ok")

    settings = {
        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 77,
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 123456,
    }
    async with h2_server(handler) as port, RawH2.connect(port, settings=settings, window=9999) as c:
        sid = await c.request("/")
        await c.until(lambda: c.ended(sid))
        sid2 = c.conn.get_next_available_stream_id()
        c.conn.send_headers(
            sid2,
            [(":path", "/2"), (":authority", "t"), (":method", "GET"), (":scheme", "http")],
            end_stream=True,
        )
        await c.flush()
        await c.until(lambda: c.ended(sid2))
    (record, first), (_, second) = seen
    assert (3, 77) in record.settings
    assert (4, 123456) in record.settings
    assert record.window_update == 9999
    assert first.names == (":method", ":scheme", ":authority", ":path")
    assert second.names == (":path", ":authority", ":method", ":scheme")
    fp = AkamaiH2Fingerprint.from_record(record)
    assert fp.text.endswith("|9999|0|m,s,a,p")


async def test_extended_connect_tunnel() -> None:
    async def handler(ctx: Context, req: Request) -> Response:
        assert req.method == "CONNECT"
        assert ctx.get(ExtendedConnectProtocol) == "websocket"

        async def echo(io: ByteStream) -> None:
            try:
                while True:
                    await io.send((await io.receive()).upper())
            except anyio.EndOfStream:
                pass

        return Response(200, on_upgrade=echo)

    async with h2_server(handler) as port, RawH2.connect(port) as c:
        await c.until(lambda: c.conn.remote_settings.enable_connect_protocol == 1)
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(
            sid,
            [
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", "http"),
                (":path", "/chat"),
                (":authority", "t"),
            ],
        )
        c.conn.send_data(sid, b"ping")
        await c.flush()
        await c.until(lambda: c.body(sid) == b"PING")
        assert c.status(sid) == 200
        c.conn.send_data(sid, b"more", end_stream=True)
        await c.flush()
        await c.until(lambda: c.ended(sid))
        assert c.body(sid) == b"PINGMORE"


@pytest.mark.parametrize("extended", [True, False], ids=["websocket", "connect"])
async def test_idle_tunnel_outlives_the_body_read_timeout(extended: bool) -> None:
    """A tunnel may idle past body_read_timeout; its owner decides when it is dead."""
    failures: list[BaseException] = []

    async def handler(ctx: Context, req: Request) -> Response:
        async def echo(io: ByteStream) -> None:
            try:
                while True:
                    await io.send((await io.receive()).upper())
            except anyio.EndOfStream:
                pass
            except BaseException as e:
                failures.append(e)
                raise

        return Response(200, on_upgrade=echo)

    config = ServerConfig(body_read_timeout=0.1)
    async with h2_server(handler, config) as port, RawH2.connect(port) as c:
        await c.until(lambda: c.conn.remote_settings.enable_connect_protocol == 1)
        sid = c.conn.get_next_available_stream_id()
        if extended:
            head = [
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", "http"),
                (":path", "/chat"),
                (":authority", "t"),
            ]
        else:
            head = [(":method", "CONNECT"), (":authority", "example.com:443")]
        c.conn.send_headers(sid, head)
        await c.flush()
        await c.until(lambda: bool(c.of(sid, h2.events.ResponseReceived)))
        assert c.status(sid) == 200
        await anyio.sleep(0.4)  # four body read timeouts of silence
        c.conn.send_data(sid, b"still here")
        await c.flush()
        await c.until(lambda: c.body(sid) == b"STILL HERE" or c.ended(sid))
        assert c.body(sid) == b"STILL HERE"
        assert not c.ended(sid)
        c.conn.end_stream(sid)
        await c.flush()
        await c.until(lambda: c.ended(sid))
        assert not c.of(sid, h2.events.StreamReset)
    assert failures == []


async def test_a_tunnel_owner_sees_connection_lost_when_the_client_resets_the_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The h2 stream of a tunnel fails like any rama stream: ConnectionLost, nothing at ERROR."""
    caplog.set_level(logging.DEBUG, logger="rama.http.h2")
    seen: list[BaseException] = []
    done = anyio.Event()

    async def handler(ctx: Context, req: Request) -> Response:
        async def owner(io: ByteStream) -> None:
            try:
                await io.send(await io.receive())
                await io.receive()
            except ConnectionLost as e:
                seen.append(e)
                raise
            finally:
                done.set()

        return Response(200, on_upgrade=owner)

    async with h2_server(handler) as port, RawH2.connect(port) as c:
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "example.com:443")])
        c.conn.send_data(sid, b"hi")
        await c.flush()
        await c.until(lambda: c.body(sid) == b"hi")
        c.conn.reset_stream(sid, ErrorCodes.CANCEL)
        await c.flush()
        with anyio.fail_after(5):
            await done.wait()
        after = await c.request("/after")
        await c.until(lambda: c.ended(after))
        assert c.status(after) == 200
    assert len(seen) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_h2_server_is_the_h2_only_stream_service() -> None:
    """``H2Server`` is to h2 what ``Http1Server`` is to HTTP/1.1; ``H2Connection`` drives one."""
    import rama_http.server as server

    assert server.H2Connection.__name__ == "H2Connection"
    assert not hasattr(server, "H2ServerConnection")
    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.H2Server(service_fn(hello)))
        async with _client(listener.local_addr.port) as client:
            resp = await client.get("/")
        assert resp.http_version == "HTTP/2"
        assert resp.text == "hello\n"
        tg.cancel_scope.cancel()


async def test_split_cookie_fields_reach_the_handler_joined() -> None:
    """RFC 9113 section 8.2.3: a client may split Cookie into fields; handlers get one."""
    seen: list[list[str]] = []

    async def cookies(ctx: Context, req: Request) -> Response:
        seen.append(req.headers.get_all("cookie"))
        return Response(200, body=b"ok")

    async with h2_server(cookies, ServerConfig()) as port, RawH2.connect(port) as c:
        sid = await c.request("/", extra=[("cookie", "a=1"), ("x-other", "y"), ("cookie", "b=2")])
        await c.until(lambda: c.ended(sid))
        assert c.status(sid) == 200
    assert seen == [["a=1; b=2"]]
