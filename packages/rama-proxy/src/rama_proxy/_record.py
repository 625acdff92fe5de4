"""One record per proxied request or tunnel, fanned out to observers.

Every proxy service (HTTP forward, CONNECT, SOCKS) opens a :class:`ProxyRecord`
with :func:`begin_record` when it accepts work and closes it with
:func:`end_record`. The access log and the metrics are observers
(:class:`ProxyObserver`) registered in the Context through
:class:`ProxyObservers`; services never know who listens.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from rama_core import Context
from rama_net import SocketAddress

__all__ = [
    "ProxyObserver",
    "ProxyObservers",
    "ProxyRecord",
    "begin_record",
    "end_record",
]

_log = logging.getLogger("rama.proxy.record")


@dataclass(slots=True)
class ProxyRecord:
    """What one request or tunnel did; filled in by the service as it goes."""

    protocol: str
    """``http`` (forwarded request), ``connect`` (HTTP CONNECT tunnel), ``socks5``, ``socks4``."""
    client: SocketAddress | None = None
    user: str | None = None
    """The authenticated user (labels removed), if any."""
    method: str | None = None
    """HTTP method, or the SOCKS command (``CONNECT``, ``BIND``, ``UDP_ASSOCIATE``)."""
    target: str | None = None
    """The absolute URL of a forwarded request, or ``host:port`` of a tunnel."""
    upstream: str | None = None
    """The upstream proxy used (URL without credentials); None when direct."""
    status: int | None = None
    """HTTP status answered to the client, or the SOCKS reply code."""
    bytes_in: int = 0
    """Bytes from the client towards the target (bodies/tunnel payload)."""
    bytes_out: int = 0
    """Bytes from the target towards the client."""
    error: str | None = None
    """A short cause when the request or tunnel failed."""
    connect_time: float | None = None
    """Seconds the egress took to reach the target or upstream (set by :class:`Egress`)."""
    started: float = field(default_factory=anyio.current_time)
    started_wall: float = field(default_factory=time.time)
    duration: float | None = None
    """Seconds from begin to end (set by :func:`end_record`)."""

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (one access-log line)."""
        return {
            "ts": round(self.started_wall, 6),
            "protocol": self.protocol,
            "client": str(self.client) if self.client is not None else None,
            "user": self.user,
            "method": self.method,
            "target": self.target,
            "upstream": self.upstream,
            "status": self.status,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "duration": round(self.duration, 6) if self.duration is not None else None,
            "connect_time": (
                round(self.connect_time, 6) if self.connect_time is not None else None
            ),
            "error": self.error,
        }


class ProxyObserver(Protocol):
    """Gets every record at its start and at its end (access log, metrics)."""

    def started(self, record: ProxyRecord) -> None:
        """A request or tunnel began (``record`` is partly filled)."""
        ...

    def finished(self, record: ProxyRecord) -> None:
        """It ended; ``record`` is complete."""
        ...


class ProxyObservers:
    """The observers of a proxy (a Context extension); a failing observer is logged, not raised."""

    def __init__(self, *observers: ProxyObserver) -> None:
        self.observers: list[ProxyObserver] = list(observers)

    def started(self, record: ProxyRecord) -> None:
        """Tell every observer that ``record`` began."""
        for obs in self.observers:
            try:
                obs.started(record)
            except Exception:
                _log.exception("proxy observer %r failed", obs)

    def finished(self, record: ProxyRecord) -> None:
        """Tell every observer that ``record`` ended."""
        for obs in self.observers:
            try:
                obs.finished(record)
            except Exception:
                _log.exception("proxy observer %r failed", obs)


def begin_record(
    ctx: Context, protocol: str, *, client: SocketAddress | None = None, **fields: Any
) -> ProxyRecord:
    """Open a record and tell the Context's observers (if any).

    The record is also inserted into ``ctx``, so the :class:`Egress` serving
    this request can note its connect time on it.
    """
    record = ProxyRecord(protocol, client, **fields)
    ctx.insert(record)
    observers = ctx.get(ProxyObservers)
    if observers is not None:
        observers.started(record)
    return record


def end_record(ctx: Context, record: ProxyRecord) -> None:
    """Close ``record`` (sets its duration) and tell the observers; idempotent."""
    if record.duration is not None:
        return
    record.duration = anyio.current_time() - record.started
    observers = ctx.get(ProxyObservers)
    if observers is not None:
        observers.finished(record)
