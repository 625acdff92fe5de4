"""Upstream HTTP/1.1 connections of the fast path and their keep-alive pool.

An :class:`Upstream` is a connected socket with its response parser (rama-http's
:class:`~rama_http.client._h1_fast.FastClientEngine`). While a request is in
flight its reader callback hands what arrives to the client connection that
owns it; idle in the :class:`UpstreamPool`, any readiness (the origin closed
it, reset it, or sent stray bytes) retires it, so a pooled connection is one
the origin still holds open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Final

from rama_http.client._h1_fast import FastClientEngine

if TYPE_CHECKING:
    from ._client import ClientConnection

__all__ = ["PoolKey", "Upstream", "UpstreamPool"]

PoolKey = tuple[str, int]
"""``(host, port)`` of a direct origin."""

_log = logging.getLogger("rama.proxy.http")
_CHUNK: Final = 256 * 1024
_AGAIN: Final = (BlockingIOError, InterruptedError)


class Upstream:
    """One connection to an origin (see the module docs)."""

    __slots__ = ("client", "deadline", "fd", "key", "out", "parser", "pool", "sock")

    def __init__(self, pool: UpstreamPool, key: PoolKey, sock: socket.socket) -> None:
        self.pool = pool
        self.key = key
        self.sock = sock
        self.fd = sock.fileno()
        self.parser = FastClientEngine()
        self.client: ClientConnection | None = None
        self.out = b""
        self.deadline = 0.0
        pool.loop.add_reader(self.fd, self.on_readable)

    def on_readable(self) -> None:
        try:
            self._readable()
        except Exception:
            client = self.client
            if client is not None:
                client.internal_error()
            else:
                _log.exception("fast path: internal error on an idle upstream connection")
                self.pool.retire(self)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(_CHUNK)
        except _AGAIN:
            return
        except OSError as exc:
            if self.client is None:
                self.pool.retire(self)
            else:
                self.client.upstream_failed(exc)
            return
        client = self.client
        if client is None:  # idle: closed by the origin (or stray bytes): retire it
            self.pool.retire(self)
        else:
            client.upstream_data(data)

    def write(self, data: bytes) -> None:
        """Send ``data``; what the socket does not take now goes when it is writable
        (the owning client stops reading meanwhile)."""
        if self.out:
            self.out += data
            return
        try:
            n = self.sock.send(data)
        except _AGAIN:
            n = 0
        except OSError as exc:
            assert self.client is not None
            self.client.upstream_failed(exc)
            return
        if n < len(data):
            self.out = data[n:]
            self.pool.loop.add_writer(self.fd, self._on_writable)
            assert self.client is not None
            self.client.pause_reading()

    def _on_writable(self) -> None:
        try:
            self._writable()
        except Exception:
            if self.client is not None:
                self.client.internal_error()
            else:
                self.close()

    def _writable(self) -> None:
        try:
            n = self.sock.send(self.out)
        except _AGAIN:
            return
        except OSError as exc:
            assert self.client is not None
            self.client.upstream_failed(exc)
            return
        self.out = self.out[n:]
        if not self.out:
            self.pool.loop.remove_writer(self.fd)
            if self.client is not None:
                self.client.resume_reading()

    def pause(self) -> None:
        """Stop reading responses (the client is not taking them fast enough)."""
        self.pool.loop.remove_reader(self.fd)

    def resume(self) -> None:
        self.pool.loop.add_reader(self.fd, self.on_readable)

    def close(self) -> None:
        """Close the connection (never to be reused)."""
        loop = self.pool.loop
        loop.remove_reader(self.fd)
        if self.out:
            loop.remove_writer(self.fd)
            self.out = b""
        self.client = None
        with contextlib.suppress(OSError):
            self.sock.close()


class UpstreamPool:
    """Idle upstream connections by origin, newest reused first, each for ``idle_timeout``."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, *, idle_timeout: float, max_per_origin: int
    ) -> None:
        self.loop = loop
        self.idle_timeout = idle_timeout
        self.max_per_origin = max_per_origin
        self._idle: dict[PoolKey, list[Upstream]] = {}

    def get(self, key: PoolKey) -> Upstream | None:
        """A pooled connection to ``key``, or None."""
        idle = self._idle.get(key)
        if not idle:
            return None
        up = idle.pop()
        if not idle:
            del self._idle[key]
        return up

    def put(self, up: Upstream) -> None:
        """Keep ``up`` for reuse (the response on it is complete)."""
        up.client = None
        up.parser.start_next_cycle()
        up.deadline = self.loop.time() + self.idle_timeout
        idle = self._idle.setdefault(up.key, [])
        idle.append(up)
        if len(idle) > self.max_per_origin:
            idle.pop(0).close()

    def retire(self, up: Upstream) -> None:
        """Drop an idle connection the origin closed."""
        idle = self._idle.get(up.key)
        if idle is not None and up in idle:
            idle.remove(up)
            if not idle:
                del self._idle[up.key]
        up.close()

    def sweep(self, now: float) -> None:
        """Close connections idle past their time."""
        for key in list(self._idle):
            idle = self._idle[key]
            keep = [up for up in idle if up.deadline > now]
            if len(keep) != len(idle):
                for up in idle:
                    if up.deadline <= now:
                        up.close()
                if keep:
                    self._idle[key] = keep
                else:
                    del self._idle[key]

    def close(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for up in idle:
                up.close()
        self._idle.clear()
