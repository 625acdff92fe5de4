"""forward(): both directions, half-close, counters, idle timeout, splice and copy paths."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream

from rama_core import Context, service_fn
from rama_net import (
    CountingStream,
    ForwardStats,
    PeekStream,
    ProtocolStream,
    TcpForwarder,
    TcpListener,
    connect_tcp,
    forward,
    zero_copy_supported,
)

pytestmark = pytest.mark.anyio

paths = pytest.mark.parametrize("zero_copy", [True, False], ids=["splice", "copy"])


@asynccontextmanager
async def serving(service: Any) -> AsyncIterator[TcpListener]:
    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, service)
        try:
            yield listener
        finally:
            listener.close()


@service_fn
async def digest_then_reply(ctx: Context, stream: ByteStream) -> None:
    """Reads to EOF, then answers with the size and sha256 (needs half-close to work)."""
    h = hashlib.sha256()
    size = 0
    async for chunk in stream:
        h.update(chunk)
        size += len(chunk)
    await stream.send(f"{size} {h.hexdigest()}".encode())


@asynccontextmanager
async def relay_to(target: TcpListener, **options: Any) -> AsyncIterator[tuple[TcpListener, list]]:
    stats: list[ForwardStats] = []

    @service_fn
    async def relay(ctx: Context, stream: ByteStream) -> None:
        upstream = await connect_tcp(str(target.local_addr))
        stats.append(await forward(stream, upstream, **options))

    async with serving(relay) as listener:
        yield listener, stats


async def _upload(addr: str, payload: bytes) -> bytes:
    client = await connect_tcp(addr)
    async with client:

        async def send() -> None:
            view = memoryview(payload)
            for i in range(0, len(view), 1 << 20):
                await client.send(bytes(view[i : i + (1 << 20)]))
            await client.send_eof()

        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            reply = b""
            with anyio.fail_after(30):
                try:
                    while True:
                        reply += await client.receive()
                except anyio.EndOfStream:
                    pass
        return reply


@paths
async def test_large_transfer_with_half_close_is_byte_exact(
    zero_copy: bool, anyio_backend: object
) -> None:
    payload = os.urandom(1 << 20) * 24  # 24 MiB
    async with (
        serving(digest_then_reply) as sink,
        relay_to(sink, zero_copy=zero_copy) as (
            relay,
            stats,
        ),
    ):
        reply = await _upload(str(relay.local_addr), payload)
        assert reply == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}".encode()
        with anyio.fail_after(5):
            while not stats:
                await anyio.sleep(0.01)
    (result,) = stats
    assert result.left_to_right == len(payload)
    assert result.right_to_left == len(reply)
    assert result.zero_copy == (zero_copy and zero_copy_supported())
    assert result.error is None
    assert not result.idle_timed_out


@paths
async def test_bytes_buffered_before_forwarding_are_not_lost(zero_copy: bool) -> None:
    """Data the server already read into its stream buffer must reach the target."""
    async with serving(digest_then_reply) as sink:
        done: list[ForwardStats] = []

        @service_fn
        async def late_relay(ctx: Context, stream: ByteStream) -> None:
            await anyio.sleep(0.2)  # let the client's bytes pile up in our buffers
            upstream = await connect_tcp(str(sink.local_addr))
            done.append(await forward(stream, upstream, zero_copy=zero_copy))

        async with serving(late_relay) as relay:
            payload = os.urandom(3 << 20)
            reply = await _upload(str(relay.local_addr), payload)
            assert reply == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}".encode()


@paths
async def test_idle_timeout_ends_forwarding(zero_copy: bool) -> None:
    @service_fn
    async def silent(ctx: Context, stream: ByteStream) -> None:
        async for _ in stream:  # reads, never answers; ends when the relay closes
            pass

    async with (
        serving(silent) as sink,
        relay_to(sink, idle_timeout=0.2, zero_copy=zero_copy) as (
            relay,
            stats,
        ),
    ):
        client = await connect_tcp(str(relay.local_addr))
        await client.send(b"anyone?")
        with anyio.fail_after(5), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await client.receive()
        await client.aclose()
        with anyio.fail_after(5):
            while not stats:
                await anyio.sleep(0.01)
    assert stats[0].idle_timed_out
    assert stats[0].left_to_right == 7


@paths
async def test_reset_by_one_side_ends_both(zero_copy: bool) -> None:
    @service_fn
    async def resetter(ctx: Context, stream: ByteStream) -> None:
        await stream.receive()
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        if isinstance(stream, ProtocolStream):
            stream.abort()
        else:
            await stream.aclose()

    async with serving(resetter) as sink, relay_to(sink, zero_copy=zero_copy) as (relay, stats):
        client = await connect_tcp(str(relay.local_addr))
        await client.send(b"x")
        with anyio.fail_after(5), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            while True:
                await client.receive()
        await client.aclose()
        with anyio.fail_after(5):
            while not stats:
                await anyio.sleep(0.01)


async def test_wrapped_streams_take_the_copy_path_and_keep_counts_exact() -> None:
    payload = os.urandom(2 << 20)
    async with serving(digest_then_reply) as sink:
        counted: list[CountingStream] = []
        stats: list[ForwardStats] = []

        @service_fn
        async def relay(ctx: Context, stream: ByteStream) -> None:
            wrapped = CountingStream(stream)
            counted.append(wrapped)
            upstream = await connect_tcp(str(sink.local_addr))
            stats.append(await forward(wrapped, upstream))

        async with serving(relay) as listener:
            reply = await _upload(str(listener.local_addr), payload)
            with anyio.fail_after(5):
                while not stats:
                    await anyio.sleep(0.01)
    assert not stats[0].zero_copy
    assert counted[0].counters.received == len(payload)
    assert counted[0].counters.sent == len(reply)


@paths
async def test_tcp_forwarder_service(zero_copy: bool) -> None:
    async with serving(digest_then_reply) as sink:
        forwarder = TcpForwarder(str(sink.local_addr), zero_copy=zero_copy, idle_timeout=10)
        async with serving(forwarder) as relay:
            payload = os.urandom(500_000)
            reply = await _upload(str(relay.local_addr), payload)
    assert reply == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}".encode()


async def test_forward_without_close_leaves_streams_open() -> None:
    a1, a2 = socket.socketpair()
    b1, b2 = socket.socketpair()
    left_peer = await anyio.abc.SocketStream.from_socket(a1)
    left = await anyio.abc.SocketStream.from_socket(a2)
    right = await anyio.abc.SocketStream.from_socket(b1)
    right_peer = await anyio.abc.SocketStream.from_socket(b2)
    async with left_peer, left, right, right_peer:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    await forward(left, right, close=False, zero_copy=False)

                tg.start_soon(run)
                await left_peer.send(b"to-right")
                assert await right_peer.receive() == b"to-right"
                await left_peer.send_eof()
                await right_peer.send_eof()
                with pytest.raises(anyio.EndOfStream):
                    await right_peer.receive()
                with pytest.raises(anyio.EndOfStream):
                    await left_peer.receive()
        # forward returned without closing: both streams still work (a closed
        # anyio stream raises ClosedResourceError for these)
        with pytest.raises(anyio.EndOfStream):
            await left.receive()
        with pytest.raises(anyio.EndOfStream):
            await right.receive()


@paths
async def test_a_slow_but_steady_reader_is_not_idle(zero_copy: bool) -> None:
    size = 512 * 1024
    stats: list[ForwardStats] = []

    @service_fn
    async def firehose(ctx: Context, stream: ByteStream) -> None:
        await stream.send(b"f" * size)
        await stream.send_eof()
        async for _ in stream:
            pass

    async with serving(firehose) as sink:

        @service_fn
        async def relay(ctx: Context, stream: ByteStream) -> None:
            # small kernel buffers, so the bytes really drain at the reader's pace
            sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
            upstream = await connect_tcp(str(sink.local_addr))
            stats.append(await forward(stream, upstream, idle_timeout=0.6, zero_copy=zero_copy))

        async with serving(relay) as listener:
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            raw.connect(listener.local_addr.to_sockaddr())
            raw.setblocking(False)
            client = await anyio.abc.SocketStream.from_socket(raw)
            got = 0
            started = anyio.current_time()
            with anyio.fail_after(20):
                try:
                    # ~32 KiB per 100 ms: a 64 KiB write drains within the idle
                    # timeout, a whole 256 KiB read chunk does not
                    while True:
                        got += len(await client.receive(32 * 1024))
                        await anyio.sleep(0.1)
                except anyio.EndOfStream:
                    pass
            elapsed = anyio.current_time() - started
            await client.aclose()
            with anyio.fail_after(5):
                while not stats:
                    await anyio.sleep(0.01)
    assert got == size, stats
    assert elapsed > 1.2, "the bytes did not have to drain slowly; the test proves nothing"
    assert not stats[0].idle_timed_out


@paths
async def test_client_reset_before_forwarding_starts_is_an_outcome_not_a_crash(
    zero_copy: bool,
) -> None:
    outcomes: list[ForwardStats | BaseException] = []
    accepted, reset_done = anyio.Event(), anyio.Event()

    @service_fn
    async def quiet(ctx: Context, stream: ByteStream) -> None:
        async for _ in stream:
            pass

    async with serving(quiet) as sink:

        @service_fn
        async def late_relay(ctx: Context, stream: ByteStream) -> None:
            accepted.set()
            await reset_done.wait()
            await anyio.sleep(0.2)  # the transport has seen the RST and closed its socket
            upstream = await connect_tcp(str(sink.local_addr))
            try:
                outcomes.append(await forward(stream, upstream, zero_copy=zero_copy))
            except BaseException as exc:
                outcomes.append(exc)
                raise

        async with serving(late_relay) as listener:
            raw = socket.create_connection(listener.local_addr.to_sockaddr()[:2])
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            with anyio.fail_after(5):
                await accepted.wait()
            raw.close()  # RST
            reset_done.set()
            with anyio.fail_after(5):
                while not outcomes:
                    await anyio.sleep(0.01)
    assert isinstance(outcomes[0], ForwardStats), outcomes
    assert isinstance(outcomes[0].error, anyio.BrokenResourceError)
    assert outcomes[0].left_to_right == outcomes[0].right_to_left == 0


def _recv_until_closed(sock: socket.socket) -> tuple[bytes, BaseException | None]:
    """Blocking: read until EOF or an error; returns what came and the error (None: clean EOF)."""
    got = b""
    sock.settimeout(5)
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except OSError as exc:
        return got, exc
    return got, None


@paths
async def test_upstream_reset_reaches_the_client_as_a_reset(zero_copy: bool) -> None:
    @service_fn
    async def partial_then_reset(ctx: Context, stream: ByteStream) -> None:
        await stream.receive()
        await stream.send(b"partial")
        await anyio.sleep(0.1)
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        if isinstance(stream, ProtocolStream):
            stream.abort()
        else:
            await stream.aclose()

    async with serving(partial_then_reset) as sink:
        forwarder = TcpForwarder(str(sink.local_addr), zero_copy=zero_copy, idle_timeout=10)
        async with serving(forwarder) as relay:
            raw = socket.create_connection(relay.local_addr.to_sockaddr()[:2])
            with raw:
                raw.sendall(b"request")
                got, error = await anyio.to_thread.run_sync(_recv_until_closed, raw)
    # before: a clean FIN, so the client could not tell a truncated answer from a whole one
    assert isinstance(error, ConnectionResetError), (got, error)
    assert got in (b"", b"partial")


async def test_forwarder_logs_an_unreachable_upstream_at_warning_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    with caplog.at_level(logging.DEBUG, logger="rama.net"):
        async with serving(TcpForwarder(f"127.0.0.1:{dead}")) as relay:
            raw = socket.create_connection(relay.local_addr.to_sockaddr()[:2])
            with raw:
                host, port = raw.getsockname()[:2]
                peer = f"{host}:{port}"
                _, error = await anyio.to_thread.run_sync(_recv_until_closed, raw)
            assert error is None or isinstance(error, ConnectionResetError)
            with anyio.fail_after(5):
                while not any(r.name == "rama.net.forwarder" for r in caplog.records):
                    await anyio.sleep(0.01)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    record = warnings[0]
    assert record.name == "rama.net.forwarder"
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert f"127.0.0.1:{dead}" in record.getMessage()
    assert peer in record.getMessage()
    assert "refused" in record.getMessage()


async def test_a_consumed_peek_stream_keeps_the_splice_path() -> None:
    """Protocol detection hands on a PeekStream; once its bytes are read, it splices."""
    async with serving(digest_then_reply) as sink:
        done: list[ForwardStats] = []

        @service_fn
        async def peeking_relay(ctx: Context, stream: ByteStream) -> None:
            peek = PeekStream(stream)
            head = await peek.peek(4)
            assert await peek.receive(4) == head
            upstream = await connect_tcp(str(sink.local_addr))
            await upstream.send(head)
            done.append(await forward(peek, upstream))

        async with serving(peeking_relay) as relay:
            payload = os.urandom(1 << 20)
            reply = await _upload(str(relay.local_addr), payload)
        assert reply == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}".encode()
        with anyio.fail_after(5):
            while not done:
                await anyio.sleep(0.01)
    assert done[0].zero_copy == zero_copy_supported()
    assert done[0].left_to_right == len(payload) - 4


async def test_a_peek_stream_with_bytes_left_is_copied_through() -> None:
    async with serving(digest_then_reply) as sink:
        done: list[ForwardStats] = []

        @service_fn
        async def peeking_relay(ctx: Context, stream: ByteStream) -> None:
            peek = PeekStream(stream)
            await peek.peek(4)
            upstream = await connect_tcp(str(sink.local_addr))
            done.append(await forward(peek, upstream))

        async with serving(peeking_relay) as relay:
            payload = os.urandom(1 << 16)
            reply = await _upload(str(relay.local_addr), payload)
        assert reply == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}".encode()
        with anyio.fail_after(5):
            while not done:
                await anyio.sleep(0.01)
    assert done[0].zero_copy is False
