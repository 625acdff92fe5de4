"""Proxy metrics on opentelemetry-api (no-ops until an SDK is configured).

Instruments (all prefixed ``rama.proxy.``); ``rama.proxy.protocol`` is the
record's protocol (``http``, ``connect``, ``socks5``, ``socks4``) or, for
connections, the protocol the one-port detector found (``http/1.1``,
``h2``, ``tls``, ``socks5``, ``socks4``):

- ``connections.active`` (up-down counter): client connections being served,
  by detected protocol (counted by :class:`~rama_proxy.ProxyDetector`);
- ``tunnels.active`` (up-down counter): CONNECT and SOCKS tunnels open now;
- ``requests`` (counter): finished requests and tunnels, with
  ``rama.proxy.status`` (HTTP status or SOCKS reply code, ``0`` if none)
  and ``rama.proxy.upstream`` (the upstream proxy URL without credentials,
  or ``direct``);
- ``bytes.in`` / ``bytes.out`` (counters, bytes): payload from clients
  towards targets, and back; added when a request or tunnel ends;
- ``request.duration`` (histogram, seconds);
- ``upstream.connect_time`` (histogram, seconds): how long the egress took
  to reach the target or the upstream proxy, with ``rama.proxy.upstream``;
- ``auth.failures`` (counter): refused proxy credentials, with
  ``rama.proxy.reason`` (``wrong_credentials``, ``bad_username``,
  ``throttled``); wire it with
  ``ProxyAuthenticator(..., on_failure=metrics.auth_failed)``.

:class:`ProxyMetrics` is the :class:`~rama_proxy.ProxyObserver` for the
record-based instruments; :func:`proxy_metrics` is the process-wide one.
"""

from __future__ import annotations

from functools import cache

from opentelemetry.metrics import Counter, Histogram, Meter, UpDownCounter

from rama_core.telemetry import get_meter

from ._record import ProxyRecord

__all__ = ["ProxyMetrics", "proxy_metrics"]

_TUNNELS = frozenset({"connect", "socks5", "socks4"})


class ProxyMetrics:
    """The proxy instruments, created once per process (or per meter, in tests)."""

    def __init__(self, meter: Meter | None = None) -> None:
        meter = meter if meter is not None else get_meter("rama.proxy")
        self.connections: UpDownCounter = meter.create_up_down_counter(
            "rama.proxy.connections.active",
            unit="{connection}",
            description="client connections being served, by detected protocol",
        )
        self.tunnels: UpDownCounter = meter.create_up_down_counter(
            "rama.proxy.tunnels.active", unit="{tunnel}", description="tunnels open now"
        )
        self.requests: Counter = meter.create_counter(
            "rama.proxy.requests",
            unit="{request}",
            description="finished requests and tunnels, by status and upstream",
        )
        self.bytes_in: Counter = meter.create_counter(
            "rama.proxy.bytes.in", unit="By", description="bytes from clients towards targets"
        )
        self.bytes_out: Counter = meter.create_counter(
            "rama.proxy.bytes.out", unit="By", description="bytes from targets towards clients"
        )
        self.duration: Histogram = meter.create_histogram(
            "rama.proxy.request.duration", unit="s", description="request or tunnel lifetime"
        )
        self.connect_time: Histogram = meter.create_histogram(
            "rama.proxy.upstream.connect_time",
            unit="s",
            description="time to reach the target or the upstream proxy",
        )
        self.auth_failures: Counter = meter.create_counter(
            "rama.proxy.auth.failures",
            unit="{attempt}",
            description="refused proxy credentials, by reason",
        )

    # -- connections (the detector) ----------------------------------------------------------
    def connection_opened(self, protocol: str) -> None:
        """A client connection speaking ``protocol`` is being served."""
        self.connections.add(1, {"rama.proxy.protocol": protocol})

    def connection_closed(self, protocol: str) -> None:
        """That connection ended."""
        self.connections.add(-1, {"rama.proxy.protocol": protocol})

    # -- ProxyObserver -----------------------------------------------------------------------
    def started(self, record: ProxyRecord) -> None:
        """Count an opening tunnel."""
        if record.protocol in _TUNNELS:
            self.tunnels.add(1, {"rama.proxy.protocol": record.protocol})

    def finished(self, record: ProxyRecord) -> None:
        """Record what a finished request or tunnel did."""
        protocol = {"rama.proxy.protocol": record.protocol}
        if record.protocol in _TUNNELS:
            self.tunnels.add(-1, protocol)
        upstream = record.upstream or "direct"
        self.requests.add(
            1,
            {
                "rama.proxy.protocol": record.protocol,
                "rama.proxy.status": record.status if record.status is not None else 0,
                "rama.proxy.upstream": upstream,
            },
        )
        if record.bytes_in:
            self.bytes_in.add(record.bytes_in, protocol)
        if record.bytes_out:
            self.bytes_out.add(record.bytes_out, protocol)
        if record.duration is not None:
            self.duration.record(record.duration, protocol)
        if record.connect_time is not None:
            self.connect_time.record(
                record.connect_time,
                {"rama.proxy.protocol": record.protocol, "rama.proxy.upstream": upstream},
            )

    # -- authentication ----------------------------------------------------------------------
    def auth_failed(self, reason: str) -> None:
        """Count one refused authentication (``ProxyAuthenticator(on_failure=...)``)."""
        self.auth_failures.add(1, {"rama.proxy.reason": reason})


@cache
def proxy_metrics() -> ProxyMetrics:
    """The process-wide :class:`ProxyMetrics` (on the global meter provider)."""
    return ProxyMetrics()
