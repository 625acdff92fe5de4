"""TCP listener: per-connection context, limits, timeouts, drain, isolation."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream

from rama_core import Context, Shutdown, service_fn
from rama_net import (
    ConnectionId,
    ConnectRefused,
    SocketInfo,
    TcpListener,
    TcpServerConfig,
    connect_tcp,
)

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def serving(
    service: Any,
    address: str = "127.0.0.1:0",
    config: TcpServerConfig | None = None,
    ctx: Context | None = None,
) -> AsyncIterator[TcpListener]:
    listener = TcpListener.bind(address)
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(listener.serve, service, config, ctx=ctx))
        try:
            yield listener
        finally:
            listener.close()


@service_fn
async def echo(ctx: Context, stream: ByteStream) -> None:
    async for chunk in stream:
        await stream.send(chunk)


async def _roundtrip(addr: str, payload: bytes = b"ping") -> bytes:
    stream = await connect_tcp(addr)
    async with stream:
        await stream.send(payload)
        got = b""
        with anyio.fail_after(5):
            while len(got) < len(payload):
                got += await stream.receive()
        return got


async def test_echo_over_ipv4_and_ipv6() -> None:
    async with serving(echo) as listener:
        assert await _roundtrip(str(listener.local_addr)) == b"ping"
    async with serving(echo, "[::1]:0") as listener:
        assert str(listener.local_addr).startswith("[::1]:")
        assert await _roundtrip(str(listener.local_addr), b"x" * 200_000) == b"x" * 200_000


async def test_localhost_binds_every_family_on_one_port() -> None:
    async with serving(echo, "localhost:0") as listener:
        ports = {a.port for a in listener.local_addrs}
        assert len(ports) == 1
        for addr in listener.local_addrs:
            assert await _roundtrip(str(addr)) == b"ping"


async def test_context_holds_socket_info_and_connection_id() -> None:
    seen: list[tuple[SocketInfo, ConnectionId, str]] = []
    parent = Context()
    parent.insert("parent-extension")

    @service_fn
    async def record(ctx: Context, stream: ByteStream) -> None:
        seen.append((ctx.require(SocketInfo), ctx.require(ConnectionId), ctx.require(str)))
        await stream.send(b"ok")

    async with serving(record, ctx=parent) as listener:
        for _ in range(2):
            client = await connect_tcp(str(listener.local_addr))
            async with client:
                assert await client.receive() == b"ok"
                local = client.extra(anyio.abc.SocketAttribute.local_address)
                assert (str(seen[-1][0].peer_addr.ip), seen[-1][0].peer_addr.port) == local
    assert seen[0][0].local_addr == listener.local_addr
    assert seen[0][1] != seen[1][1]
    assert str(seen[0][1]).startswith("conn-")
    assert seen[0][2] == "parent-extension"
    assert not parent.contains(SocketInfo)  # children do not write into the parent


async def test_failing_service_does_not_stop_the_listener() -> None:
    @service_fn
    async def flaky(ctx: Context, stream: ByteStream) -> None:
        data = await stream.receive()
        if data == b"boom":
            raise RuntimeError("handler bug")
        await stream.send(data)

    async with serving(flaky) as listener:
        client = await connect_tcp(str(listener.local_addr))
        await client.send(b"boom")
        with anyio.fail_after(5), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await client.receive()
        await client.aclose()
        assert await _roundtrip(str(listener.local_addr)) == b"ping"


async def test_slow_connection_does_not_stall_accepting() -> None:
    async with serving(echo) as listener:
        silent = [await connect_tcp(str(listener.local_addr)) for _ in range(20)]
        with anyio.fail_after(5):
            assert await _roundtrip(str(listener.local_addr)) == b"ping"
        for s in silent:
            await s.aclose()


async def test_max_connections_holds_back_further_accepts() -> None:
    release = anyio.Event()
    served: list[int] = []

    @service_fn
    async def hold(ctx: Context, stream: ByteStream) -> None:
        served.append(ctx.require(ConnectionId).value)
        await stream.send(b"hi")
        await release.wait()

    cfg = TcpServerConfig(max_connections=2)
    async with serving(hold, config=cfg) as listener:
        first = [await connect_tcp(str(listener.local_addr)) for _ in range(2)]
        for c in first:
            assert await c.receive() == b"hi"
        third = await connect_tcp(str(listener.local_addr))  # the kernel backlog takes it
        with anyio.move_on_after(0.3) as waited:
            await third.receive()
        assert waited.cancelled_caught, "a third connection was served above the limit"
        assert listener.open_connections == 2
        release.set()
        with anyio.fail_after(5):
            assert await third.receive() == b"hi"
        for c in [*first, third]:
            await c.aclose()
    assert len(served) == 3


async def test_idle_timeout_closes_silent_connections() -> None:
    cfg = TcpServerConfig(idle_timeout=0.2)
    async with serving(echo, config=cfg) as listener:
        client = await connect_tcp(str(listener.local_addr))
        await client.send(b"a")
        assert await client.receive() == b"a"
        with anyio.fail_after(5), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await client.receive()
        await client.aclose()


async def test_active_connection_outlives_the_idle_timeout() -> None:
    cfg = TcpServerConfig(idle_timeout=0.3)
    async with serving(echo, config=cfg) as listener:
        client = await connect_tcp(str(listener.local_addr))
        async with client:
            with anyio.fail_after(10):
                for _ in range(10):  # 1 s of traffic, more than three idle timeouts
                    await client.send(b"k")
                    assert await client.receive() == b"k"
                    await anyio.sleep(0.1)


async def test_read_timeout_closes_a_peer_that_only_reads() -> None:
    @service_fn
    async def talker(ctx: Context, stream: ByteStream) -> None:
        while True:
            await stream.send(b"tick")
            await anyio.sleep(0.05)

    cfg = TcpServerConfig(idle_timeout=None, read_timeout=0.3)
    async with serving(talker, config=cfg) as listener:
        client = await connect_tcp(str(listener.local_addr))
        started = anyio.current_time()
        with anyio.fail_after(5), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            while True:
                await client.receive()
        assert anyio.current_time() - started >= 0.25
        await client.aclose()


async def test_close_drains_in_flight_connections() -> None:
    finished = anyio.Event()

    @service_fn
    async def slow(ctx: Context, stream: ByteStream) -> None:
        await stream.receive()
        await anyio.sleep(0.3)
        await stream.send(b"done")
        finished.set()

    listener = TcpListener.bind("127.0.0.1:0")
    addr = str(listener.local_addr)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, slow)
        client = await connect_tcp(addr)
        await client.send(b"go")
        await anyio.sleep(0.05)
        await listener.aclose()
        with pytest.raises(ConnectRefused):  # no longer accepting
            await connect_tcp(addr, connect_timeout=1)
        assert await client.receive() == b"done"
        await client.aclose()
    assert finished.is_set()


def stuck_until_cancelled(cancelled: anyio.Event) -> Any:
    """A stream service that greets, then never ends on its own; sets ``cancelled`` when cut."""

    @service_fn
    async def stuck(ctx: Context, stream: ByteStream) -> None:
        await stream.send(b"in")
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    return stuck


async def test_drain_timeout_cancels_connections_that_do_not_finish() -> None:
    cancelled = anyio.Event()
    stuck = stuck_until_cancelled(cancelled)
    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, stuck, TcpServerConfig(drain_timeout=0.3))
        client = await connect_tcp(str(listener.local_addr))
        assert await client.receive() == b"in"
        started = anyio.current_time()
        await listener.aclose()
        with anyio.fail_after(5):
            await cancelled.wait()
        assert 0.25 <= anyio.current_time() - started < 3
        await client.aclose()


async def test_shutdown_deadline_cancels_stuck_connections() -> None:
    cancelled = anyio.Event()
    stuck = stuck_until_cancelled(cancelled)
    listener = TcpListener.bind("127.0.0.1:0")
    with anyio.fail_after(10):
        async with Shutdown(grace=0.3, signals=()) as shutdown:
            shutdown.spawn(partial(listener.serve, stuck, ctx=shutdown.context()))
            client = await connect_tcp(str(listener.local_addr))
            assert await client.receive() == b"in"
            shutdown.trigger()
        await client.aclose()
    assert cancelled.is_set()
    assert shutdown.report is not None
    assert not shutdown.report.clean


async def test_reuse_port_lets_two_listeners_share_a_port() -> None:
    first = TcpListener.bind("127.0.0.1:0", reuse_port=True)
    port = first.local_addr.port
    second = TcpListener.bind(("127.0.0.1", port), reuse_port=True)
    assert second.local_addr.port == port
    first.close()
    second.close()
    with pytest.raises(OSError, match="in use"):
        taken = TcpListener.bind("127.0.0.1:0")
        try:
            TcpListener.bind(("127.0.0.1", taken.local_addr.port))
        finally:
            taken.close()


async def test_peer_reset_is_contained() -> None:
    async with serving(echo) as listener:
        raw = socket.create_connection(listener.local_addr.to_sockaddr())
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        raw.sendall(b"data")
        raw.close()  # RST
        await anyio.sleep(0.05)
        assert await _roundtrip(str(listener.local_addr)) == b"ping"


async def test_a_service_timeout_is_logged_at_info_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @service_fn
    async def times_out(ctx: Context, stream: ByteStream) -> None:
        with anyio.fail_after(0.01):
            await anyio.sleep(5)

    with caplog.at_level(logging.DEBUG, logger="rama.net"):
        async with serving(times_out) as listener:
            client = await connect_tcp(str(listener.local_addr))
            with anyio.fail_after(5), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await client.receive()
            await client.aclose()
    timed_out = [r for r in caplog.records if "timed out" in r.getMessage()]
    assert [r.levelno for r in timed_out] == [logging.INFO]
    assert timed_out[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
