"""The connection pool: keyed reuse, limits, idle expiry, waiting with a timeout.

Connections are kept per :class:`~rama_http.client.PoolKey` (scheme,
authority, proxy, TLS configuration, emulation profile). A connection is
*available* while it is open and has a free request slot
(``in_flight < max_concurrent_streams``): an HTTP/1.1 connection one slot,
an h2 connection many, so multiplexing needs no change here. Limits count
connections (open plus being opened), per key and in total; when they are
reached a request waits for a slot, up to the pool timeout. An idle
connection the server closed (or that holds unsolicited bytes) is detected
before reuse and dropped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from rama_core import Context, Service

from ._connect import PoolKey
from ._connection import ClientConnection
from ._errors import ConnectTimeout, PoolTimeout

__all__ = ["ConnectionPool", "HostStats", "PoolStats"]

_log = logging.getLogger("rama.http.client.pool")


@dataclass(frozen=True, slots=True)
class HostStats:
    """Connections of one pool key."""

    idle: int
    active: int
    connecting: int


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of the pool."""

    idle: int
    """Open connections carrying no request."""
    active: int
    """Open connections carrying at least one request."""
    connecting: int
    """Connections being opened."""
    waiting: int
    """Requests waiting for a slot."""
    per_host: dict[str, HostStats] = field(default_factory=dict)
    """By ``scheme://authority``."""

    @property
    def total(self) -> int:
        """Open plus opening connections."""
        return self.idle + self.active + self.connecting


class ConnectionPool:
    """Hands out connections from ``connector`` (a ``Service[PoolKey, ClientConnection]``)."""

    def __init__(
        self,
        connector: Service[PoolKey, ClientConnection],
        *,
        max_connections: int = 100,
        max_connections_per_host: int = 10,
        idle_timeout: float | None = 90.0,
    ) -> None:
        if max_connections < 1 or max_connections_per_host < 1:
            raise ValueError("connection limits must be at least 1")
        self.connector = connector
        self.max_connections = max_connections
        self.max_connections_per_host = max_connections_per_host
        self.idle_timeout = idle_timeout
        self._conns: dict[PoolKey, list[ClientConnection]] = {}
        self._free: dict[PoolKey, dict[ClientConnection, None]] = {}
        """Per key, the connections with a free slot, most recently released last."""
        self._key_of: dict[ClientConnection, PoolKey] = {}
        self._n_open = 0
        self._connecting: dict[PoolKey, int] = {}
        self._n_connecting = 0
        self._waiting = 0
        self._changed: anyio.Event | None = None
        self._closed = False
        self._next_sweep = 0.0

    # -- bookkeeping ---------------------------------------------------------------------
    def _notify(self) -> None:
        ev, self._changed = self._changed, None
        if ev is not None:
            ev.set()

    def _on_release(self, conn: ClientConnection) -> None:
        if conn.is_closed:
            self._drop(conn)
        else:
            key = self._key_of.get(conn)
            if key is not None:
                free = self._free.setdefault(key, {})
                free.pop(conn, None)
                free[conn] = None  # the most recently used goes last: reused first
        self._notify()

    def _add(self, key: PoolKey, conn: ClientConnection) -> None:
        self._conns.setdefault(key, []).append(conn)
        self._key_of[conn] = key
        self._n_open += 1

    def _drop(self, conn: ClientConnection) -> None:
        key = self._key_of.pop(conn, None)
        if key is None:
            return
        self._n_open -= 1
        conns = self._conns[key]
        conns.remove(conn)
        if not conns:
            del self._conns[key]
        free = self._free.get(key)
        if free is not None:
            free.pop(conn, None)
            if not free:
                del self._free[key]

    def _total(self) -> int:
        return self._n_open + self._n_connecting

    def _count(self, key: PoolKey) -> int:
        return len(self._conns.get(key, ())) + self._connecting.get(key, 0)

    def _expired(self, conn: ClientConnection, now: float) -> bool:
        if conn.in_flight:
            return False
        if conn.is_closed:
            return True
        return self.idle_timeout is not None and now - conn.idle_since > self.idle_timeout

    def _sweep(self) -> list[ClientConnection]:
        """Remove closed and expired idle connections (at most once a second)."""
        now = time.monotonic()
        if now < self._next_sweep:
            return []
        self._next_sweep = now + 1.0
        dead = [c for conns in self._conns.values() for c in conns if self._expired(c, now)]
        for c in dead:
            self._drop(c)
        return dead

    def _evict_idle_elsewhere(self, key: PoolKey) -> ClientConnection | None:
        """At the total limit: drop the longest-idle connection of another key."""
        return self._evict_idle(lambda k: k != key)

    def _evict_idle(self, among: Callable[[PoolKey], bool]) -> ClientConnection | None:
        """Drop the longest-idle connection of the keys ``among`` selects."""
        best: ClientConnection | None = None
        for k, conns in self._conns.items():
            if not among(k):
                continue
            for c in conns:
                if not c.in_flight and (best is None or c.idle_since < best.idle_since):
                    best = c
        if best is not None:
            self._drop(best)
        return best

    async def _take_free(self, key: PoolKey) -> ClientConnection | None:
        """A pooled connection with a reserved slot, or None; closes dead ones on the way.

        Nothing is awaited after the reservation, so a cancellation cannot strand a slot.
        """
        free = self._free.get(key)
        now = time.monotonic()
        while free:
            conn, _ = free.popitem()
            if conn.in_flight == 0 and (self._expired(conn, now) or conn.is_dead_at_idle()):
                _log.debug("dropping a pooled connection that is closed or expired: %r", conn)
                self._drop(conn)
                await conn.aclose()
                free = self._free.get(key)
                continue
            if conn.reserve():
                if conn.in_flight < conn.max_concurrent_streams:
                    free[conn] = None  # h2: still has room for more streams
                return conn
        return None

    # -- the API -------------------------------------------------------------------------
    async def acquire(
        self,
        ctx: Context,
        key: PoolKey,
        *,
        pool_timeout: float | None = None,
        connect_timeout: float | None = None,
        fresh: bool = False,
    ) -> ClientConnection:
        """A connection for ``key`` with a reserved request slot.

        ``fresh=True`` skips pooled connections (a retry after a stale one).
        The slot is freed when the exchange's response ends (the connection
        calls back). Raises :class:`PoolTimeout` when no slot frees up in time.
        """
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        deadline = None if pool_timeout is None else time.monotonic() + pool_timeout
        while True:
            for c in self._sweep():
                await c.aclose()
            if not fresh:
                conn = await self._take_free(key)
                if conn is not None:
                    return conn
            elif self._count(key) >= self.max_connections_per_host:
                # A retry skips pooled connections; at the host's limit an idle one
                # makes room for the fresh one instead of waiting for PoolTimeout.
                victim = self._evict_idle(lambda k: k == key)
                if victim is not None:
                    await victim.aclose()
            if self._count(key) < self.max_connections_per_host:
                if self._total() >= self.max_connections:
                    victim = self._evict_idle_elsewhere(key)
                    if victim is not None:
                        await victim.aclose()
                if self._total() < self.max_connections:
                    return await self._open(ctx, key, connect_timeout)
            if deadline is not None and time.monotonic() >= deadline:
                raise PoolTimeout(
                    f"no connection to {key.authority} became free in {pool_timeout}s"
                )
            if self._changed is None:
                self._changed = anyio.Event()
            ev = self._changed
            self._waiting += 1
            try:
                with anyio.move_on_after(
                    None if deadline is None else max(0.0, deadline - time.monotonic())
                ):
                    await ev.wait()
            finally:
                self._waiting -= 1

    async def _open(
        self, ctx: Context, key: PoolKey, connect_timeout: float | None
    ) -> ClientConnection:
        self._connecting[key] = self._connecting.get(key, 0) + 1
        self._n_connecting += 1
        try:
            try:
                with anyio.fail_after(connect_timeout):
                    conn = await self.connector.serve(ctx, key)
            except TimeoutError as e:
                if isinstance(e, ConnectTimeout):
                    raise
                raise ConnectTimeout(
                    f"connecting to {key.authority} took over {connect_timeout}s"
                ) from e
        finally:
            self._n_connecting -= 1
            n = self._connecting[key] - 1
            if n:
                self._connecting[key] = n
            else:
                del self._connecting[key]
            self._notify()
        conn.on_release = self._on_release
        if self._closed:
            await conn.aclose()
            raise RuntimeError("the connection pool is closed")
        self._add(key, conn)
        if not conn.reserve():  # pragma: no cover - a fresh connection has a free slot
            raise RuntimeError("a new connection refused its first request")
        if conn.in_flight < conn.max_concurrent_streams:
            self._free.setdefault(key, {})[conn] = None  # h2: room for more streams at once
        self._notify()  # waiters for this key can share it
        return conn

    def stats(self) -> PoolStats:
        """Counts of idle, active and connecting connections, in total and per key."""
        per: dict[str, HostStats] = {}
        idle = active = 0
        keys = set(self._conns) | set(self._connecting)
        for key in keys:
            conns = [c for c in self._conns.get(key, ()) if not c.is_closed or c.in_flight]
            a = sum(1 for c in conns if c.in_flight)
            i = len(conns) - a
            idle += i
            active += a
            per[f"{key.scheme}://{key.authority}"] = HostStats(i, a, self._connecting.get(key, 0))
        return PoolStats(idle, active, sum(self._connecting.values()), self._waiting, per)

    async def close_idle(self) -> int:
        """Close every idle connection; return how many."""
        idle = [c for conns in self._conns.values() for c in conns if not c.in_flight]
        for c in idle:
            self._drop(c)
            await c.aclose()
        return len(idle)

    async def aclose(self) -> None:
        """Close every connection; the pool cannot be used afterwards."""
        self._closed = True
        conns = [c for cs in self._conns.values() for c in cs]
        for c in conns:
            self._drop(c)
        for c in conns:
            with contextlib.suppress(Exception):
                await c.aclose()
        self._notify()
