"""Transport metrics on opentelemetry-api (no-ops until an SDK is configured).

Instruments (all prefixed ``rama.net.``):

- ``connections.opened`` (counter) and ``connections.active`` (up-down
  counter), with ``rama.direction`` ``inbound`` (accepted) or ``outbound``
  (dialled by a connector; these are counted when opened only, since the
  caller owns their lifetime);
- ``bytes.received`` / ``bytes.sent`` (observable counters, bytes): what
  finished connections and datagrams moved plus what open connections have
  moved so far, read from the streams' own counters when the SDK collects.
  A tunnel that runs for hours shows its traffic while it runs, and moving
  bytes costs nothing extra;
- ``connection.duration`` (histogram, seconds).

Every point carries a ``rama.transport`` attribute (``tcp`` or ``udp``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import cache
from typing import Protocol

from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    Histogram,
    Meter,
    Observation,
    UpDownCounter,
)

from rama_core.telemetry import get_meter

__all__ = ["CountedStream", "TransportMetrics", "transport_metrics"]


class CountedStream(Protocol):
    """A stream that counts what it moves (rama_net's ProtocolStream and TrackedStream)."""

    @property
    def bytes_received(self) -> int:
        """Bytes received from the peer so far."""
        ...

    @property
    def bytes_sent(self) -> int:
        """Bytes sent to the peer so far."""
        ...


class TransportMetrics:
    """The transport instruments, created once per process (or per meter, in tests)."""

    def __init__(self, meter: Meter | None = None) -> None:
        meter = meter if meter is not None else get_meter("rama.net")
        # bytes of finished connections and of datagrams, per transport: [received, sent]
        self._done: dict[str, list[int]] = {}
        # open connections whose counters the byte instruments read at collection
        self._live: dict[int, tuple[str, CountedStream]] = {}
        # collection may run on an exporter thread: a closing connection must move
        # from live to done in one step as it sees it (else totals dip or spike)
        self._lock = threading.Lock()
        self.opened: Counter = meter.create_counter(
            "rama.net.connections.opened", unit="{connection}", description="connections opened"
        )
        self.active: UpDownCounter = meter.create_up_down_counter(
            "rama.net.connections.active", unit="{connection}", description="connections open now"
        )
        self.received = meter.create_observable_counter(
            "rama.net.bytes.received",
            callbacks=[self._observe_received],
            unit="By",
            description="bytes received from peers",
        )
        self.sent = meter.create_observable_counter(
            "rama.net.bytes.sent",
            callbacks=[self._observe_sent],
            unit="By",
            description="bytes sent to peers",
        )
        self.duration: Histogram = meter.create_histogram(
            "rama.net.connection.duration", unit="s", description="connection lifetime"
        )

    # -- recording ------------------------------------------------------------------------
    def connection_opened(self, transport: str) -> None:
        """Count an accepted connection (then :meth:`track` its stream once there is one)."""
        attrs = {"rama.transport": transport, "rama.direction": "inbound"}
        self.opened.add(1, attrs)
        self.active.add(1, attrs)

    def track(self, transport: str, stream: CountedStream) -> None:
        """Count ``stream``'s bytes from now until :meth:`connection_closed` takes it."""
        self._live[id(stream)] = (transport, stream)

    def connection_closed(
        self,
        transport: str,
        duration: float,
        received: int,
        sent: int,
        *,
        stream: CountedStream | None = None,
    ) -> None:
        """Record the end of an accepted connection and what it moved.

        ``stream``, when it was tracked, stops being read live in the same step
        that adds its bytes to the totals, so nothing is counted twice or lost.
        """
        with self._lock:
            if stream is not None:
                self._live.pop(id(stream), None)
            self._add(transport, received, sent)
        attrs = {"rama.transport": transport, "rama.direction": "inbound"}
        self.active.add(-1, attrs)
        self.duration.record(duration, attrs)

    def outbound_opened(self, transport: str) -> None:
        """Count a connection a connector dialled."""
        self.opened.add(1, {"rama.transport": transport, "rama.direction": "outbound"})

    def moved(self, transport: str, *, received: int = 0, sent: int = 0) -> None:
        """Add bytes moved outside any tracked stream (datagrams, say)."""
        with self._lock:
            self._add(transport, received, sent)

    def _add(self, transport: str, received: int, sent: int) -> None:
        done = self._done.setdefault(transport, [0, 0])
        done[0] += received
        done[1] += sent

    # -- collection (may run on the SDK's exporter thread) -------------------------------
    def _totals(self, index: int) -> dict[str, int]:
        with self._lock:
            totals = {t: counts[index] for t, counts in self._done.items()}
            for transport, stream in self._live.values():
                value = stream.bytes_received if index == 0 else stream.bytes_sent
                totals[transport] = totals.get(transport, 0) + value
        return totals

    def _observe_received(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v, {"rama.transport": t}) for t, v in self._totals(0).items()]

    def _observe_sent(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v, {"rama.transport": t}) for t, v in self._totals(1).items()]


@cache
def transport_metrics() -> TransportMetrics:
    """The process-wide :class:`TransportMetrics` (instruments are proxies until an SDK is set)."""
    return TransportMetrics()
