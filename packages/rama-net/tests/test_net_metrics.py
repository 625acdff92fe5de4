"""Transport metrics recorded through opentelemetry's in-memory reader."""

from __future__ import annotations

import anyio
import pytest
from anyio.abc import ByteStream
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from rama_core import Context, service_fn
from rama_net import TcpListener, TcpServerConfig, TransportMetrics, connect_tcp

pytestmark = pytest.mark.anyio


def _points(reader: InMemoryMetricReader) -> dict[str, float]:
    data = reader.get_metrics_data()
    out: dict[str, float] = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = point.count  # histogram: number of recordings
                    out[metric.name] = value
    return out


async def test_connections_and_bytes_are_recorded() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = TransportMetrics(provider.get_meter("test"))

    @service_fn
    async def echo(ctx: Context, stream: ByteStream) -> None:
        async for chunk in stream:
            await stream.send(chunk + chunk)

    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo, None, TcpServerConfig(metrics=metrics))
        for _ in range(3):
            client = await connect_tcp(str(listener.local_addr))
            await client.send(b"12345")
            got = b""
            with anyio.fail_after(5):
                while len(got) < 10:
                    got += await client.receive()
            await client.aclose()
        with anyio.fail_after(5):
            while listener.open_connections:
                await anyio.sleep(0.01)
        during = _points(reader)
        await listener.aclose()
    points = _points(reader)
    assert during["rama.net.connections.opened"] == 3
    assert points["rama.net.connections.active"] == 0
    assert points["rama.net.bytes.received"] == 15
    assert points["rama.net.bytes.sent"] == 30
    assert points["rama.net.connection.duration"] == 3
    provider.shutdown()
