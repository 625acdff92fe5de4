"""Limits of the h2 server connection against misbehaving peers, on real loopback sockets.

Request bodies over max_body_size, streams over the concurrency limit, peers
that stop reading or never open their flow-control windows, and floods of
frames that force the server to answer (PING, SETTINGS, rapid reset). The
clients are the ``h2`` library or hand-made frames.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from anyio.abc import ByteStream
from h2.errors import ErrorCodes
from hyperframe.frame import (
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)
from rama_http_h2_peer import RawH2, h2_server, hello, read_frames

from rama_core import Context
from rama_http import Body, Request, Response
from rama_http._h2._config import H2Config
from rama_http._h2._record import CONNECTION_PREFACE
from rama_http.server._config import ServerConfig
from rama_http.server._h2 import H2Connection

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("h2_engine")]


# -- request bodies over max_body_size ---------------------------------------------------------
async def test_unfinished_upload_over_the_limit_gets_413_then_reset_no_error() -> None:
    """The handler is not reading yet: the connection answers 413 and stops it."""
    cancelled = anyio.Event()

    async def handler(ctx: Context, req: Request) -> Response:
        if req.path == "/up":
            try:
                await anyio.sleep(30)
            finally:
                cancelled.set()
        return Response.from_text("ok")

    config = ServerConfig(max_body_size=10_000)
    async with h2_server(handler, config) as port, RawH2.connect(port) as c:
        sid = await c.request("/up", "POST", body=b"a" * 20_000, end=False)
        await c.until(lambda: c.ended(sid) and c.reset_code(sid) is not None)
        assert c.status(sid) == 413
        assert c.of(sid, h2.events.StreamEnded)  # a complete answer first ...
        assert c.reset_code(sid) == ErrorCodes.NO_ERROR  # ... then "stop sending"
        with anyio.fail_after(5):
            await cancelled.wait()
        after = await c.request("/after")
        await c.until(lambda: c.ended(after))
        assert c.status(after) == 200
        assert c.goaway() is None


async def test_declared_content_length_over_the_limit_gets_413_without_the_handler() -> None:
    ran: list[str] = []

    async def handler(ctx: Context, req: Request) -> Response:
        ran.append(req.path)
        return Response.from_text("ran")

    config = ServerConfig(max_body_size=1000)
    async with h2_server(handler, config) as port, RawH2.connect(port) as c:
        sid = await c.request("/up", "POST", extra=[("content-length", "5000")], end=False)
        await c.until(lambda: c.reset_code(sid) is not None)
        assert c.status(sid) == 413
        assert c.reset_code(sid) == ErrorCodes.NO_ERROR
    assert ran == []


async def test_upload_over_the_limit_after_the_response_started_is_reset() -> None:
    async def handler(ctx: Context, req: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            yield b"started\n"
            async for _ in req.body:
                pass
            yield b"unreachable"

        return Response(200, body=Body.from_iter(stream()))

    config = ServerConfig(max_body_size=10_000)
    async with h2_server(handler, config) as port, RawH2.connect(port) as c:
        sid = await c.request("/up", "POST", end=False)
        await c.until(lambda: c.body(sid) == b"started\n")
        c.conn.send_data(sid, b"b" * 12_000)
        await c.flush()
        await c.until(lambda: c.ended(sid))
        assert c.status(sid) == 200
        assert c.reset_code(sid) == ErrorCodes.CANCEL
        assert c.body(sid) == b"started\n"


# -- peers that never open their flow-control window ------------------------------------------
async def test_a_response_stalled_on_flow_control_is_cancelled_after_the_write_timeout() -> None:
    closed = anyio.Event()

    async def handler(ctx: Context, req: Request) -> Response:
        if req.path == "/big":

            async def chunks() -> AsyncIterator[bytes]:
                try:
                    for _ in range(20):
                        yield b"x" * 10_000
                finally:
                    closed.set()

            return Response(200, body=Body.from_iter(chunks()))
        return Response.from_text("small")

    config = ServerConfig(write_timeout=0.3)
    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000}
    async with h2_server(handler, config) as port, RawH2.connect(port, settings=settings) as c:
        big = await c.request("/big")
        await c.until(lambda: len(c.body(big)) >= 1000)
        small = await c.request("/small")  # the stall is that stream's alone
        await c.until(lambda: c.ended(small))
        assert c.body(small) == b"small"
        assert not c.ended(big)
        # Never acknowledge anything: the server gives up on /big, only on /big.
        await c.until(lambda: c.ended(big), timeout=3)
        assert c.reset_code(big) == ErrorCodes.CANCEL
        assert len(c.body(big)) == 1000
        with anyio.fail_after(2):
            await closed.wait()  # the response body was closed
        after = await c.request("/after")
        await c.until(lambda: c.ended(after))
        assert c.body(after) == b"small"
        assert c.goaway() is None


async def test_a_tunnel_stalled_on_flow_control_is_cancelled_and_its_owner_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors: list[BaseException] = []
    caplog.set_level(logging.INFO, logger="rama.http.h2")

    async def handler(ctx: Context, req: Request) -> Response:
        async def flood(io: ByteStream) -> None:
            try:
                while True:
                    await io.send(b"y" * 4096)
            except anyio.BrokenResourceError as e:
                errors.append(e)
                raise

        return Response(200, on_upgrade=flood)

    config = ServerConfig(write_timeout=0.3)
    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000}
    async with h2_server(handler, config) as port, RawH2.connect(port, settings=settings) as c:
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "example.com:443")])
        await c.flush()
        await c.until(lambda: c.ended(sid), timeout=3)
        assert c.status(sid) == 200
        assert c.reset_code(sid) == ErrorCodes.CANCEL
        after = await c.request("/after")
        await c.until(lambda: c.ended(after))
        assert c.status(after) == 200
    assert len(errors) == 1
    # The peer's stall, not a handler bug: nothing logged as an error.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- floods of frames that force answers --------------------------------------------------------
def _limits(**kw: Any) -> ServerConfig:
    return ServerConfig(h2=H2Config(**kw))


async def _raw_connect(port: int) -> ByteStream:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    await stream.send(CONNECTION_PREFACE + SettingsFrame(0).serialize())
    return stream


def _closed(frames: list[Any]) -> bool:
    return "EOF" in frames


def _calm(frames: list[Any]) -> GoAwayFrame:
    (goaway,) = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert frames[-1] == "EOF"
    return goaway


def _ping(i: int) -> bytes:
    return bytes(PingFrame(0, opaque_data=i.to_bytes(8, "big")).serialize())


async def test_pings_within_the_allowance_are_answered() -> None:
    async with h2_server(hello, _limits(max_pings=50)) as port:
        stream = await _raw_connect(port)
        await stream.send(b"".join(_ping(i) for i in range(50)))
        acks = lambda fs: [f for f in fs if isinstance(f, PingFrame) and "ACK" in f.flags]  # noqa: E731
        frames = await read_frames(stream, lambda fs: len(acks(fs)) == 50)
        await stream.aclose()
    assert not [f for f in frames if isinstance(f, GoAwayFrame)]


async def test_a_ping_flood_gets_goaway_enhance_your_calm() -> None:
    async with h2_server(hello, _limits(max_pings=50)) as port:
        stream = await _raw_connect(port)
        await stream.send(b"".join(_ping(i) for i in range(200)))
        frames = await read_frames(stream, _closed)
        await stream.aclose()
    goaway = _calm(frames)
    assert b"PING" in goaway.additional_data
    assert len([f for f in frames if isinstance(f, PingFrame)]) <= 200


async def test_a_settings_flood_gets_goaway_enhance_your_calm() -> None:
    async with h2_server(hello, _limits(max_settings=20)) as port:
        stream = await _raw_connect(port)
        settings = bytes(SettingsFrame(0, settings={SettingsFrame.ENABLE_PUSH: 0}).serialize())
        await stream.send(settings * 100)
        frames = await read_frames(stream, _closed)
        await stream.aclose()
    assert b"SETTINGS" in _calm(frames).additional_data


def _open_and_reset(enc: hpack.Encoder, sid: int) -> bytes:
    block = enc.encode(
        [(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", "/")]
    )
    head = HeadersFrame(sid, block)
    head.flags.add("END_HEADERS")
    head.flags.add("END_STREAM")
    return bytes(head.serialize() + RstStreamFrame(sid, error_code=ErrorCodes.CANCEL).serialize())


async def test_rapid_reset_gets_goaway_enhance_your_calm() -> None:
    """CVE-2023-44487: open a stream, reset it at once, repeat."""
    started = 0

    async def handler(ctx: Context, req: Request) -> Response:
        nonlocal started
        started += 1
        await anyio.sleep(30)
        return Response.from_text("never")

    async with h2_server(handler, _limits(max_resets=20)) as port:
        stream = await _raw_connect(port)
        enc = hpack.Encoder()
        await stream.send(b"".join(_open_and_reset(enc, 1 + 2 * i) for i in range(1000)))
        frames = await read_frames(stream, _closed)
        await stream.aclose()
    goaway = _calm(frames)
    assert b"reset" in goaway.additional_data
    assert goaway.last_stream_id <= 2 * 21 + 1  # stopped at the allowance, not at 1000
    assert started <= 21


async def test_resets_within_the_allowance_leave_the_connection_working() -> None:
    async def handler(ctx: Context, req: Request) -> Response:
        if req.path == "/":
            await anyio.sleep(30)
        return Response.from_text("ok")

    async with h2_server(handler, _limits(max_resets=20)) as port, RawH2.connect(port) as c:
        for _ in range(20):
            sid = await c.request("/")
            c.conn.reset_stream(sid, ErrorCodes.CANCEL)
        await c.flush()
        after = await c.request("/after")
        await c.until(lambda: c.ended(after))
        assert c.body(after) == b"ok"
        assert c.goaway() is None


async def test_streams_refused_over_the_concurrency_limit_count_as_resets() -> None:
    async def handler(ctx: Context, req: Request) -> Response:
        await anyio.sleep(30)
        return Response.from_text("never")

    config = ServerConfig(h2=H2Config(max_concurrent_streams=1, max_resets=10))
    async with h2_server(handler, config) as port:
        stream = await _raw_connect(port)
        enc = hpack.Encoder()
        heads = []
        for i in range(50):
            block = enc.encode(
                [(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", "/")]
            )
            f = HeadersFrame(1 + 2 * i, block)
            f.flags.add("END_HEADERS")
            f.flags.add("END_STREAM")
            heads.append(f.serialize())
        await stream.send(b"".join(heads))
        frames = await read_frames(stream, _closed)
        await stream.aclose()
    refused = [f for f in frames if isinstance(f, RstStreamFrame)]
    assert refused
    assert all(f.error_code == ErrorCodes.REFUSED_STREAM for f in refused)
    assert b"refused" in _calm(frames).additional_data


# -- a peer that makes the server write but never reads ------------------------------------------
async def test_server_stops_reading_while_its_answers_pile_up_unread() -> None:
    """A PING flood from a peer that never reads: bounded buffer, then disconnected."""
    bound = 16 * 1024
    read_size = 16 * 1024
    # The kernel paces the fill of these small socket buffers (window updates
    # ride delayed ACKs), taking up to a second: the write timeout leaves the
    # stall that follows room.
    config = ServerConfig(
        write_timeout=2.0,
        h2=H2Config(max_write_buffer=bound, read_size=read_size, max_pings=None),
    )
    conns: list[H2Connection] = []
    sent = 0
    last_sent_at = longest_stall = 0.0
    broken = anyio.Event()

    async def flood(sock: socket.socket) -> None:
        nonlocal sent, last_sent_at, longest_stall
        batch = memoryview(b"".join(_ping(i) for i in range(256)))
        try:
            while True:
                view = batch
                while view:
                    await anyio.wait_writable(sock)
                    try:
                        n = sock.send(view)
                    except BlockingIOError:
                        continue
                    sent += n
                    now = anyio.current_time()
                    if last_sent_at:
                        longest_stall = max(longest_stall, now - last_sent_at)
                    last_sent_at = now
                    view = view[n:]
        except OSError:  # reset or closed by the server
            longest_stall = max(longest_stall, anyio.current_time() - last_sent_at)
            broken.set()

    async with h2_server(hello, config, conns=conns, sock_buf=32768) as port:
        # A bare socket, not an event-loop stream: no transport (uvloop's reads
        # ahead) may read the answers for it.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        sock.send(CONNECTION_PREFACE + SettingsFrame(0).serialize())
        peak = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(flood, sock)
            with anyio.fail_after(8):
                # Nothing is read for write_timeout: the server gives up on the peer.
                while not broken.is_set():
                    await anyio.sleep(0.01)
                    if conns:
                        peak = max(peak, conns[0].write_backlog)
            tg.cancel_scope.cancel()
        sock.close()
    # The server, still there, took nothing for a while: it stopped reading at
    # the bound, not at the write timeout. Timed by the flooder itself, so a
    # slow poll cannot miss the stall.
    assert longest_stall > 0.5
    # At most the bound plus the answers to one read (a PING ACK is as long as a PING).
    assert peak <= bound + read_size + 1024
    # What was processed, plus the kernel buffers and the stream's read-ahead.
    assert sent < 2 * 1024 * 1024


# -- a peer that opens no window: bytes held by waiting streams are capped ------------------
_MB = b"m" * (1024 * 1024)


async def _big(ctx: Context, req: Request) -> Response:
    return Response.from_bytes(_MB)


async def test_a_zero_window_client_cannot_pin_answers_past_the_queued_bytes_cap() -> None:
    conns: list[H2Connection] = []
    cap = 4 * 1024 * 1024
    config = ServerConfig(write_timeout=30, h2=H2Config(max_queued_response_bytes=cap))
    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
    async with h2_server(_big, config, conns=conns) as port:
        async with RawH2.connect(port, settings=settings) as c:
            sids = [await c.request(f"/{i}") for i in range(20)]
            start = anyio.current_time()
            # Streams past the cap are cancelled within a few seconds, not after 30.
            await c.until(lambda: sum(c.ended(s) for s in sids) >= 16, timeout=5)
            elapsed = anyio.current_time() - start
            held = sum(conns[0]._holders.values())
            assert held <= cap
            reset = [s for s in sids if c.ended(s)]
            assert all(c.reset_code(s) == ErrorCodes.CANCEL for s in reset)
            assert len(reset) == 20 - cap // len(_MB)  # the first four still wait
            assert elapsed < 4
            assert c.goaway() is None


async def test_a_slow_client_that_keeps_opening_windows_gets_every_answer() -> None:
    config = ServerConfig(h2=H2Config(max_queued_response_bytes=1024 * 1024))
    async with h2_server(_big, config) as port, RawH2.connect(port, window=16 * 1024 * 1024) as c:
        sids = [await c.request(f"/{i}") for i in range(10)]
        with anyio.fail_after(20):
            while not all(c.ended(s) for s in sids):
                await c.pump()
                await anyio.sleep(0.01)  # slow: the server's streams keep waiting
                c.ack_all()
                await c.flush()
        for s in sids:
            assert c.reset_code(s) is None
            assert len(c.body(s)) == len(_MB)
