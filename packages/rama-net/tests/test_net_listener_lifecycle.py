"""TcpListener lifecycle: sockets closed on exit, bind errors, joining a Shutdown, drain bounds."""

from __future__ import annotations

import errno
import socket

import anyio
import pytest
import trio.testing
from anyio.abc import ByteStream

from rama_core import Context, RamaError, Shutdown, service_fn
from rama_net import BindError, SocketInfo, TcpListener, TcpServerConfig, connect_tcp

pytestmark = pytest.mark.anyio


def _refused(port: int) -> bool:
    """Whether a plain connect to 127.0.0.1:port is refused (nothing listens)."""
    with socket.socket() as s:
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        return False


@service_fn
async def echo(ctx: Context, stream: ByteStream) -> None:
    async for chunk in stream:
        await stream.send(chunk)


def stuck_service(started: anyio.Event, cancelled: anyio.Event) -> object:
    @service_fn
    async def stuck(ctx: Context, stream: ByteStream) -> None:
        await stream.send(b"in")
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    return stuck


async def test_async_with_closes_sockets_without_serve() -> None:
    async with TcpListener.bind("127.0.0.1:0") as listener:
        port = listener.local_addr.port
        assert not _refused(port)
    assert _refused(port)


async def test_async_with_closes_sockets_after_a_cancelled_serve() -> None:
    async with TcpListener.bind("127.0.0.1:0") as listener:
        port = listener.local_addr.port
        with anyio.move_on_after(0.1):
            await listener.serve(echo)
        # serve() was cancelled, not closed: today's bug left the sockets listening
    assert _refused(port)


async def test_cancelled_serve_closes_its_sockets_also_outside_async_with() -> None:
    listener = TcpListener.bind("127.0.0.1:0")
    port = listener.local_addr.port
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)
        client = await connect_tcp(str(listener.local_addr))
        await client.send(b"x")
        assert await client.receive() == b"x"
        tg.cancel_scope.cancel()
    await client.aclose()
    assert _refused(port)


async def test_async_with_around_a_running_serve_closes_the_sockets() -> None:
    async with anyio.create_task_group() as tg:
        async with TcpListener.bind("127.0.0.1:0") as listener:
            port = listener.local_addr.port
            tg.start_soon(listener.serve, echo)
            await anyio.sleep(0.05)
        # leaving the block stopped serve() and closed the sockets
        assert _refused(port)


async def test_bind_error_names_the_address_and_is_an_oserror() -> None:
    async with TcpListener.bind("127.0.0.1:0") as taken:
        port = taken.local_addr.port
        with pytest.raises(BindError) as info:
            TcpListener.bind(("127.0.0.1", port))
    err = info.value
    assert isinstance(err, OSError)
    assert isinstance(err, RamaError)
    assert err.errno == errno.EADDRINUSE
    assert err.address == f"127.0.0.1:{port}"
    assert str(err).startswith(f"cannot bind 127.0.0.1:{port}: [Errno {errno.EADDRINUSE}]")


async def test_bind_error_for_an_unknown_name() -> None:
    with pytest.raises(BindError, match=r"cannot bind no-such-host\.invalid:80"):
        TcpListener.bind("no-such-host.invalid:80")


async def test_serve_joins_the_enclosing_shutdown_without_ctx() -> None:
    seen: list[Context] = []

    @service_fn
    async def record(ctx: Context, stream: ByteStream) -> None:
        seen.append(ctx)
        await stream.send(b"hi")
        await stream.receive()

    with anyio.fail_after(10):
        async with Shutdown(grace=5, signals=()) as shutdown:
            assert Shutdown.current() is shutdown
            listener = TcpListener.bind("127.0.0.1:0")
            async with anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, record)  # no ctx: joins the shutdown
                client = await connect_tcp(str(listener.local_addr))
                assert await client.receive() == b"hi"
                assert "tcp-connection" in shutdown.in_flight  # connections are guarded
                shutdown.trigger()
                await anyio.sleep(0.05)
                assert _refused(listener.local_addr.port)  # stopped accepting on the trigger
                await client.send(b"bye")  # the connection finishes: serve() returns
            await client.aclose()
    assert Shutdown.current() is None
    assert seen[0].executor.shutdown is shutdown
    assert seen[0].require(SocketInfo).local_addr == listener.local_addr
    assert shutdown.report is not None
    assert shutdown.report.clean


async def test_no_shutdown_outside_the_block() -> None:
    assert Shutdown.current() is None
    async with Shutdown(signals=()) as outer:
        async with Shutdown(signals=()) as inner:
            assert Shutdown.current() is inner
        assert Shutdown.current() is outer
    assert Shutdown.current() is None


async def test_explicit_ctx_wins_over_the_enclosing_shutdown() -> None:
    seen: list[Context] = []

    @service_fn
    async def record(ctx: Context, stream: ByteStream) -> None:
        seen.append(ctx)
        await stream.send(b"hi")

    async with Shutdown(signals=()):
        listener = TcpListener.bind("127.0.0.1:0")
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: listener.serve(record, ctx=Context()))
            client = await connect_tcp(str(listener.local_addr))
            assert await client.receive() == b"hi"
            await client.aclose()
            listener.close()
    assert seen[0].executor.shutdown is None


# -- one precedence for shutdown timers: grace caps, drain_timeout bounds, smallest wins --


async def _drain_time(grace: float | None, drain_timeout: float | None) -> float:
    """Serve a stuck connection in the Shutdown's body; seconds from trigger to serve's return."""
    started, cancelled = anyio.Event(), anyio.Event()
    listener = TcpListener.bind("127.0.0.1:0")
    triggered_at = 0.0
    async with Shutdown(grace=grace, signals=()) as shutdown:
        async with anyio.create_task_group() as tg:

            async def stop_when_in() -> None:
                nonlocal triggered_at
                await started.wait()
                triggered_at = anyio.current_time()
                shutdown.trigger()

            tg.start_soon(stop_when_in)
            client = None

            async def dial() -> None:
                nonlocal client
                client = await connect_tcp(str(listener.local_addr))

            tg.start_soon(dial)
            # awaited in the body itself, as `await serve(...)` is documented
            await listener.serve(
                stuck_service(started, cancelled), TcpServerConfig(drain_timeout=drain_timeout)
            )
            took = anyio.current_time() - triggered_at
        assert client is not None
        await client.aclose()
    assert cancelled.is_set()
    return took


async def test_grace_caps_the_drain_of_a_server_awaited_in_the_block() -> None:
    # Before: drain_timeout=None waited forever and the grace timer only began
    # after the body, so this hung.
    with anyio.fail_after(5):
        took = await _drain_time(grace=0.3, drain_timeout=None)
    assert 0.25 <= took < 2


async def test_drain_timeout_below_grace_wins() -> None:
    with anyio.fail_after(5):
        took = await _drain_time(grace=30, drain_timeout=0.2)
    assert 0.15 <= took < 2


async def test_grace_below_drain_timeout_wins() -> None:
    with anyio.fail_after(5):
        took = await _drain_time(grace=0.2, drain_timeout=30)
    assert 0.15 <= took < 2


@pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param(
            ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}), id="autojump"
        )
    ],
)
async def test_grace_counts_from_the_trigger() -> None:
    # The body spends 0.3 s after the trigger; grace=0.5 leaves 0.2 s for the drain.
    cancelled = anyio.Event()

    async def straggler() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    with anyio.fail_after(5):
        async with Shutdown(grace=0.5, signals=()) as shutdown:
            shutdown.spawn(straggler)
            shutdown.trigger()
            t0 = anyio.current_time()
            await anyio.sleep(0.3)
    took = anyio.current_time() - t0
    assert cancelled.is_set()
    assert 0.45 <= took < 1.5
