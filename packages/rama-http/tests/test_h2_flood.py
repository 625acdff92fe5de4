"""Frames that carry nothing: the sans-IO flood accounting, then the server on real sockets.

The socket tests send each flood of issue 8 #1 from a raw client (hand-made
frames: empty DATA, connection WINDOW_UPDATE +1, PRIORITY for idle streams,
unknown extension frames, DATA on closed streams) and check the server answers
GOAWAY(ENHANCE_YOUR_CALM) within a bound, while a well-behaved httpx client on
another connection is served as before.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import anyio
import h2.events
import h2.exceptions
import hpack
import httpx
import pytest
from anyio.abc import ByteStream
from h2.errors import ErrorCodes
from hyperframe.frame import (
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from rama_http_h2_peer import RawH2, h2_server, read_frames

from rama_core import Context
from rama_http import H2Config, Request, Response
from rama_http._h2._flood import H2Flood, H2FloodGuard
from rama_http._h2._inbound import H2InboundData
from rama_http._h2._record import CONNECTION_PREFACE
from rama_http.server import ServerConfig
from rama_http.server._h2 import H2Connection

# Every test runs on both h2 server engines (the root conftest's h2_engine).
pytestmark = pytest.mark.usefixtures("h2_engine")


# -- the accounting, without sockets ---------------------------------------------------------
class _Clock:
    """A manual clock for the sans-IO guard."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _guard(clock: _Clock | None = None, **kw: Any) -> H2FloodGuard:
    args: dict[str, Any] = {
        "window": 10.0,
        "max_pings": 1000,
        "max_settings": 100,
        "max_resets": 200,
        "max_idle_frames": 10,
        "max_concurrent_streams": 100,
    }
    args.update(kw)
    return H2FloodGuard(clock=clock or _Clock(), **args)


def _until_flood(step: Callable[[], None], limit: int = 100_000) -> tuple[int, H2Flood]:
    """Run ``step`` until it raises H2Flood; return how many steps passed and the flood."""
    for i in range(limit):
        try:
            step()
        except H2Flood as e:
            return i, e
    raise AssertionError(f"no flood after {limit} steps")


def test_empty_data_without_end_stream_counts_with_end_stream_does_not() -> None:
    guard = _guard()
    for _ in range(100):
        guard.data(stream_open=True, length=0, end_stream=True)
        guard.data(stream_open=True, length=1, end_stream=False)
    assert guard.idle_frames == 0
    passed, flood = _until_flood(lambda: guard.data(stream_open=True, length=0, end_stream=False))
    assert passed == 10
    assert flood.what == "empty DATA frames"


def test_window_updates_count_unless_they_return_window_the_server_used() -> None:
    guard = _guard()
    guard.sent(1, 50_000)
    for _ in range(5):
        guard.window_update(0, 10_000)  # returns what was sent: progress
        guard.window_update(1, 10_000)
    assert guard.idle_frames == 0
    guard.window_update(1, 1)  # nothing outstanding on stream 1 any more
    guard.window_update(0, 15_000_000)  # a client raising its window: counted, once is fine
    assert guard.idle_frames == 2
    passed, flood = _until_flood(lambda: guard.window_update(0, 1))
    assert passed == 8
    assert "WINDOW_UPDATE" in flood.what


def test_tiny_increments_do_not_ride_on_a_large_outstanding_window() -> None:
    """``+1`` updates while a download is outstanding still count: at least 1 KiB or all."""
    guard = _guard()
    guard.sent(1, 1_000_000)
    passed, _ = _until_flood(lambda: guard.window_update(0, 1))
    assert passed == 10
    guard = _guard()
    guard.sent(3, 100)
    guard.window_update(3, 100)  # all that was outstanding, though under 1 KiB
    guard.window_update(0, 100)
    assert guard.idle_frames == 0


def test_the_last_window_updates_of_a_finished_stream_are_progress() -> None:
    guard = _guard()
    guard.sent(5, 40_000)
    guard.stream_closed(5)
    guard.sent(7, 100)  # small answers are forgotten when they finish
    guard.stream_closed(7)
    guard.window_update(5, 20_000)
    guard.window_update(5, 20_000)
    assert guard.idle_frames == 0
    guard.window_update(5, 20_000)
    assert guard.idle_frames == 1


def test_priority_budget_is_tied_to_the_streams_opened() -> None:
    guard = _guard(max_concurrent_streams=10)
    passed, flood = _until_flood(guard.priority)
    assert passed == 100  # max(100, max_concurrent_streams)
    assert flood.what == "PRIORITY frames"
    guard = _guard(max_concurrent_streams=10)
    for _ in range(3):
        guard.headers(opens_stream=True, stream_open=False)
    passed, _ = _until_flood(guard.priority)
    assert passed == 100 + 3 * 10


def test_unknown_frames_and_frames_on_closed_streams_count() -> None:
    guard = _guard(max_idle_frames=5)
    guard.unknown()
    guard.rst_stream(stream_open=False)
    guard.headers(opens_stream=False, stream_open=False)
    guard.data(stream_open=False, length=10, end_stream=False)
    guard.data(stream_open=False, length=16384, end_stream=False)  # in flight, costs bandwidth
    guard.rst_stream(stream_open=True)  # counted as a reset, elsewhere
    guard.headers(opens_stream=False, stream_open=True)  # trailers
    assert guard.idle_frames == 4


def test_each_opened_stream_forgives_two_idle_frames() -> None:
    guard = _guard(max_idle_frames=3)
    for _ in range(20):
        guard.unknown()
        guard.unknown()
        guard.headers(opens_stream=True, stream_open=False)
    with pytest.raises(H2Flood):
        for _ in range(4):
            guard.unknown()


def test_acks_count_only_when_nobody_asked_for_them() -> None:
    guard = _guard(max_idle_frames=2)
    guard.settings(ack=True)  # the ACK of the server's preface SETTINGS
    assert guard.idle_frames == 0
    guard.settings(ack=True)
    guard.ping(ack=True)  # the server sends no PING
    assert guard.idle_frames == 2
    guard.goaway()
    with pytest.raises(H2Flood):
        guard.goaway()


def test_ping_and_settings_allowances_are_exact_per_frame() -> None:
    guard = _guard(max_pings=1000, max_settings=100)
    passed, flood = _until_flood(lambda: guard.ping(ack=False))
    assert (passed, flood.what) == (1000, "PING frames")
    passed, flood = _until_flood(lambda: guard.settings(ack=False))
    assert (passed, flood.what) == (100, "SETTINGS frames")


def test_allowances_restart_with_the_window() -> None:
    clock = _Clock()
    guard = _guard(clock, max_idle_frames=10, window=1.0)
    for second in range(5):
        clock.now = 100.0 + second
        for _ in range(10):
            guard.unknown()
    clock.now = 104.5
    with pytest.raises(H2Flood):
        guard.unknown()


def test_none_disables_an_allowance() -> None:
    guard = _guard(max_idle_frames=None, max_pings=None)
    for _ in range(10_000):
        guard.unknown()
        guard.ping(ack=False)
    assert guard.idle_frames == 10_000


def test_empty_data_is_never_queued_for_the_handler() -> None:
    acked: list[int] = []
    body = H2InboundData(acked.append)
    for _ in range(1000):
        body.push(b"", 0)
    body.push(b"", 10)  # padding only: its window comes back at once
    assert len(body._chunks) == 0
    assert acked == [10]
    body.push(b"x", 1)
    assert len(body._chunks) == 1


# -- on real sockets ----------------------------------------------------------------------------
def _unknown_frame(i: int) -> bytes:
    body = i.to_bytes(4, "big")
    return len(body).to_bytes(3, "big") + bytes([0x20 + i % 16, 0]) + (0).to_bytes(4, "big") + body


def _open_stream(enc: hpack.Encoder, sid: int, *, end: bool = False) -> bytes:
    block = enc.encode(
        [(":method", "POST"), (":scheme", "http"), (":authority", "t"), (":path", "/slow")]
    )
    frame = HeadersFrame(sid, block)
    frame.flags.add("END_HEADERS")
    if end:
        frame.flags.add("END_STREAM")
    return bytes(frame.serialize())


def _empty_data(n: int) -> bytes:
    return bytes(DataFrame(1, b"").serialize()) * n


def _window_plus_one(n: int) -> bytes:
    return bytes(WindowUpdateFrame(0, window_increment=1).serialize()) * n


def _idle_priorities(n: int) -> bytes:
    return b"".join(
        bytes(PriorityFrame(1001 + 2 * i, depends_on=0, stream_weight=15).serialize())
        for i in range(n)
    )


def _unknown(n: int) -> bytes:
    return b"".join(_unknown_frame(i) for i in range(n))


def _small_data_on_a_reset_stream(n: int) -> bytes:
    reset = bytes(RstStreamFrame(1, error_code=ErrorCodes.CANCEL).serialize())
    return reset + bytes(DataFrame(1, b"x").serialize()) * n


FLOODS: dict[str, tuple[Callable[[int], bytes], str]] = {
    "empty-data": (_empty_data, "empty DATA"),
    "window-update-plus-one": (_window_plus_one, "WINDOW_UPDATE"),
    "priority-idle-streams": (_idle_priorities, "PRIORITY"),
    "unknown-frames": (_unknown, "unknown"),
    "data-on-closed-stream": (_small_data_on_a_reset_stream, "closed streams"),
}


async def _slow(ctx: Context, req: Request) -> Response:
    if req.path == "/slow":
        await anyio.sleep(30)  # never reads its body
    return Response.from_text("hello\n")


async def _flood(stream: ByteStream, frames: bytes, total: int) -> int:
    """Send ``frames`` up to ``total`` times, until the server stops taking them."""
    sent = 0
    try:
        for _ in range(total):
            await stream.send(frames)
            sent += 1
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    return sent


async def _well_behaved(port: int, latencies: list[float], stop: anyio.Event) -> None:
    async with httpx.AsyncClient(
        http1=False, http2=True, base_url=f"http://127.0.0.1:{port}"
    ) as client:
        while not stop.is_set():
            start = time.perf_counter()
            resp = await client.get("/")
            latencies.append(time.perf_counter() - start)
            assert resp.text == "hello\n"
            await anyio.sleep(0.005)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", list(FLOODS))
async def test_a_flood_of_frames_that_carry_nothing_gets_goaway_enhance_your_calm(
    kind: str,
) -> None:
    make, what = FLOODS[kind]
    conns: list[H2Connection] = []
    latencies: list[float] = []
    stop = anyio.Event()
    # The defaults: every allowance is finite without configuring anything.
    async with h2_server(_slow, ServerConfig(), conns=conns) as port:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_well_behaved, port, latencies, stop)
            stream = await anyio.connect_tcp("127.0.0.1", port)
            enc = hpack.Encoder()
            await stream.send(
                CONNECTION_PREFACE + bytes(SettingsFrame(0).serialize()) + _open_stream(enc, 1)
            )
            batch = make(1000)
            start = time.perf_counter()
            tg.start_soon(_flood, stream, batch, 1000)  # up to a million frames
            frames = await read_frames(stream, lambda fs: "EOF" in fs)
            elapsed = time.perf_counter() - start
            await stream.aclose()
            await anyio.sleep(0.2)  # the well-behaved client goes on meanwhile
            stop.set()
    (goaway,) = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert what.encode() in goaway.additional_data
    assert elapsed < 10.0  # a million frames would take far longer; the bound is for loaded CI
    # Stopped at the allowance, not after the million frames.
    guard = conns[0]._flood
    assert guard.idle_frames <= H2Config().max_idle_frames + 2  # type: ignore[operator]
    # The other client: served throughout, its own connection never told to go away.
    assert len(latencies) >= 5
    # Served throughout: typical answers stay fast; a loaded machine may stall one.
    assert sorted(latencies)[len(latencies) // 2] < 0.5
    assert max(latencies) < 5.0
    assert len(conns) == 2


@pytest.mark.anyio
async def test_empty_data_below_the_allowance_queues_nothing_and_the_stream_goes_on() -> None:
    conns: list[H2Connection] = []
    async with h2_server(_slow, conns=conns) as port, RawH2.connect(port) as c:
        sid = await c.request("/slow", "POST", end=False)
        for _ in range(500):
            c.conn.send_data(sid, b"")
        await c.flush()
        c.conn.ping(b"12345678")
        await c.flush()
        await c.until(
            lambda: bool([e for e in c.events if isinstance(e, h2.events.PingAckReceived)])
        )
        assert len(conns[0]._streams[sid].body._chunks) == 0
        after = await c.request("/after")
        await c.until(lambda: c.ended(after))
        assert c.body(after) == b"hello\n"
        assert c.goaway() is None


@pytest.mark.anyio
async def test_a_long_download_with_frequent_window_updates_is_not_a_flood() -> None:
    """A client that returns window in small pieces, per DATA frame, is progress."""
    big = b"z" * (4 * 1024 * 1024)

    async def handler(ctx: Context, req: Request) -> Response:
        return Response.from_bytes(big)

    config = ServerConfig(h2=H2Config(max_idle_frames=20))
    async with h2_server(handler, config) as port, RawH2.connect(port) as c:
        sid = await c.request("/big")
        got = 0
        with anyio.fail_after(10):
            while not c.ended(sid):
                await c.pump()
                for e in c.events[got:]:
                    n = getattr(e, "flow_controlled_length", 0) or 0
                    if n:
                        # Two updates per frame, each half of it, on both scopes.
                        for part in (n // 2, n - n // 2):
                            c.conn.increment_flow_control_window(part)
                            with contextlib.suppress(h2.exceptions.StreamClosedError):
                                c.conn.increment_flow_control_window(part, stream_id=sid)
                got = len(c.events)
                await c.flush()
        assert len(c.body(sid)) == len(big)
        assert c.goaway() is None


@pytest.mark.anyio
async def test_ping_acks_stop_exactly_at_the_allowance() -> None:
    """Checked per frame: 5000 PINGs in one write get max_pings ACKs, not one read more."""
    config = ServerConfig(h2=H2Config(max_pings=1000))
    async with h2_server(_slow, config) as port:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        pings = b"".join(
            bytes(PingFrame(0, opaque_data=i.to_bytes(8, "big")).serialize()) for i in range(5000)
        )
        await stream.send(CONNECTION_PREFACE + bytes(SettingsFrame(0).serialize()) + pings)
        frames = await read_frames(stream, lambda fs: "EOF" in fs)
        await stream.aclose()
    acks = [f for f in frames if isinstance(f, PingFrame) and "ACK" in f.flags]
    assert len(acks) == 1000
    (goaway,) = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


@pytest.mark.anyio
async def test_settings_acks_stop_exactly_at_the_allowance() -> None:
    config = ServerConfig(h2=H2Config(max_settings=100))
    async with h2_server(_slow, config) as port:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        one = bytes(SettingsFrame(0, settings={SettingsFrame.ENABLE_PUSH: 0}).serialize())
        await stream.send(CONNECTION_PREFACE + one * 2000)
        frames = await read_frames(stream, lambda fs: "EOF" in fs)
        await stream.aclose()
    acks = [f for f in frames if isinstance(f, SettingsFrame) and "ACK" in f.flags]
    assert len(acks) == 100
