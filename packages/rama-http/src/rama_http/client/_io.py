"""Lean reads and writes for client connections.

:class:`StreamIO` reads and writes one connection's stream with timeouts. On
asyncio, over rama's :class:`~rama_net.ProtocolStream` (cleartext) or anyio's
``TLSStream`` over one (TLS), it needs no cancel scope per read: a read that
finds bytes buffered returns them at once, and one that must wait arms a
single event-loop timer. For TLS it drives the ``ssl.SSLObject`` and its
memory BIOs directly: every record already received is decrypted in one call
(a 1 MiB body is a few reads, not 64 record-sized ones), and a write is
encrypted and queued without suspending unless the peer does not keep up.
The handshake is still anyio's (the TLS connector runs it). Any other stream
(trio, tracking wrappers) goes through its own ``receive``/``send`` under
``anyio.fail_after``.

Errors are the streams' own: :class:`TimeoutError` after the timeout,
:class:`anyio.EndOfStream` at a clean EOF (also a TLS EOF without
close_notify: HTTP framing detects truncation), :class:`rama_net.ConnectionLost`
when the connection broke, :class:`anyio.ClosedResourceError` after a close.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Protocol

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream

from rama_net import ConnectionLost, ProtocolStream
from rama_net._errors import connection_lost

__all__ = ["StreamIO", "Waiter", "wait_readable"]

_YIELD_AFTER = 0.002
"""Serve buffered bytes without suspending for at most this long (as ProtocolStream does)."""


async def wait_readable(stream: ProtocolStream, timeout: float | None) -> None:
    """Wait until ``stream`` has bytes or EOF; TimeoutError after ``timeout`` seconds.

    One loop timer that wakes the reader, instead of a cancel scope per read.
    Cancellation from outside works as usual.
    """
    proto = stream._protocol
    if timeout is None:
        while not proto.chunks and not proto.eof and not proto.closed and not stream._closed:
            await proto.wait_readable()
        return
    loop = proto.loop
    deadline = loop.time() + timeout
    while not proto.chunks and not proto.eof and not proto.closed and not stream._closed:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError
        timer = loop.call_later(remaining, proto._wake_reader)
        try:
            await proto.wait_readable()
        finally:
            timer.cancel()


class Waiter(Protocol):
    """A one-shot wake-up: :meth:`set` from anywhere, :meth:`wait` in one task."""

    def set(self) -> None:
        """Wake the waiting task (idempotent)."""
        ...

    def is_set(self) -> bool:
        """Whether :meth:`set` was called."""
        ...

    async def wait(self, timeout: float | None) -> None:
        """Until set, or ``timeout`` seconds (then returns; the caller checks its state)."""
        ...


class _FutureWaiter:
    """A Waiter on an asyncio future; its timeout is a loop timer, not a cancel scope."""

    __slots__ = ("_fut", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._fut: asyncio.Future[None] = loop.create_future()

    def set(self) -> None:
        if not self._fut.done():
            self._fut.set_result(None)

    def is_set(self) -> bool:
        return self._fut.done()

    async def wait(self, timeout: float | None) -> None:
        if timeout is None:
            await self._fut
            return
        timer = self._loop.call_later(timeout, self.set)
        try:
            await self._fut
        finally:
            timer.cancel()


class _EventWaiter:
    """A Waiter on an anyio Event (any backend)."""

    __slots__ = ("_ev",)

    def __init__(self) -> None:
        self._ev = anyio.Event()

    def set(self) -> None:
        self._ev.set()

    def is_set(self) -> bool:
        return self._ev.is_set()

    async def wait(self, timeout: float | None) -> None:
        with anyio.move_on_after(timeout):
            await self._ev.wait()


def _lost(exc: BaseException) -> ConnectionLost:
    return ConnectionLost(f"TLS receive failed: {str(exc) or type(exc).__name__}")


class StreamIO:
    """Reads and writes ``stream`` with per-call timeouts (see the module docs)."""

    __slots__ = ("_deferred", "_raw", "_tls", "_turn", "stream")

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self._raw: ProtocolStream | None = None
        self._tls: TLSStream | None = None
        self._deferred: BaseException | None = None
        self._turn = 0.0
        if type(stream) is ProtocolStream:
            self._raw = stream
        elif isinstance(stream, TLSStream) and type(stream.transport_stream) is ProtocolStream:
            self._raw = stream.transport_stream
            self._tls = stream

    @property
    def clock(self) -> Callable[[], float]:
        """The clock of timeouts: the loop's on the lean path, else ``anyio.current_time``."""
        if self._raw is not None:
            return self._raw._protocol.loop.time
        return anyio.current_time

    def waiter(self) -> Waiter:
        """A fresh :class:`Waiter` for this stream's event loop."""
        if self._raw is not None:
            return _FutureWaiter(self._raw._protocol.loop)
        return _EventWaiter()

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` at the loop's next turn (lean path only)."""
        assert self._raw is not None
        self._raw._protocol.loop.call_soon(fn)

    def call_at(self, when: float, fn: Callable[[], None]) -> asyncio.TimerHandle:
        """Run ``fn`` at loop time ``when`` (lean path only)."""
        assert self._raw is not None
        return self._raw._protocol.loop.call_at(when, fn)

    @property
    def lean(self) -> bool:
        """Whether the timer-based path is in use (asyncio over a ProtocolStream)."""
        return self._raw is not None

    def buffered(self) -> bool:
        """Whether bytes are waiting (a read would not wait)."""
        raw = self._raw
        if raw is None:
            return False
        if self._tls is not None and (
            self._tls._ssl_object.pending() or self._tls._read_bio.pending
        ):
            return True
        return bool(raw._protocol.chunks)

    async def _fair(self, raw: ProtocolStream) -> None:
        """Yield once after serving buffered bytes for ``_YIELD_AFTER`` without suspending."""
        now = raw._protocol.loop.time()
        if not self._turn:
            self._turn = now
        elif now - self._turn >= _YIELD_AFTER:
            await asyncio.sleep(0)
            self._turn = 0.0

    async def receive(self, max_bytes: int, timeout: float | None) -> bytes:
        """Up to ``max_bytes`` (at least one), waiting up to ``timeout`` seconds."""
        raw = self._raw
        if raw is None:
            with anyio.fail_after(timeout):
                return await self.stream.receive(max_bytes)
        if self._tls is not None:
            return await self._receive_tls(raw, self._tls, max_bytes, timeout)
        if timeout is not None and not raw._protocol.chunks:
            await wait_readable(raw, timeout)
        return await raw.receive(max_bytes)  # which has its own fairness turn

    async def _receive_tls(
        self, raw: ProtocolStream, tls: TLSStream, max_bytes: int, timeout: float | None
    ) -> bytes:
        if self._deferred is not None:
            exc, self._deferred = self._deferred, None
            raise exc
        if tls._broken:
            raise anyio.BrokenResourceError
        proto = raw._protocol
        ssl_obj = tls._ssl_object
        bio = tls._read_bio
        if proto.chunks or ssl_obj.pending() or bio.pending:
            await self._fair(raw)
        parts: list[bytes] = []
        size = 0
        while True:
            while size < max_bytes:
                try:
                    chunk = ssl_obj.read(max_bytes - size)
                except ssl.SSLWantReadError:
                    if proto.chunks:
                        data = raw.receive_nowait()
                        if data:
                            bio.write(data)
                        continue
                    break
                except ssl.SSLError as e:
                    tls._broken = True
                    err = _lost(e)
                    if parts:
                        self._deferred = err
                        break
                    raise err from e
                if not chunk:  # close_notify
                    if parts:
                        self._deferred = anyio.EndOfStream()
                        break
                    raise anyio.EndOfStream
                parts.append(chunk)
                size += len(chunk)
            if tls._write_bio.pending:  # a KeyUpdate answer, an alert
                with contextlib.suppress(ConnectionLost, anyio.ClosedResourceError):
                    raw.send_nowait(tls._write_bio.read())
            if parts:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            if raw._closed:
                raise anyio.ClosedResourceError
            if proto.eof:
                if proto.lost is not None:
                    raise connection_lost(proto.lost) from proto.lost
                raise anyio.EndOfStream  # EOF without close_notify: the framing decides
            await wait_readable(raw, timeout)
            self._turn = 0.0

    async def send(self, data: bytes, timeout: float | None) -> None:
        """Write ``data``; waits (up to ``timeout``) only while the peer is not reading."""
        raw = self._raw
        if raw is None:
            with anyio.fail_after(timeout):
                await self.stream.send(data)
            return
        tls = self._tls
        if tls is not None:
            if tls._broken:
                raise anyio.BrokenResourceError
            try:
                tls._ssl_object.write(data)
            except ssl.SSLWantReadError:
                # renegotiation in progress: anyio's path reads what it needs
                with anyio.fail_after(timeout):
                    await tls.send(data)
                return
            except ssl.SSLError as e:
                tls._broken = True
                raise ConnectionLost(f"TLS send failed: {e}") from e
            data = tls._write_bio.read()
        raw.send_nowait(data)
        if raw._protocol.write_paused:
            with anyio.fail_after(timeout):
                await raw.drain()

    @property
    def write_paused(self) -> bool:
        """Whether the transport's buffer is above its high-water mark (lean path only)."""
        return self._raw is not None and self._raw._protocol.write_paused

    async def drain(self, timeout: float | None) -> None:
        """Wait, up to ``timeout``, until the transport's buffer is below its high-water mark."""
        if self._raw is not None and self._raw._protocol.write_paused:
            with anyio.fail_after(timeout):
                await self._raw.drain()

    def send_nowait(self, data: bytes) -> bool:
        """Queue ``data`` without waiting if this stream allows it; False: use :meth:`send`."""
        raw = self._raw
        if raw is None:
            return False
        tls = self._tls
        if tls is not None:
            if tls._broken:
                raise anyio.BrokenResourceError
            try:
                tls._ssl_object.write(data)
            except ssl.SSLWantReadError:
                return False
            except ssl.SSLError as e:
                tls._broken = True
                raise ConnectionLost(f"TLS send failed: {e}") from e
            data = tls._write_bio.read()
        raw.send_nowait(data)
        return True
