"""TLS metrics on opentelemetry-api (no-ops until an SDK is configured).

Instruments:

- ``rama.tls.handshake_failures`` (counter): server-side handshakes that did
  not complete, with a ``reason`` attribute: ``not_tls`` (the first bytes
  are another protocol), ``malformed_client_hello``, ``client_hello_too_large``,
  ``timeout`` (ClientHello plus handshake over ``handshake_timeout``),
  ``peer_closed`` (gone before the handshake finished), ``certificate``
  (a client certificate rejected under mTLS), ``no_certificate`` (the
  resolver had none for the name) and ``handshake`` (any other failure:
  protocol mismatch, an alert from the peer).
"""

from __future__ import annotations

from functools import cache

from opentelemetry.metrics import Counter, Meter

from rama_core.telemetry import get_meter

__all__ = ["TlsMetrics", "tls_metrics"]


class TlsMetrics:
    """The TLS instruments, created once per process (or per meter, in tests)."""

    def __init__(self, meter: Meter | None = None) -> None:
        meter = meter if meter is not None else get_meter("rama.tls")
        self.handshake_failures: Counter = meter.create_counter(
            "rama.tls.handshake_failures",
            unit="{handshake}",
            description="server handshakes that failed, by reason",
        )

    def handshake_failed(self, reason: str) -> None:
        """Count one failed server handshake."""
        self.handshake_failures.add(1, {"reason": reason})


@cache
def tls_metrics() -> TlsMetrics:
    """The process-wide :class:`TlsMetrics` (on the global meter provider)."""
    return TlsMetrics()
