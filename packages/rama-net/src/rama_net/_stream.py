"""Byte streams: the anyio ByteStream interface with a fast asyncio transport.

Every rama stream is an :class:`anyio.abc.ByteStream`: ``receive(max_bytes)``
(raising :class:`anyio.EndOfStream` at EOF), ``send``, ``send_eof``,
``aclose`` and typed ``extra`` attributes, so anyio's TLSStream and any
anyio stream compose with rama code.

Why a second implementation: an anyio ``SocketStream.receive`` on asyncio
pays a scheduling checkpoint and a future per chunk, about four times the
cost of a Protocol callback. :class:`ProtocolStream` buffers what the
transport delivers and returns it without suspending when data is already
there; it only awaits when the buffer is empty or the peer is slow to read.
Fairness: a ``receive`` that finds data buffered returns it without
suspending, but once the stream has been served from its buffer for 2 ms
(``_YIELD_AFTER``, counting the caller's work between calls, measured from
the first buffered call after a suspension) without suspending, the next
``receive`` yields to the event loop once first (a
cancellation point, taken before any byte is removed from the buffer, so a
cancelled ``receive`` loses nothing). One busy connection therefore holds the
loop for about that long per turn, whatever its consumer does per chunk, at
the cost of one clock read per buffered call (a call that suspends reads no
clock; a bulk copy rarely reaches the bound).
:meth:`ProtocolStream.receive_nowait` never yields, by design: a caller looping
on it must checkpoint itself. One task reads at a time: a second concurrent
``receive`` raises :class:`anyio.BusyResourceError`, as anyio's streams do.

On trio (or with ``fast=False``) the portable anyio socket stream is used
instead. Activity times (``last_activity``/``last_received``) come from the
event loop's clock, which on asyncio is :func:`anyio.current_time`; the
protocol callbacks read ``loop.time()`` directly because they run per chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, cast

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream

from ._errors import ConnectionLost, connection_lost

__all__ = [
    "ProtocolStream",
    "TrackedStream",
    "on_asyncio",
    "raw_socket_of",
    "wrap_socket",
]

_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
# receive() yields once it has served from the buffer this long without suspending
_YIELD_AFTER = 0.002
# A closed stream flushes what it still buffers; a peer that takes none of it for
# _LINGER_STALL seconds (the servers' default write timeout, nginx's send_timeout),
# or has not taken all of it after _LINGER_MAX, gets a reset instead of holding
# the socket and the buffer for ever.
_LINGER_STALL = 60.0
_LINGER_MAX = 300.0


class _StreamProtocol(asyncio.Protocol):
    """Collects received chunks and tracks writability for one ProtocolStream."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.lost: BaseException | None = None
        self.closed = False
        self.read_paused = False
        self.detached = False
        self.write_paused = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.last_activity = self.last_received = loop.time()
        self.bytes_received = 0
        self.bytes_sent = 0

    # -- transport callbacks -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport has the whole Transport interface without
        # subclassing asyncio.Transport: no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.last_received = self.loop.time()
        self.bytes_received += len(data)
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > _HIGH_WATER and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return True  # keep the write side open: half-close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.eof = True
        if exc is not None:
            self.lost = exc
        self._wake_reader()
        self._wake_writers()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.last_activity = self.loop.time()  # the peer is reading: not idle
        self._wake_writers()

    def _wake_writers(self) -> None:
        # every waiting writer gets its own future: cancelling one never wakes
        # (or strands) the others
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- helpers for ProtocolStream ------------------------------------------------------
    def _wake_reader(self) -> None:
        waiter, self._read_waiter = self._read_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_readable(self) -> None:
        waiter = self.loop.create_future()
        self._read_waiter = waiter
        try:
            await waiter
        finally:
            self._read_waiter = None

    async def wait_drained(self) -> None:
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done() or waiter.cancelled():
                with contextlib.suppress(ValueError):
                    self._drain_waiters.remove(waiter)

    def consumed(self, n: int) -> None:
        self.buffered -= n
        if (
            self.read_paused
            and not self.detached
            and self.buffered <= _LOW_WATER
            and self.transport is not None
        ):
            self.read_paused = False
            if not self.closed:
                self.transport.resume_reading()


class ProtocolStream(ByteStream):
    """A ByteStream over an asyncio transport, with buffered non-suspending reads."""

    def __init__(
        self,
        transport: asyncio.Transport,
        protocol: _StreamProtocol,
        sock: socket.socket | None = None,
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closed = False
        self._receiving = False  # a receive() is suspended: a second one is busy
        self._turn_started = 0.0  # loop time of the first buffered receive since a suspension
        # asyncio only exposes a TransportSocket; keep the real one for splice
        self._sock = sock

    @classmethod
    async def from_socket(cls, sock: socket.socket) -> ProtocolStream:
        """Take over a connected socket (accepted or dialled) on the running asyncio loop."""
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_accepted_socket(
            lambda: _StreamProtocol(loop), sock
        )
        return cls(transport, protocol, sock)

    # -- ByteStream ----------------------------------------------------------------------
    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Return buffered bytes at once, or wait for the next chunk.

        Yields to the event loop once after about 2 ms of serving from the
        buffer without a suspension (see the module docs); raises
        :class:`anyio.BusyResourceError` while another task is in ``receive``.
        """
        proto = self._protocol
        if self._receiving:
            raise anyio.BusyResourceError("reading from")
        if self._closed:
            raise anyio.ClosedResourceError
        if not proto.chunks:
            if proto.eof:
                if proto.lost is not None:
                    raise connection_lost(proto.lost) from proto.lost
                raise anyio.EndOfStream
            self._receiving = True
            try:
                await proto.wait_readable()
            finally:
                self._receiving = False
            if not proto.chunks:
                if self._closed:
                    raise anyio.ClosedResourceError
                if proto.lost is not None:
                    raise connection_lost(proto.lost) from proto.lost
                if proto.eof:
                    raise anyio.EndOfStream
                return await self.receive(max_bytes)  # woken without data: wait again
            self._turn_started = 0.0  # suspended: a new turn (its clock starts lazily)
        else:
            # Served from the buffer: the turn's clock starts at the first such
            # call, so a receive that suspends every time never reads the clock.
            now = proto.loop.time()
            started = self._turn_started
            if not started:
                self._turn_started = now
            elif now - started >= _YIELD_AFTER:
                await self._yield_turn()
                if self._closed:
                    raise anyio.ClosedResourceError
                if not proto.chunks:  # taken meanwhile (receive_nowait, detach)
                    return await self.receive(max_bytes)
        chunk = proto.chunks.popleft()
        if len(chunk) > max_bytes:
            proto.chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        proto.consumed(len(chunk))
        return chunk

    async def _yield_turn(self) -> None:
        """The fairness checkpoint: let other tasks run; nothing is taken yet."""
        self._receiving = True
        try:
            await asyncio.sleep(0)
        finally:
            self._receiving = False
        self._turn_started = 0.0

    def receive_nowait(self) -> bytes | None:
        """Fast path: all buffered bytes joined, or None when nothing is buffered.

        Never suspends, so it is never a checkpoint: a loop that keeps finding
        data here must yield to the event loop itself now and then.
        """
        proto = self._protocol
        if not proto.chunks:
            return None
        data = proto.chunks.popleft() if len(proto.chunks) == 1 else b"".join(proto.chunks)
        proto.chunks.clear()
        proto.consumed(len(data))
        return data

    async def send(self, item: bytes) -> None:
        """Write ``item``; waits only while the peer is not keeping up."""
        if self._closed:
            raise anyio.ClosedResourceError
        proto = self._protocol
        if proto.closed or self._transport.is_closing():
            raise connection_lost(proto.lost) from proto.lost
        self._transport.write(item)
        proto.bytes_sent += len(item)
        proto.last_activity = proto.loop.time()
        if proto.write_paused:
            await proto.wait_drained()
            self._turn_started = 0.0  # the loop ran: a fresh turn
            if proto.closed and proto.lost is not None:
                raise connection_lost(proto.lost) from proto.lost

    def send_nowait(self, item: bytes) -> None:
        """Fast path: queue ``item`` without waiting for the peer (check ``write_paused``)."""
        if self._closed:
            raise anyio.ClosedResourceError
        if self._protocol.closed:
            raise connection_lost(self._protocol.lost) from self._protocol.lost
        self._transport.write(item)
        self._protocol.bytes_sent += len(item)

    @property
    def last_activity(self) -> float:
        """Event-loop time of the last byte received or send call."""
        return self._protocol.last_activity

    @property
    def last_received(self) -> float:
        """Event-loop time of the last byte received."""
        return self._protocol.last_received

    @property
    def bytes_received(self) -> int:
        """Bytes received from the peer so far."""
        return self._protocol.bytes_received

    @property
    def bytes_sent(self) -> int:
        """Bytes handed to the transport so far."""
        return self._protocol.bytes_sent

    def account(self, *, received: int = 0, sent: int = 0) -> None:
        """Add bytes moved around this stream (e.g. by splice) to its counters."""
        self._protocol.bytes_received += received
        self._protocol.bytes_sent += sent
        self._protocol.last_activity = self._protocol.loop.time()
        if received:
            self._protocol.last_received = self._protocol.last_activity

    @property
    def write_paused(self) -> bool:
        """Whether the transport's write buffer is above its high-water mark."""
        return self._protocol.write_paused

    async def drain(self) -> None:
        """Wait until the write buffer is below its high-water mark."""
        if self._protocol.write_paused and not self._protocol.closed:
            await self._protocol.wait_drained()

    async def flush(self) -> None:
        """Wait until every written byte has been handed to the kernel."""
        transport, proto = self._transport, self._protocol
        if transport.get_write_buffer_size() == 0:
            return
        # with a zero high-water mark the transport reports "paused" until fully drained
        transport.set_write_buffer_limits(high=0, low=0)
        try:
            while transport.get_write_buffer_size() > 0 and not proto.closed:
                await proto.wait_drained()
        finally:
            if not proto.closed:
                transport.set_write_buffer_limits()

    def detach_reader(self) -> bytes:
        """Stop the transport from reading and return the bytes it had buffered.

        Used before handing the socket to a zero-copy path (splice): afterwards
        the kernel buffer holds everything not yet returned.
        """
        proto = self._protocol
        proto.detached = True  # consumed() must never resume reading again
        if not proto.closed and not proto.read_paused:
            self._transport.pause_reading()
        proto.read_paused = True
        return self.receive_nowait() or b""

    async def send_eof(self) -> None:
        """Half-close: the peer sees EOF, we can still receive."""
        if self._closed:
            raise anyio.ClosedResourceError
        if self._transport.can_write_eof() and not self._transport.is_closing():
            self._transport.write_eof()

    async def aclose(self) -> None:
        """Close the connection; pending writes are flushed by the transport.

        The flush is bounded: a peer that takes nothing of it for 60 s is reset
        (as is one still not done after 5 minutes), so it cannot hold the socket.
        """
        if self._closed:
            return
        self._closed = True
        transport = self._transport
        transport.close()
        self._protocol._wake_reader()
        pending = transport.get_write_buffer_size()
        if pending and not self._protocol.closed:
            _Linger(self._protocol, transport, pending)

    def abort(self) -> None:
        """Close at once, discarding unsent data (RST when the OS does that)."""
        self._closed = True
        self._transport.abort()
        self._protocol._wake_reader()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        sock: Any = self._sock or self._transport.get_extra_info("socket")
        attrs: dict[Any, Callable[[], Any]] = {
            SocketAttribute.raw_socket: lambda: sock,
            SocketAttribute.family: lambda: sock.family,
            SocketAttribute.local_address: lambda: sock.getsockname(),
        }
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            attrs[SocketAttribute.local_port] = lambda: sock.getsockname()[1]
            peer = self._transport.get_extra_info("peername")
            if peer is not None:
                attrs[SocketAttribute.remote_address] = lambda: peer
                attrs[SocketAttribute.remote_port] = lambda: peer[1]
        return attrs


class TrackedStream(ByteStream):
    """Adds activity times and byte counters to a stream that lacks them.

    The listener wraps anyio's socket stream in this on trio, so idle
    timeouts, metrics and the zero-copy forwarding path work on both backends.
    """

    def __init__(self, inner: ByteStream) -> None:
        self.inner = inner
        self.last_activity = self.last_received = anyio.current_time()
        self.bytes_received = 0
        self.bytes_sent = 0

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Receive from the inner stream, counting."""
        try:
            data = await self.inner.receive(max_bytes)
        except ConnectionLost:
            raise
        except (anyio.BrokenResourceError, OSError) as e:
            raise connection_lost(e) from e
        self.last_activity = self.last_received = anyio.current_time()
        self.bytes_received += len(data)
        return data

    async def send(self, item: bytes) -> None:
        """Send on the inner stream, counting."""
        self.last_activity = anyio.current_time()
        try:
            await self.inner.send(item)
        except ConnectionLost:
            raise
        except (anyio.BrokenResourceError, OSError) as e:
            raise connection_lost(e) from e
        self.last_activity = anyio.current_time()
        self.bytes_sent += len(item)

    def account(self, *, received: int = 0, sent: int = 0) -> None:
        """Add bytes moved around this stream (e.g. by splice) to its counters."""
        self.bytes_received += received
        self.bytes_sent += sent
        self.last_activity = anyio.current_time()
        if received:
            self.last_received = self.last_activity

    async def send_eof(self) -> None:
        """Half-close the inner stream."""
        await self.inner.send_eof()

    async def aclose(self) -> None:
        """Close the inner stream."""
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes


class _Linger:
    """Watch a closed transport's flush; abort it once the peer stops taking data."""

    __slots__ = ("deadline", "pending", "protocol", "transport")

    def __init__(
        self, protocol: _StreamProtocol, transport: asyncio.Transport, pending: int
    ) -> None:
        self.protocol = protocol
        self.transport = transport
        self.pending = pending
        self.deadline = protocol.loop.time() + _LINGER_MAX
        protocol.loop.call_later(_LINGER_STALL, self.check)

    def check(self) -> None:
        if self.protocol.closed:  # flushed (or lost): the transport is gone
            return
        pending = self.transport.get_write_buffer_size()
        loop = self.protocol.loop
        if pending >= self.pending or loop.time() >= self.deadline:
            self.transport.abort()
            return
        self.pending = pending
        loop.call_later(_LINGER_STALL, self.check)


def on_asyncio() -> bool:
    """Whether the running event loop is asyncio's (or uvloop's)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def wrap_socket(sock: socket.socket, *, fast: bool = True) -> ProtocolStream | TrackedStream:
    """Wrap a connected socket: :class:`ProtocolStream` on asyncio, else anyio's socket
    stream inside a :class:`TrackedStream` (both count bytes and track activity)."""
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if fast and on_asyncio():
        return await ProtocolStream.from_socket(sock)
    return TrackedStream(await SocketStream.from_socket(sock))


def raw_socket_of(stream: ByteStream) -> socket.socket | None:
    """The OS socket under ``stream`` if it is a plain (unwrapped) socket stream."""
    if isinstance(stream, TrackedStream):
        stream = stream.inner
    if not isinstance(stream, ProtocolStream | SocketStream):
        return None
    sock = stream.extra(SocketAttribute.raw_socket, None)
    return sock if isinstance(sock, socket.socket) else None
