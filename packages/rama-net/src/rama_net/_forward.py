"""Bidirectional forwarding between two byte streams.

:func:`forward` copies bytes both ways until both directions reach EOF (or one
breaks), propagating half-closes, counting bytes and enforcing an idle
timeout. When both ends are plain TCP sockets on Linux it moves the bytes with
``os.splice`` through a kernel pipe, so payload never enters Python; any other
pair of streams (TLS, wrappers, non-Linux) uses a portable copy loop. Both
paths behave the same and are tested against each other.

File descriptors: the copy path holds none beyond the two sockets. The splice
path adds a duplicate of each socket (the event loop may not watch a
transport's own fd) and, per direction, a pipe (two fds) only while bytes flow
that way: a pipe is created when data first arrives and given back after
``_PIPE_IDLE`` seconds without any. So a relayed connection costs 2 fds
(copy), 4 (splice, idle) and up to 8 (splice, both ways busy). When a dup or a
pipe cannot be had (EMFILE/ENFILE at fd exhaustion) the connection, or that
direction, falls back to copying through Python instead of failing; the
event is logged at WARNING on ``rama.net.forward``, at most every 10 s.

A transport failure of one side (a reset, say) ends both directions, and the
other side is then closed with a reset (SO_LINGER 0) rather than a clean FIN,
so the truncation stays visible to it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream

from ._errors import ConnectionLost, connection_lost
from ._peek import PeekStream
from ._ratelimit import RateLimitedLog
from ._stream import ProtocolStream, TrackedStream

__all__ = ["ForwardStats", "forward", "zero_copy_supported"]

_log = logging.getLogger("rama.net.forward")
_fd_warning = RateLimitedLog(_log, 10.0)
# Out of descriptors (or kernel memory for a pipe): fall back to the copy loop.
_FD_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})
_PIPE_IDLE = 2.0
_LINGER_RESET = struct.pack("ii", 1, 0)

_CHUNK = 256 * 1024
_PIPE_SIZE = 1024 * 1024
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
# Our streams raise ConnectionLost (a BrokenResourceError); streams of other
# libraries (anyio's TLSStream, say) raise anyio's own errors or an ssl OSError.
_BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def zero_copy_supported() -> bool:
    """Whether this platform has ``os.splice`` (Linux, Python 3.10+)."""
    return sys.platform.startswith("linux") and hasattr(os, "splice")


@dataclass
class ForwardStats:
    """What a :func:`forward` call moved and how it ended."""

    left_to_right: int = 0
    """Bytes read from the left stream and written to the right one."""
    right_to_left: int = 0
    """Bytes read from the right stream and written to the left one."""
    zero_copy: bool = False
    """Whether the splice fast path carried the bytes."""
    idle_timed_out: bool = False
    """Whether the idle timeout ended the forwarding."""
    error: BaseException | None = None
    """What broke one direction (the other was then stopped), if anything: a
    :class:`~rama_net.ConnectionLost` (its ``__cause__`` holds the OS error, if
    any) or :class:`anyio.ClosedResourceError`."""
    started: float = field(default=0.0, repr=False)
    duration: float = 0.0
    """Seconds from start to the end of both directions."""


class _Activity:
    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = anyio.current_time()

    def touch(self) -> None:
        self.last = anyio.current_time()


async def forward(
    left: ByteStream,
    right: ByteStream,
    *,
    idle_timeout: float | None = None,
    zero_copy: bool = True,
    close: bool = True,
) -> ForwardStats:
    """Copy bytes between ``left`` and ``right`` in both directions.

    EOF on one side is passed on as a half-close (``send_eof``) to the other
    and the opposite direction keeps running; forwarding ends when both
    directions are done, when either breaks (reset, closed), or after
    ``idle_timeout`` seconds without a byte either way. Both streams are closed
    at the end unless ``close`` is false; when one side failed (a reset, a
    broken pipe) the other is closed with a reset (SO_LINGER 0), so a relayed
    peer sees the truncation instead of a clean EOF. Never raises for peer
    misbehaviour: the outcome is in the returned :class:`ForwardStats`.
    """
    # a PeekStream whose peeked bytes are all consumed is its inner stream again
    # (protocol detection hands one on): forwarding the inner one keeps zero-copy
    left, right = _unwrap_peeked(left), _unwrap_peeked(right)
    stats = ForwardStats(started=anyio.current_time())
    activity = _Activity()
    # sockets taken now: a transport that sees a reset may drop its own soon
    socks = [_raw_socket(s) for s in (left, right)]
    try:
        async with anyio.create_task_group() as tg:
            if idle_timeout is not None:
                tg.start_soon(
                    _watch_idle, idle_timeout, activity, (left, right), stats, tg.cancel_scope
                )
            pair = _splice_pair(left, right) if zero_copy and zero_copy_supported() else None
            if pair is not None:
                stats.zero_copy = True
                await _forward_spliced(left, right, pair, stats, activity)
            else:
                await _forward_copy(left, right, stats, activity)
            tg.cancel_scope.cancel()
    finally:
        stats.duration = anyio.current_time() - stats.started
        if close and isinstance(stats.error, ConnectionLost):
            # one side failed: reset the other instead of a clean FIN
            for sock in socks:
                _reset_on_close(sock)
        if close:
            with anyio.CancelScope(shield=True):
                for stream in (left, right):
                    with contextlib.suppress(Exception):
                        await stream.aclose()
    return stats


def _unwrap_peeked(stream: ByteStream) -> ByteStream:
    while isinstance(stream, PeekStream) and not stream.peeked and not stream.at_eof:
        stream = stream.inner
    return stream


async def _watch_idle(
    timeout: float,
    activity: _Activity,
    streams: tuple[ByteStream, ByteStream],
    stats: ForwardStats,
    scope: anyio.CancelScope,
) -> None:
    tracked = [s for s in streams if isinstance(s, ProtocolStream | TrackedStream)]
    while True:
        # a transport draining its write buffer to a slow reader counts as activity
        last = max([activity.last, *(s.last_activity for s in tracked)])
        remaining = last + timeout - anyio.current_time()
        if remaining <= 0:
            stats.idle_timed_out = True
            scope.cancel()
            return
        await anyio.sleep(remaining)


async def _both(
    one: Callable[[], Awaitable[None]], other: Callable[[], Awaitable[None]], stats: ForwardStats
) -> None:
    """Run both directions; the first error stops the other one."""
    async with anyio.create_task_group() as tg:

        async def run(direction: Callable[[], Awaitable[None]]) -> None:
            try:
                await direction()
            except _BROKEN as exc:
                if stats.error is None:
                    stats.error = _as_broken(exc)
                tg.cancel_scope.cancel()

        tg.start_soon(run, one)
        tg.start_soon(run, other)


def _as_broken(exc: BaseException) -> BaseException:
    """One error type for the same event on both paths and every stream: ConnectionLost."""
    if isinstance(exc, ConnectionLost | anyio.ClosedResourceError):
        return exc
    cause = exc.__cause__ if isinstance(exc, anyio.BrokenResourceError) and exc.__cause__ else exc
    lost = connection_lost(cause)
    lost.__cause__ = cause
    return lost


def _raw_socket(stream: ByteStream) -> socket.socket | None:
    try:
        sock = stream.extra(SocketAttribute.raw_socket, None)
    except Exception:  # a wrapper whose attributes fail once closed
        return None
    return sock if isinstance(sock, socket.socket) else None


def _reset_on_close(sock: socket.socket | None) -> None:
    """Make the socket's close send RST (SO_LINGER 0); a no-op when it is gone."""
    if sock is None or sock.fileno() < 0:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)


# -- portable path -------------------------------------------------------------------------
async def _half_close(stream: ByteStream) -> None:
    # TLS and some wrappers cannot half-close; the other direction keeps going
    # and everything is closed once it ends.
    with contextlib.suppress(NotImplementedError, *_BROKEN):
        await stream.send_eof()


_WRITE_SLICE = 64 * 1024


async def _send_tracked(dst: ByteStream, data: bytes, activity: _Activity) -> None:
    # A slow but steady reader is progress, not idleness: count every slice
    # written, so a large chunk draining slowly does not trip the idle timeout.
    if len(data) <= _WRITE_SLICE:
        await dst.send(data)
    else:
        view = memoryview(data)
        for start in range(0, len(view), _WRITE_SLICE):
            await dst.send(view[start : start + _WRITE_SLICE].tobytes())
            activity.touch()
    activity.touch()


async def _forward_copy(
    left: ByteStream, right: ByteStream, stats: ForwardStats, activity: _Activity
) -> None:
    async def left_to_right() -> None:
        while True:
            try:
                data = await left.receive(_CHUNK)
            except anyio.EndOfStream:
                await _half_close(right)
                return
            activity.touch()
            await _send_tracked(right, data, activity)
            stats.left_to_right += len(data)

    async def right_to_left() -> None:
        while True:
            try:
                data = await right.receive(_CHUNK)
            except anyio.EndOfStream:
                await _half_close(left)
                return
            activity.touch()
            await _send_tracked(left, data, activity)
            stats.right_to_left += len(data)

    await _both(left_to_right, right_to_left, stats)


# -- splice path ---------------------------------------------------------------------------
def _spliceable_socket(stream: ByteStream) -> socket.socket | None:
    if isinstance(stream, TrackedStream):
        inner = stream.inner
        plain = isinstance(inner, SocketStream) and not _on_asyncio_transport(inner)
    else:
        plain = isinstance(stream, ProtocolStream)
    if not plain:
        return None
    sock = stream.extra(SocketAttribute.raw_socket, None)
    if isinstance(sock, socket.socket) and sock.type == socket.SOCK_STREAM:
        return sock
    return None


def _on_asyncio_transport(stream: SocketStream) -> bool:
    # anyio's asyncio SocketStream owns its fd through a transport that may have
    # read ahead; only ProtocolStream lets us take its buffer back safely.
    return type(stream).__module__.startswith("anyio._backends._asyncio")


def _splice_pair(left: ByteStream, right: ByteStream) -> tuple[socket.socket, socket.socket] | None:
    """Duplicates of both plain sockets, or None when either stream cannot splice.

    Duplicated at once, before any await: a transport that sees a reset
    meanwhile closes its own descriptor, and ours must stay valid. A socket
    already closed (fileno -1) means the copy path, which reports it as broken.
    """
    lsock, rsock = _spliceable_socket(left), _spliceable_socket(right)
    if lsock is None or rsock is None or lsock.fileno() < 0 or rsock.fileno() < 0:
        return None
    try:
        ldup = _dup(lsock)
    except OSError as exc:
        _fd_exhausted("dup", exc)
        return None
    try:
        rdup = _dup(rsock)
    except OSError as exc:
        ldup.close()
        _fd_exhausted("dup", exc)
        return None
    return ldup, rdup


def _fd_exhausted(what: str, exc: OSError) -> None:
    _fd_warning.log(
        logging.WARNING, "zero-copy relay: %s failed (%s); using the copy loop", what, exc
    )


def _dup(sock: socket.socket) -> socket.socket:
    # The event loop forbids watching an fd a transport owns; a duplicate
    # descriptor of the same socket is a separate registration.
    dup = socket.socket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
    dup.setblocking(False)
    return dup


async def _prepare(stream: ByteStream) -> bytes:
    """Take back what the stream buffered and flush what it queued."""
    if isinstance(stream, ProtocolStream):
        pending = stream.detach_reader()
        await stream.flush()
        return pending
    return b""


async def _forward_spliced(
    left: ByteStream,
    right: ByteStream,
    pair: tuple[socket.socket, socket.socket],
    stats: ForwardStats,
    activity: _Activity,
) -> None:
    lsock, rsock = pair
    try:
        from_left, from_right = await _prepare(left), await _prepare(right)

        def add_left_to_right(n: int) -> None:
            stats.left_to_right += n

        def add_right_to_left(n: int) -> None:
            stats.right_to_left += n

        async def left_to_right() -> None:
            await _pump(lsock, rsock, from_left, activity, left, right, add_left_to_right)

        async def right_to_left() -> None:
            await _pump(rsock, lsock, from_right, activity, right, left, add_right_to_left)

        await _both(left_to_right, right_to_left, stats)
    finally:
        lsock.close()
        rsock.close()


async def _send_all(dst: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[dst.send(view) :]
        except BlockingIOError:
            await anyio.wait_writable(dst)


def _count(src: ByteStream, dst: ByteStream, n: int) -> None:
    if isinstance(src, ProtocolStream | TrackedStream):
        src.account(received=n)
    if isinstance(dst, ProtocolStream | TrackedStream):
        dst.account(sent=n)


async def _pump(
    src: socket.socket,
    dst: socket.socket,
    pending: bytes,
    activity: _Activity,
    src_stream: ByteStream,
    dst_stream: ByteStream,
    add: Callable[[int], None],
) -> None:
    """Move bytes src -> dst through a pipe until EOF, reporting each batch to ``add``.

    The pipe is taken when data arrives and given back after ``_PIPE_IDLE``
    seconds without any; without a pipe to be had this direction copies.
    Socket failures raise :class:`ConnectionLost`.
    """
    try:
        if pending:
            await _send_all(dst, pending)
            add(len(pending))
        pipe: tuple[int, int] | None = None
        try:
            while True:
                if pipe is None:
                    await anyio.wait_readable(src)  # data, EOF or an error: then a pipe
                    try:
                        pipe = _new_pipe()
                    except OSError as exc:
                        if exc.errno not in _FD_EXHAUSTED:
                            raise
                        _fd_exhausted("pipe", exc)
                        await _copy_sockets(src, dst, activity, src_stream, dst_stream, add)
                        return
                rfd, wfd = pipe
                try:
                    n = os.splice(src.fileno(), wfd, _PIPE_SIZE, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    with anyio.move_on_after(_PIPE_IDLE) as idle:
                        await anyio.wait_readable(src)
                    if idle.cancelled_caught:  # quiet direction: hold no pipe meanwhile
                        _close_pipe(pipe)
                        pipe = None
                    continue
                if n == 0:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                activity.touch()
                left = n
                while left:
                    try:
                        left -= os.splice(rfd, dst.fileno(), left, flags=_SPLICE_FLAGS)
                        activity.touch()
                    except BlockingIOError:
                        await anyio.wait_writable(dst)
                    except OSError as exc:
                        if exc.errno == errno.EAGAIN:
                            await anyio.wait_writable(dst)
                            continue
                        raise
                add(n)
                _count(src_stream, dst_stream, n)
        finally:
            if pipe is not None:
                _close_pipe(pipe)
    except OSError as exc:
        raise connection_lost(exc) from exc


def _new_pipe() -> tuple[int, int]:
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(wfd, _F_SETPIPE_SZ, _PIPE_SIZE)
    return rfd, wfd


def _close_pipe(pipe: tuple[int, int]) -> None:
    os.close(pipe[0])
    os.close(pipe[1])


async def _copy_sockets(
    src: socket.socket,
    dst: socket.socket,
    activity: _Activity,
    src_stream: ByteStream,
    dst_stream: ByteStream,
    add: Callable[[int], None],
) -> None:
    """The copy loop over the duplicated sockets, for a direction that has no pipe."""
    while True:
        try:
            data = src.recv(_CHUNK)
        except BlockingIOError:
            await anyio.wait_readable(src)
            continue
        if not data:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            return
        activity.touch()
        await _send_all(dst, data)
        activity.touch()
        add(len(data))
        _count(src_stream, dst_stream, len(data))
