"""HTTP server spans and metrics on the OpenTelemetry API, with semantic-convention names.

Per request: a SERVER span ``{method} {route}`` (the router's pattern when one
matched) with ``http.request.method``, ``url.path``, ``url.scheme``,
``http.route``, ``http.response.status_code``, ``network.protocol.version``,
``client.address``, ``server.address``; and the metrics
``http.server.request.duration`` (s), ``http.server.active_requests``,
``http.server.request.body.size`` and ``http.server.response.body.size`` (By).
Without an SDK the API's no-op instruments make this nearly free.
"""

from __future__ import annotations

from typing import Any

import anyio
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from rama_core import Context, Service
from rama_core.telemetry import get_meter, get_tracer, tracing_enabled
from rama_net import SocketInfo

from .._message import Request, Response
from ._counting import counted_body

__all__ = ["HttpTelemetry", "HttpTelemetryLayer"]

HttpService = Service[Request, Response]

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


class HttpTelemetryLayer:
    """Layer producing :class:`HttpTelemetry` (instruments are created once, here)."""

    __slots__ = ("active", "duration", "request_size", "response_size", "scheme", "tracer")

    def __init__(
        self,
        *,
        scheme: str = "http",
        meter: metrics.Meter | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        meter = meter or get_meter("rama.http.server")
        self.scheme = scheme
        self.tracer = tracer
        """Spans go here; default: the global tracer, when an SDK is installed."""
        self.duration = meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        )
        self.active = meter.create_up_down_counter(
            "http.server.active_requests", unit="{request}", description="Active HTTP requests."
        )
        self.request_size = meter.create_histogram(
            "http.server.request.body.size", unit="By", description="Size of request bodies."
        )
        self.response_size = meter.create_histogram(
            "http.server.response.body.size", unit="By", description="Size of response bodies."
        )

    def layer(self, inner: HttpService) -> HttpTelemetry:
        """Wrap ``inner``."""
        return HttpTelemetry(inner, self)


def _route_of(ctx: Context) -> str | None:
    from ..web._router import MatchedRoute

    matched = ctx.get(MatchedRoute)
    return matched.pattern if matched is not None else None


class HttpTelemetry:
    """``inner`` with a span and the server metrics per request."""

    __slots__ = ("inner", "instruments")

    def __init__(self, inner: HttpService, instruments: HttpTelemetryLayer) -> None:
        self.inner = inner
        self.instruments = instruments

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Measure one request."""
        ins = self.instruments
        base: dict[str, Any] = {"http.request.method": req.method, "url.scheme": ins.scheme}
        ins.active.add(1, base)
        started = anyio.current_time()
        span = None
        tracer = ins.tracer
        if tracer is None and tracing_enabled():
            tracer = get_tracer("rama.http.server")
        if tracer is not None:
            info = ctx.get(SocketInfo)
            attrs: dict[str, Any] = {
                **base,
                "url.path": req.path,
                "network.protocol.version": str(req.version).removeprefix("HTTP/"),
            }
            if info is not None:
                attrs["client.address"] = str(info.peer_addr.ip)
            if req.host:
                attrs["server.address"] = req.host
            span = tracer.start_span(req.method, kind=SpanKind.SERVER, attributes=attrs)
        try:
            if span is not None:
                with trace.use_span(span, end_on_exit=False):
                    resp = await self.inner.serve(ctx, req)
            else:
                resp = await self.inner.serve(ctx, req)
        except BaseException as exc:
            attrs_err = {
                **base,
                "error.type": type(exc).__qualname__,
                "http.response.status_code": 500,
            }
            route = _route_of(ctx)
            if route:
                attrs_err["http.route"] = route
            ins.duration.record(anyio.current_time() - started, attrs_err)
            ins.active.add(-1, base)
            if span is not None:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
                span.end()
            raise
        route = _route_of(ctx)
        final: dict[str, Any] = {**base, "http.response.status_code": resp.status}
        if route:
            final["http.route"] = route
        if resp.status >= 500:
            final["error.type"] = str(resp.status)
        if span is not None:
            span.set_attribute("http.response.status_code", resp.status)
            if route:
                span.set_attribute("http.route", route)
                span.update_name(f"{req.method} {route}")
            if resp.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
        if req.body.length is not None:
            ins.request_size.record(req.body.length, final)

        def done(sent: int, error: BaseException | None) -> None:
            ins.duration.record(anyio.current_time() - started, final)
            ins.response_size.record(sent, final)
            ins.active.add(-1, base)
            if span is not None:
                span.end()

        resp.body = counted_body(resp.body, done)
        return resp
