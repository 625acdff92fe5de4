from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from rama_core import Context, service_fn
from rama_core.telemetry import (
    MetricsLayer,
    TracingLayer,
    get_meter,
    get_tracer,
    tracing_enabled,
)


@service_fn
async def handler(ctx: Context, req: str) -> str:
    if req == "fail":
        raise ValueError("failed")
    return req


@pytest.mark.anyio
async def test_tracing_layer_without_sdk_is_a_passthrough() -> None:
    # The global provider is never set in this process (tests use private providers),
    # so the layer must take its fast path and call nothing but the inner service.
    assert not tracing_enabled()
    calls: list[str] = []

    def attributes(ctx: Context, req: str) -> dict[str, str]:
        calls.append(req)
        return {"req": req}

    svc = TracingLayer("op", attributes).layer(handler)
    assert await svc.serve(Context(), "x") == "x"
    assert calls == []
    assert get_tracer() is not None
    assert get_meter() is not None


@pytest.fixture
def sdk_tracer(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # opentelemetry allows setting the global provider once per process; patch the
    # lookup instead so tests stay independent.
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    monkeypatch.setattr(trace, "get_tracer", lambda name, *a, **k: provider.get_tracer(name))
    yield exporter
    provider.shutdown()


@pytest.mark.anyio
async def test_tracing_layer_records_spans_and_errors(sdk_tracer: InMemorySpanExporter) -> None:
    assert tracing_enabled()
    svc = TracingLayer("handle", lambda ctx, req: {"req": req}).layer(handler)
    assert await svc.serve(Context(), "ok") == "ok"
    with pytest.raises(ValueError, match="failed"):
        await svc.serve(Context(), "fail")
    spans = sdk_tracer.get_finished_spans()
    assert [s.name for s in spans] == ["handle", "handle"]
    assert spans[0].attributes == {"req": "ok"}
    assert spans[0].status.status_code is StatusCode.UNSET
    assert spans[1].status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in spans[1].events)


@pytest.mark.anyio
async def test_metrics_layer_counts_calls_errors_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(metrics, "get_meter", lambda name, *a, **k: provider.get_meter(name))
    svc = MetricsLayer("svc").layer(handler)
    for req in ("a", "b", "fail"):
        try:
            await svc.serve(Context(), req)
        except ValueError:
            pass
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        m.name: m.data.data_points[0]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert points["svc.calls"].value == 3  # type: ignore[union-attr]
    assert points["svc.errors"].value == 1  # type: ignore[union-attr]
    assert points["svc.duration"].count == 3  # type: ignore[union-attr]
    provider.shutdown()
