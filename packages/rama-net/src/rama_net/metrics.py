"""Transport metrics on opentelemetry-api (no-ops until an SDK is configured).

Instruments (all prefixed ``rama.net.``): ``connections.opened`` (counter),
``connections.active`` (up-down counter), ``bytes.received`` / ``bytes.sent``
(counters, bytes) and ``connection.duration`` (histogram, seconds). Every
point carries a ``rama.transport`` attribute (``tcp`` or ``udp``).
"""

from __future__ import annotations

from functools import cache

from opentelemetry.metrics import Counter, Histogram, Meter, UpDownCounter

from rama_core.telemetry import get_meter

__all__ = ["TransportMetrics", "transport_metrics"]


class TransportMetrics:
    """The transport instruments, created once per process."""

    def __init__(self, meter: Meter | None = None) -> None:
        meter = meter if meter is not None else get_meter("rama.net")
        self.opened: Counter = meter.create_counter(
            "rama.net.connections.opened", unit="{connection}", description="connections accepted"
        )
        self.active: UpDownCounter = meter.create_up_down_counter(
            "rama.net.connections.active", unit="{connection}", description="connections open now"
        )
        self.received: Counter = meter.create_counter(
            "rama.net.bytes.received", unit="By", description="bytes received from peers"
        )
        self.sent: Counter = meter.create_counter(
            "rama.net.bytes.sent", unit="By", description="bytes sent to peers"
        )
        self.duration: Histogram = meter.create_histogram(
            "rama.net.connection.duration", unit="s", description="connection lifetime"
        )

    def connection_opened(self, transport: str) -> None:
        """Count a new connection."""
        attrs = {"rama.transport": transport}
        self.opened.add(1, attrs)
        self.active.add(1, attrs)

    def connection_closed(self, transport: str, duration: float, received: int, sent: int) -> None:
        """Record the end of a connection and what it moved."""
        attrs = {"rama.transport": transport}
        self.active.add(-1, attrs)
        self.duration.record(duration, attrs)
        if received:
            self.received.add(received, attrs)
        if sent:
            self.sent.add(sent, attrs)


@cache
def transport_metrics() -> TransportMetrics:
    """The process-wide :class:`TransportMetrics` (instruments are proxies until an SDK is set)."""
    return TransportMetrics()
