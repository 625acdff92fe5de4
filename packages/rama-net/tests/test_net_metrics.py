"""Transport metrics recorded through opentelemetry's in-memory reader."""

from __future__ import annotations

import threading

import anyio
import pytest
from anyio.abc import ByteStream
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from rama_core import Context, service_fn
from rama_net import (
    Datagram,
    TcpConnector,
    TcpListener,
    TcpServerConfig,
    TransportMetrics,
    UdpListener,
    UdpServerConfig,
    connect_tcp,
    connect_udp,
)
from rama_net._address import Authority

pytestmark = pytest.mark.anyio


def _points(reader: InMemoryMetricReader) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(metric name, sorted attributes): value}`` (histograms: number of recordings)."""
    data = reader.get_metrics_data()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = point.count
                    attrs = tuple(sorted((k, str(v)) for k, v in point.attributes.items()))
                    out[(metric.name, attrs)] = value
    return out


TCP_IN = (("rama.direction", "inbound"), ("rama.transport", "tcp"))
TCP_OUT = (("rama.direction", "outbound"), ("rama.transport", "tcp"))
TCP = (("rama.transport", "tcp"),)
UDP = (("rama.transport", "udp"),)


@pytest.fixture
def metered() -> tuple[InMemoryMetricReader, TransportMetrics]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield reader, TransportMetrics(provider.get_meter("test"))  # type: ignore[misc]
    provider.shutdown()


async def test_connections_and_bytes_are_recorded(
    metered: tuple[InMemoryMetricReader, TransportMetrics],
) -> None:
    reader, metrics = metered

    @service_fn
    async def echo(ctx: Context, stream: ByteStream) -> None:
        async for chunk in stream:
            await stream.send(chunk + chunk)

    listener = TcpListener.bind("127.0.0.1:0")
    connector = TcpConnector(metrics=metrics)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo, TcpServerConfig(metrics=metrics))
        for _ in range(3):
            client = (
                await connector.serve(Context(), Authority.parse(str(listener.local_addr)))
            ).stream
            await client.send(b"12345")
            got = b""
            with anyio.fail_after(5):
                while len(got) < 10:
                    got += await client.receive()
            await client.aclose()
        with anyio.fail_after(5):
            while listener.open_connections:
                await anyio.sleep(0.01)
        await listener.aclose()
    points = _points(reader)
    assert points[("rama.net.connections.opened", TCP_IN)] == 3
    assert points[("rama.net.connections.opened", TCP_OUT)] == 3
    assert points[("rama.net.connections.active", TCP_IN)] == 0
    assert points[("rama.net.bytes.received", TCP)] == 15
    assert points[("rama.net.bytes.sent", TCP)] == 30
    assert points[("rama.net.connection.duration", TCP_IN)] == 3


async def test_bytes_of_an_open_connection_show_while_it_runs(
    metered: tuple[InMemoryMetricReader, TransportMetrics],
) -> None:
    reader, metrics = metered
    release = anyio.Event()

    @service_fn
    async def tunnel(ctx: Context, stream: ByteStream) -> None:
        await stream.send(b"x" * 100_000)
        assert await stream.receive() == b"ack"
        await release.wait()

    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, tunnel, TcpServerConfig(metrics=metrics))
        client = await connect_tcp(str(listener.local_addr))
        got = 0
        with anyio.fail_after(5):
            while got < 100_000:
                got += len(await client.receive())
        await client.send(b"ack")
        with anyio.fail_after(5):
            while _points(reader).get(("rama.net.bytes.received", TCP)) != 3:
                await anyio.sleep(0.01)
        during = _points(reader)  # the connection is still open
        assert during[("rama.net.connections.active", TCP_IN)] == 1
        assert during[("rama.net.bytes.sent", TCP)] == 100_000
        # collected from another thread, as a periodic exporter does
        seen: list[dict[tuple[str, tuple[tuple[str, str], ...]], float]] = []
        thread = threading.Thread(target=lambda: seen.append(_points(reader)))
        thread.start()
        thread.join()
        assert seen[0][("rama.net.bytes.sent", TCP)] == 100_000
        release.set()
        await client.aclose()
        with anyio.fail_after(5):
            while listener.open_connections:
                await anyio.sleep(0.01)
        await listener.aclose()
    after = _points(reader)  # moved to the totals once closed: same values, not doubled
    assert after[("rama.net.bytes.sent", TCP)] == 100_000
    assert after[("rama.net.bytes.received", TCP)] == 3
    assert after[("rama.net.connections.active", TCP_IN)] == 0


async def test_datagram_bytes_are_counted(
    metered: tuple[InMemoryMetricReader, TransportMetrics],
) -> None:
    reader, metrics = metered

    @service_fn
    async def shout(ctx: Context, dgram: Datagram) -> bytes:
        return dgram.payload.upper() * 2

    listener = await UdpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, shout, UdpServerConfig(metrics=metrics))
        async with await connect_udp(str(listener.local_addr)) as sock:
            for _ in range(2):
                await sock.send(b"hey")
                with anyio.fail_after(5):
                    assert await sock.receive() == b"HEYHEY"
        listener.close()
    points = _points(reader)
    assert points[("rama.net.bytes.received", UDP)] == 6
    assert points[("rama.net.bytes.sent", UDP)] == 12
