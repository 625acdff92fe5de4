"""OpenTelemetry hooks (API only; bring your own SDK).

:class:`TracingLayer` opens a span per ``serve`` call and :class:`MetricsLayer`
counts calls, errors and durations. Without a configured SDK both take a
fast path that skips span and attribute construction entirely.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from opentelemetry import metrics, trace
from opentelemetry.util.types import AttributeValue

from ._context import Context
from ._service import Service

__all__ = [
    "MetricsLayer",
    "MetricsService",
    "TracingLayer",
    "TracingService",
    "get_meter",
    "get_tracer",
    "tracing_enabled",
]

In = TypeVar("In")
Out = TypeVar("Out")

INSTRUMENTATION_NAME = "rama"

Attributes = Mapping[str, AttributeValue]
AttributesFn = Callable[[Context, In], Attributes]


def tracing_enabled() -> bool:
    """Whether a real tracer provider has been installed."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def get_tracer(name: str = INSTRUMENTATION_NAME) -> trace.Tracer:
    """The tracer rama instrumentation uses."""
    return trace.get_tracer(name)


def get_meter(name: str = INSTRUMENTATION_NAME) -> metrics.Meter:
    """The meter rama instrumentation uses; instruments are no-ops without an SDK."""
    return metrics.get_meter(name)


class TracingService(Generic[In, Out]):
    """Runs the inner service inside a span named ``name``."""

    __slots__ = ("attributes", "inner", "kind", "name")

    def __init__(
        self,
        inner: Service[In, Out],
        name: str,
        attributes: AttributesFn[In] | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    ) -> None:
        self.inner = inner
        self.name = name
        self.attributes = attributes
        self.kind = kind

    async def serve(self, ctx: Context, req: In) -> Out:
        """Serve inside a span; errors are recorded on it."""
        if not tracing_enabled():
            return await self.inner.serve(ctx, req)
        attrs = self.attributes(ctx, req) if self.attributes is not None else None
        with get_tracer().start_as_current_span(self.name, kind=self.kind, attributes=attrs):
            return await self.inner.serve(ctx, req)


class TracingLayer:
    """Layer producing :class:`TracingService`; keeps the wrapped service's types.

    ``attributes`` is not checked against the services this layer wraps;
    build ``TracingService(inner, name, attributes)`` directly to have mypy
    check it.
    """

    __slots__ = ("attributes", "kind", "name")

    def __init__(
        self,
        name: str,
        attributes: AttributesFn[Any] | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    ) -> None:
        self.name = name
        self.attributes = attributes
        self.kind = kind

    def layer(self, inner: Service[In, Out]) -> TracingService[In, Out]:
        """Wrap ``inner``."""
        return TracingService(inner, self.name, self.attributes, self.kind)


class MetricsService(Generic[In, Out]):
    """Counts calls and errors and records call duration (seconds)."""

    __slots__ = ("_calls", "_duration", "_errors", "inner", "name")

    def __init__(self, inner: Service[In, Out], name: str) -> None:
        self.inner = inner
        self.name = name
        meter = get_meter()
        self._calls = meter.create_counter(f"{name}.calls", description="service calls")
        self._errors = meter.create_counter(f"{name}.errors", description="failed calls")
        self._duration = meter.create_histogram(
            f"{name}.duration", unit="s", description="call duration"
        )

    async def serve(self, ctx: Context, req: In) -> Out:
        """Serve and record."""
        started = time.perf_counter()
        self._calls.add(1)
        try:
            return await self.inner.serve(ctx, req)
        except Exception:
            self._errors.add(1)
            raise
        finally:
            self._duration.record(time.perf_counter() - started)


class MetricsLayer:
    """Layer producing :class:`MetricsService`."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def layer(self, inner: Service[In, Out]) -> MetricsService[In, Out]:
        """Wrap ``inner``."""
        return MetricsService(inner, self.name)
