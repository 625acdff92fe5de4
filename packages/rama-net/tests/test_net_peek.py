"""PeekStream: look at the first bytes, then replay them."""

from __future__ import annotations

import anyio
import pytest

from rama_net import PeekError, PeekStream

pytestmark = pytest.mark.anyio


async def _socketpair() -> tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]:
    import socket

    a, b = socket.socketpair()
    return (
        await anyio.abc.SocketStream.from_socket(a),
        await anyio.abc.SocketStream.from_socket(b),
    )


async def test_peek_then_replay_everything() -> None:
    client, server = await _socketpair()
    async with client, server:
        await client.send(b"GET ")
        await client.send(b"/ HTTP/1.1\r\n")
        peek = PeekStream(server)
        head = await peek.peek(3)
        assert head == b"GET"
        assert peek.peeked.startswith(b"GET")
        # peeking more keeps reading ahead until enough is buffered
        assert await peek.peek(10) == b"GET / HTTP"
        await client.send_eof()
        received = b""
        with pytest.raises(anyio.EndOfStream):
            while True:
                received += await peek.receive(4)
        assert received == b"GET / HTTP/1.1\r\n"


async def test_fill_until_a_predicate_holds() -> None:
    client, server = await _socketpair()
    async with client, server:
        peek = PeekStream(server)
        async with anyio.create_task_group() as tg:

            async def dribble() -> None:
                for part in (b"PROXY ", b"TCP4 1.2.3.4 ", b"5.6.7.8 1 2\r\n", b"body"):
                    await client.send(part)
                    await anyio.sleep(0.01)

            tg.start_soon(dribble)
            buffered = await peek.fill(lambda buf: b"\r\n" in buf, timeout=5)
        assert b"\r\n" in buffered
        assert peek.take_peeked() == buffered
        assert peek.peeked == b""


async def test_short_peek_at_eof() -> None:
    client, server = await _socketpair()
    async with server:
        await client.send(b"ab")
        await client.aclose()
        peek = PeekStream(server)
        assert await peek.peek(10) == b"ab"
        assert peek.at_eof
        assert await peek.receive() == b"ab"
        with pytest.raises(anyio.EndOfStream):
            await peek.receive()


async def test_peek_limit_and_timeout_are_typed_errors() -> None:
    client, server = await _socketpair()
    async with client, server:
        peek = PeekStream(server)
        await client.send(b"x" * 100)
        with pytest.raises(PeekError, match="no decision"):
            await peek.fill(lambda buf: False, limit=50, timeout=5)
        slow = PeekStream(server)
        with pytest.raises(PeekError, match="within"):
            await slow.peek(10_000, timeout=0.05)


async def test_prefix_is_replayed_first() -> None:
    client, server = await _socketpair()
    async with client, server:
        await client.send(b"world")
        peek = PeekStream(server, prefix=b"hello ")
        assert await peek.peek(8) == b"hello wo"
        # buffered bytes come back first, on their own; then the stream continues
        assert await peek.receive(100) == b"hello wo"
        assert await peek.receive(100) == b"rld"
        await peek.send(b"back")
        assert await client.receive() == b"back"
