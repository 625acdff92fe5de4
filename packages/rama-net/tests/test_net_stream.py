"""ProtocolStream (asyncio fast path) and TrackedStream behaviour on real sockets."""

from __future__ import annotations

import socket
import time
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute

from rama_net import ProtocolStream, TrackedStream, raw_socket_of, wrap_socket

pytestmark = pytest.mark.anyio
# ProtocolStream is the asyncio streams' class: on both asyncio loops, never trio.
_ASYNCIO_LOOPS = pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ],
)


async def _wrapped_pair() -> tuple[ProtocolStream | TrackedStream, socket.socket]:
    a, b = socket.socketpair()
    b.setblocking(False)
    return await wrap_socket(a), b


async def test_wrap_socket_picks_the_stream_for_the_backend(anyio_backend: Any) -> None:
    stream, peer = await _wrapped_pair()
    async with stream:
        expected = TrackedStream if anyio_backend == "trio" else ProtocolStream
        assert type(stream) is expected
        assert isinstance(raw_socket_of(stream), socket.socket)
        assert stream.extra(SocketAttribute.family) == socket.AF_UNIX
    peer.close()


async def test_counts_bytes_and_activity() -> None:
    stream, peer = await _wrapped_pair()
    async with stream:
        before = stream.last_activity
        await anyio.sleep(0.01)
        peer.send(b"abc")
        assert await stream.receive() == b"abc"
        await stream.send(b"hello")
        assert stream.bytes_received == 3
        assert stream.bytes_sent == 5
        assert stream.last_activity > before
        assert stream.last_received > before
    peer.close()


async def test_receive_respects_max_bytes_and_keeps_the_rest() -> None:
    stream, peer = await _wrapped_pair()
    async with stream:
        peer.send(b"0123456789")
        await anyio.sleep(0.02)
        assert await stream.receive(4) == b"0123"
        rest = b""
        while len(rest) < 6:
            rest += await stream.receive(100)
        assert rest == b"456789"
    peer.close()


async def test_eof_half_close_and_closed_errors() -> None:
    stream, peer = await _wrapped_pair()
    peer.send(b"last")
    peer.shutdown(socket.SHUT_WR)
    got = b""
    with pytest.raises(anyio.EndOfStream):
        while True:
            got += await stream.receive()
    assert got == b"last"
    await stream.send(b"still writable")  # our side stays open after the peer's EOF
    await anyio.sleep(0.02)
    assert peer.recv(100) == b"still writable"
    await stream.send_eof()
    await anyio.sleep(0.02)
    assert peer.recv(100) == b""
    await stream.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await stream.receive()
    with pytest.raises(anyio.ClosedResourceError):
        await stream.send(b"x")
    peer.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_protocol_stream_backpressure_flush_and_detach() -> None:
    stream, peer = await _wrapped_pair()
    assert isinstance(stream, ProtocolStream)
    big = b"w" * (4 << 20)
    stream.send_nowait(big)  # more than the socket buffers hold: queued in the transport
    assert stream.write_paused

    async def reader() -> bytes:
        got = bytearray()
        while len(got) < len(big):
            try:
                got.extend(peer.recv(1 << 20))
            except BlockingIOError:
                await anyio.sleep(0.001)
        return bytes(got)

    async with anyio.create_task_group() as tg:
        result: list[bytes] = []

        async def collect() -> None:
            result.append(await reader())

        tg.start_soon(collect)
        with anyio.fail_after(10):
            await stream.flush()  # returns only once the transport buffer is empty
        assert not stream.write_paused
    assert result[0] == big

    peer.send(b"buffered-before-detach")
    await anyio.sleep(0.02)
    pending = stream.detach_reader()
    assert pending == b"buffered-before-detach"
    peer.send(b"after")
    await anyio.sleep(0.02)
    # reading stopped: the new bytes wait in the kernel for whoever takes the socket
    assert stream.receive_nowait() is None
    assert stream.extra(SocketAttribute.raw_socket).recv(100) == b"after"
    stream.abort()
    peer.close()


async def _tcp_pair(rcvbuf: int) -> tuple[ProtocolStream, socket.socket]:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        peer = socket.socket()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        peer.connect(listening.getsockname())
        ours, _ = listening.accept()
    peer.setblocking(False)
    stream = await wrap_socket(ours)
    assert isinstance(stream, ProtocolStream)
    return stream, peer


async def _read_until_closed(peer: socket.socket, pace: float = 0.0) -> int:
    got = 0
    while True:
        try:
            chunk = peer.recv(256 * 1024)
        except BlockingIOError:
            await anyio.sleep(0.005)
            continue
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += len(chunk)
        if pace:
            await anyio.sleep(pace)


@_ASYNCIO_LOOPS
async def test_close_resets_a_peer_that_stops_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing flushes, but not for ever: no progress for the linger time resets."""
    monkeypatch.setattr("rama_net._stream._LINGER_STALL", 0.2)
    stream, peer = await _tcp_pair(16 * 1024)
    size = 8 << 20
    stream.send_nowait(b"x" * size)  # far more than the kernel buffers hold
    await stream.aclose()
    await anyio.sleep(0.6)  # the peer reads nothing: the flush stalls, the stream aborts
    with anyio.fail_after(5):
        got = await _read_until_closed(peer)
    peer.close()
    assert got < size  # only what the kernel held; the rest was dropped with the reset


@_ASYNCIO_LOOPS
async def test_close_keeps_flushing_to_a_slow_steady_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("rama_net._stream._LINGER_STALL", 0.3)
    stream, peer = await _tcp_pair(16 * 1024)
    size = 1 << 20
    stream.send_nowait(b"x" * size)
    await stream.aclose()
    with anyio.fail_after(10):
        got = await _read_until_closed(peer, pace=0.02)  # slower than the flush would go
    peer.close()
    assert got == size


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_receive_nowait_joins_everything_buffered() -> None:
    stream, peer = await _wrapped_pair()
    assert isinstance(stream, ProtocolStream)
    assert stream.receive_nowait() is None
    for part in (b"a", b"b", b"c"):
        peer.send(part)
        await anyio.sleep(0.01)
    assert stream.receive_nowait() == b"abc"
    await stream.aclose()
    peer.close()


async def test_peer_reset_raises_broken_resource() -> None:
    stream, peer = await _wrapped_pair()
    peer.close()
    with anyio.fail_after(5), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
        await stream.receive()
    with pytest.raises((anyio.BrokenResourceError, anyio.ClosedResourceError)):
        for _ in range(100):
            await stream.send(b"x" * 65536)
            await anyio.sleep(0)
    await stream.aclose()


async def test_a_second_concurrent_reader_is_busy_and_the_first_keeps_reading() -> None:
    stream, peer = await _wrapped_pair()
    got: list[bytes] = []
    async with stream, anyio.create_task_group() as tg:

        async def first() -> None:
            got.append(await stream.receive())

        tg.start_soon(first)
        await anyio.sleep(0.05)  # the first reader is waiting for data
        with anyio.fail_after(2), pytest.raises(anyio.BusyResourceError):
            await stream.receive()
        peer.send(b"for the first")
        with anyio.fail_after(5):
            while not got:
                await anyio.sleep(0.01)
    assert got == [b"for the first"]
    peer.close()


async def test_buffered_receives_yield_to_other_tasks() -> None:
    # One connection with a full buffer must not hold the event loop until it
    # is drained: receive() yields after 2 ms of serving from its buffer.
    stream, peer = await _wrapped_pair()
    payload = b"x" * (128 * 1024)
    peer.setblocking(True)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0)

    async with stream, anyio.create_task_group() as tg:
        await anyio.to_thread.run_sync(peer.sendall, payload)
        proto = getattr(stream, "_protocol", None)
        with anyio.fail_after(5):
            while proto is not None and proto.buffered < len(payload):
                await anyio.sleep(0.01)
        tg.start_soon(ticker)
        await anyio.sleep(0)
        before = ticks
        got = 0
        while got < len(payload):
            got += len(await stream.receive(512))
            time.sleep(0.0002)  # the consumer's own work per chunk (parsing frames, say)
        during = ticks - before
        tg.cancel_scope.cancel()
    # 256 reads of ~0.2 ms each: about 50 ms of work, so some 25 turns for the others
    assert during >= 5, f"other tasks ran {during} times while 256 buffered reads were served"
    peer.close()


async def test_cancelled_fairness_checkpoint_loses_no_bytes() -> None:
    stream, peer = await _wrapped_pair()
    payload = bytes(range(256)) * 512  # 128 KiB
    peer.setblocking(True)
    async with stream:
        await anyio.to_thread.run_sync(peer.sendall, payload)
        proto = getattr(stream, "_protocol", None)
        with anyio.fail_after(5):
            while proto is not None and proto.buffered < len(payload):
                await anyio.sleep(0.01)
        got = bytearray()
        cancelled = 0
        while len(got) < len(payload):
            # a scope cancelled before the call: a checkpoint in receive is cancelled
            with anyio.CancelScope() as scope:
                scope.cancel()
                got += await stream.receive(1024)
            cancelled += scope.cancelled_caught
            if len(got) < len(payload):
                got += await stream.receive(1024)
            time.sleep(0.0002)  # per-chunk work, so the 2 ms bound is reached
        assert bytes(got) == payload
        assert cancelled >= 1  # the checkpoint is a cancellation point
    peer.close()
