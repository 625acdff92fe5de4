"""Byte counting and rate limiting middleware over real sockets."""

from __future__ import annotations

import socket

import anyio
import pytest
from anyio.abc import ByteStream, SocketStream

from rama_core import Context, service_fn
from rama_net import (
    ByteCounters,
    ByteCountLayer,
    RateLimitedStream,
    RateLimitLayer,
    TcpListener,
    TokenBucket,
    connect_tcp,
)

pytestmark = pytest.mark.anyio


async def _pair() -> tuple[SocketStream, SocketStream]:
    a, b = socket.socketpair()
    return await SocketStream.from_socket(a), await SocketStream.from_socket(b)


async def test_byte_count_layer_puts_counters_in_the_context() -> None:
    seen: list[ByteCounters] = []

    @service_fn
    async def echo_once(ctx: Context, stream: ByteStream) -> None:
        seen.append(ctx.require(ByteCounters))
        data = await stream.receive()
        await stream.send(data * 3)

    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, ByteCountLayer().layer(echo_once))
        client = await connect_tcp(str(listener.local_addr))
        await client.send(b"abcd")
        got = b""
        with anyio.fail_after(5):
            while len(got) < 12:
                got += await client.receive()
        await client.aclose()
        await listener.aclose()
    assert seen[0].received == 4
    assert seen[0].sent == 12


async def test_token_bucket_grants_within_burst() -> None:
    bucket = TokenBucket(rate=1000, burst=100)
    assert await bucket.take(500) == 100  # never more than the burst
    bucket.give_back(40)
    assert await bucket.take(1000) == 40
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0)


async def test_write_rate_limit_paces_the_sender() -> None:
    a, b = await _pair()
    limited = RateLimitedStream(a, write=TokenBucket(rate=200_000, burst=20_000))
    payload = b"z" * 100_000
    async with a, b, anyio.create_task_group() as tg:
        received = bytearray()

        async def drain() -> None:
            while len(received) < len(payload):
                received.extend(await b.receive())

        tg.start_soon(drain)
        started = anyio.current_time()
        await limited.send(payload)
        elapsed = anyio.current_time() - started
    assert bytes(received) == payload
    # 100 kB at 200 kB/s with a 20 kB head start: at least ~0.4 s
    assert elapsed >= 0.35, elapsed


async def test_read_rate_limit_paces_the_receiver() -> None:
    a, b = await _pair()
    limited = RateLimitedStream(b, read=TokenBucket(rate=100_000, burst=10_000))
    async with a, b:
        await a.send(b"r" * 50_000)
        await a.send_eof()
        got = bytearray()
        started = anyio.current_time()
        with anyio.fail_after(10):
            try:
                while True:
                    chunk = await limited.receive(65536)
                    assert len(chunk) <= 10_000
                    got.extend(chunk)
            except anyio.EndOfStream:
                pass
        elapsed = anyio.current_time() - started
    assert len(got) == 50_000
    assert elapsed >= 0.35, elapsed


async def test_rate_limit_layer_wraps_each_connection() -> None:
    @service_fn
    async def blast(ctx: Context, stream: ByteStream) -> None:
        await stream.send(b"b" * 60_000)

    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, RateLimitLayer(write=200_000).layer(blast))
        client = await connect_tcp(str(listener.local_addr))
        started = anyio.current_time()
        total = 0
        with anyio.fail_after(10):
            try:
                while True:
                    total += len(await client.receive())
            except anyio.EndOfStream:
                pass
        elapsed = anyio.current_time() - started
        await client.aclose()
        await listener.aclose()
    assert total == 60_000
    assert elapsed >= 0.15, elapsed


@pytest.mark.parametrize("wrapper", ["counting", "rate-limited"])
async def test_wrappers_pass_connection_lost_through_unchanged(wrapper: str) -> None:
    from rama_net import ConnectionLost, CountingStream, wrap_socket

    with socket.create_server(("127.0.0.1", 0)) as srv:
        peer = socket.create_connection(srv.getsockname())
        ours, _ = srv.accept()
    inner = await wrap_socket(ours)
    stream: ByteStream = (
        CountingStream(inner)
        if wrapper == "counting"
        else RateLimitedStream(inner, read=TokenBucket(1e6), write=TokenBucket(1e6))
    )
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()  # RST
    with anyio.fail_after(5), pytest.raises(ConnectionLost):
        while True:
            await stream.receive()
    with pytest.raises(ConnectionLost):
        for _ in range(100):
            await stream.send(b"x" * 1024)
            await anyio.sleep(0.001)
    await stream.aclose()
