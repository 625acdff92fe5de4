"""The access log and the proxy metrics, fed with records and with real connections."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteStream
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from rama_core import Context, service_fn
from rama_net import SocketAddress, TcpListener
from rama_proxy import (
    AccessLog,
    ProxyAuthenticator,
    ProxyDetector,
    ProxyMetrics,
    ProxyObservers,
    StaticCredentials,
    begin_record,
    end_record,
)

Points = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _points(reader: InMemoryMetricReader) -> Points:
    """``{(metric name, sorted attributes): value}`` (histograms: number of recordings)."""
    data = reader.get_metrics_data()
    out: Points = {}
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


@pytest.fixture
def metered() -> Iterator[tuple[InMemoryMetricReader, ProxyMetrics]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield reader, ProxyMetrics(provider.get_meter("test"))
    provider.shutdown()


def _finish(ctx: Context, protocol: str, **fields: object) -> None:
    record = begin_record(ctx, protocol, client=SocketAddress.parse("127.0.0.1:4000"))
    for name, value in fields.items():
        setattr(record, name, value)
    end_record(ctx, record)


# -- access log ------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_access_log_writes_one_json_line_per_record(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(path)
    ctx = Context()
    ctx.insert(ProxyObservers(log))
    _finish(
        ctx,
        "connect",
        user="john",
        method="CONNECT",
        target="example.com:443",
        status=200,
        bytes_in=10,
        bytes_out=20,
        connect_time=0.01,
    )
    # a record is on disk as soon as it ends (flushed), before close
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    _finish(ctx, "http", method="GET", target='http://x.test/"\n{"forged":1}', status=502)
    log.close()
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["client"] == "127.0.0.1:4000"
    assert first["user"] == "john"
    assert first["method"] == "CONNECT"
    assert first["target"] == "example.com:443"
    assert first["status"] == 200
    assert (first["bytes_in"], first["bytes_out"]) == (10, 20)
    assert first["upstream"] is None
    assert first["duration"] >= 0
    assert first["connect_time"] == 0.01
    assert second["target"] == 'http://x.test/"\n{"forged":1}'  # escaped, one line
    assert second["status"] == 502


@pytest.mark.anyio
async def test_access_log_to_a_stream() -> None:
    buf = io.StringIO()
    log = AccessLog(buf)
    ctx = Context()
    ctx.insert(ProxyObservers(log))
    _finish(ctx, "socks5", method="CONNECT", target="a.test:80", status=0)
    log.close()  # a stream passed in stays open
    assert json.loads(buf.getvalue())["protocol"] == "socks5"


def test_access_log_to_stdout() -> None:
    code = (
        "import anyio\n"
        "from rama_core import Context\n"
        "from rama_proxy import AccessLog, ProxyObservers, begin_record, end_record\n"
        "async def main():\n"
        "    ctx = Context(); ctx.insert(ProxyObservers(AccessLog('-')))\n"
        "    end_record(ctx, begin_record(ctx, 'http', status=204))\n"
        "anyio.run(main)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=True)
    assert json.loads(out.stdout)["status"] == 204


def test_access_log_lines_from_several_processes_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "shared.log"
    code = (
        "import sys, anyio\n"
        "from rama_core import Context\n"
        "from rama_proxy import AccessLog, ProxyObservers, begin_record, end_record\n"
        "async def main():\n"
        "    ctx = Context(); ctx.insert(ProxyObservers(AccessLog(sys.argv[1])))\n"
        "    for i in range(300):\n"
        "        end_record(ctx, begin_record(ctx, 'http', target='x' * 2000 + str(i)))\n"
        "anyio.run(main)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)]) for _ in range(3)]
    for p in procs:
        assert p.wait(timeout=60) == 0
    lines = path.read_text().splitlines()
    assert len(lines) == 900
    for line in lines:
        json.loads(line)


def test_a_failing_access_log_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    r, w = os.pipe()
    os.close(r)
    stream = os.fdopen(w, "w")
    log = AccessLog(stream)
    ctx = Context()
    ctx.insert(ProxyObservers(log))

    async def run() -> None:
        _finish(ctx, "http", status=200)
        _finish(ctx, "http", status=200)

    anyio.run(run)
    warnings = [r for r in caplog.records if r.name == "rama.proxy.access_log"]
    assert len(warnings) == 1
    assert "write failed" in warnings[0].getMessage()
    stream.close = lambda: None  # type: ignore[method-assign]


# -- metrics ---------------------------------------------------------------------------------
PROTO = "rama.proxy.protocol"


@pytest.mark.anyio
async def test_metrics_from_records(metered: tuple[InMemoryMetricReader, ProxyMetrics]) -> None:
    reader, metrics = metered
    ctx = Context()
    ctx.insert(ProxyObservers(metrics))
    tunnel = begin_record(ctx, "connect", target="a.test:443")
    assert _points(reader)[("rama.proxy.tunnels.active", ((PROTO, "connect"),))] == 1
    tunnel.status = 200
    tunnel.bytes_in, tunnel.bytes_out = 100, 2000
    tunnel.connect_time = 0.002
    end_record(ctx, tunnel)
    _finish(ctx, "http", status=502, upstream="http://up.test:3128", connect_time=0.5)
    _finish(ctx, "http", status=502, upstream="http://up.test:3128")
    points = _points(reader)
    assert points[("rama.proxy.tunnels.active", ((PROTO, "connect"),))] == 0
    assert points[("rama.proxy.bytes.in", ((PROTO, "connect"),))] == 100
    assert points[("rama.proxy.bytes.out", ((PROTO, "connect"),))] == 2000
    direct_ok = (
        (PROTO, "connect"),
        ("rama.proxy.status", "200"),
        ("rama.proxy.upstream", "direct"),
    )
    assert points[("rama.proxy.requests", direct_ok)] == 1
    via_up = (
        (PROTO, "http"),
        ("rama.proxy.status", "502"),
        ("rama.proxy.upstream", "http://up.test:3128"),
    )
    assert points[("rama.proxy.requests", via_up)] == 2
    up = ((PROTO, "http"), ("rama.proxy.upstream", "http://up.test:3128"))
    assert points[("rama.proxy.upstream.connect_time", up)] == 1  # one recording
    assert points[("rama.proxy.request.duration", ((PROTO, "http"),))] == 2


@pytest.mark.anyio
async def test_auth_failures_are_counted(
    metered: tuple[InMemoryMetricReader, ProxyMetrics],
) -> None:
    reader, metrics = metered
    auth = ProxyAuthenticator(StaticCredentials({"u": "p"}), on_failure=metrics.auth_failed)
    assert await auth.authenticate("u", "bad") is None
    assert await auth.authenticate("u", "bad") is None
    assert await auth.authenticate("u", "p") is not None
    points = _points(reader)
    assert points[("rama.proxy.auth.failures", (("rama.proxy.reason", "wrong_credentials"),))] == 2


@pytest.mark.anyio
async def test_detector_counts_active_connections_by_protocol(
    metered: tuple[InMemoryMetricReader, ProxyMetrics],
) -> None:
    reader, metrics = metered
    inside = anyio.Event()
    release = anyio.Event()

    @service_fn
    async def socks(ctx: Context, stream: ByteStream) -> None:
        await stream.receive()
        inside.set()
        await release.wait()

    async with TcpListener.bind("127.0.0.1:0") as listener:
        detector = ProxyDetector(socks=socks, metrics=metrics, peek_timeout=1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, detector)
            async with await anyio.connect_tcp("127.0.0.1", listener.local_addr.port) as s:
                await s.send(b"\x05\x01\x00")
                with anyio.fail_after(3):
                    await inside.wait()
                key = ("rama.proxy.connections.active", ((PROTO, "socks5"),))
                assert _points(reader)[key] == 1
                release.set()
                with anyio.fail_after(3):
                    while _points(reader)[key] != 0:
                        await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
