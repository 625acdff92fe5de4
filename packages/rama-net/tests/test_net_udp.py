"""UDP listener and connector on loopback."""

from __future__ import annotations

import anyio
import pytest

from rama_core import Context, service_fn
from rama_net import (
    Datagram,
    InMemoryResolver,
    ResolveError,
    SocketInfo,
    UdpListener,
    UdpServerConfig,
    connect_udp,
)

pytestmark = pytest.mark.anyio


@service_fn
async def upper(ctx: Context, dgram: Datagram) -> bytes | None:
    info = ctx.require(SocketInfo)
    assert info.peer_addr == dgram.peer
    if dgram.payload == b"quiet":
        return None
    if dgram.payload == b"crash":
        raise RuntimeError("handler bug")
    return dgram.payload.upper()


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
async def test_datagram_service_replies(host: str) -> None:
    listener = await UdpListener.bind(f"{host}:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, upper)
        client = await connect_udp(str(listener.local_addr))
        async with client:
            with anyio.fail_after(5):
                await client.send(b"crash")  # logged, not fatal
                await client.send(b"quiet")  # no reply
                await client.send(b"hello")
                assert await client.receive() == b"HELLO"
                await client.send(b"again")
                assert await client.receive() == b"AGAIN"
        listener.close()


async def test_in_flight_limit_drops_excess_datagrams() -> None:
    gate = anyio.Event()

    @service_fn
    async def slow(ctx: Context, dgram: Datagram) -> bytes:
        await gate.wait()
        return b"ok"

    listener = await UdpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, slow, UdpServerConfig(max_in_flight=2))
        client = await connect_udp(str(listener.local_addr))
        async with client:
            for _ in range(5):
                await client.send(b"x")
            with anyio.fail_after(5):
                while listener.dropped < 3:
                    await anyio.sleep(0.01)
            gate.set()
            with anyio.fail_after(5):
                assert await client.receive() == b"ok"
                assert await client.receive() == b"ok"
            with anyio.move_on_after(0.2) as nothing_more:
                await client.receive()
            assert nothing_more.cancelled_caught
        listener.close()
    assert listener.dropped == 3


async def test_connector_resolves_names() -> None:
    listener = await UdpListener.bind("127.0.0.1:0")
    resolver = InMemoryResolver.from_mapping({"udp.test": ["127.0.0.1"]})
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, upper)
        client = await connect_udp(f"udp.test:{listener.local_addr.port}", resolver)
        async with client:
            await client.send(b"name")
            with anyio.fail_after(5):
                assert await client.receive() == b"NAME"
        listener.close()
    with pytest.raises(ResolveError):
        await connect_udp("missing.test:53", resolver)


async def test_shutdown_of_the_context_stops_the_listener() -> None:
    from rama_core import Shutdown

    listener = await UdpListener.bind("127.0.0.1:0")
    with anyio.fail_after(5):
        async with Shutdown(grace=1, signals=()) as shutdown:
            shutdown.spawn(listener.serve, upper)  # joins via Shutdown.current()
            await anyio.sleep(0.05)
            shutdown.trigger()
    assert shutdown.report is not None
    assert shutdown.report.clean


async def test_a_handler_timeout_is_logged_at_info_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    handled = anyio.Event()

    @service_fn
    async def times_out(ctx: Context, datagram: Datagram) -> bytes | None:
        try:
            with anyio.fail_after(0.01):
                await anyio.sleep(5)
        finally:
            handled.set()
        return None

    listener = await UdpListener.bind("127.0.0.1:0")
    with caplog.at_level(logging.DEBUG, logger="rama.net.udp"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, times_out)
            client = await connect_udp(str(listener.local_addr))
            async with client:
                await client.send(b"x")
                with anyio.fail_after(5):
                    await handled.wait()
                await anyio.sleep(0.05)
            listener.close()
    records = [r for r in caplog.records if r.name == "rama.net.udp"]
    assert [r.levelno for r in records] == [logging.INFO]
    assert records[0].exc_info is None
