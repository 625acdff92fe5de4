"""A tunnel between two sockets driven by the event loop's readiness callbacks.

No task and no await per chunk: each direction is a :class:`_Flow` whose
reader callback moves what is readable to the other socket. Bytes are copied
through Python (one ``recv`` and one ``send``) until a direction has moved
``SPLICE_AFTER`` bytes; from then on it moves them with ``os.splice``
through a kernel pipe, so a bulk transfer never enters Python. A quiet
direction gives its pipe back (see :meth:`Tunnel.sweep`).

Semantics are those of :func:`rama_net.forward`: EOF one way is passed on as
a half-close and the other way keeps going; the tunnel ends when both ways
are done, when either side fails (the other is then reset, SO_LINGER 0, so a
relayed peer sees the truncation), or after ``idle_timeout`` without a byte.
Backpressure: a direction whose destination does not take everything stops
reading its source until the rest has gone out.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import socket
import struct
import sys
from collections.abc import Callable
from typing import Final

__all__ = ["SPLICE_AFTER", "Tunnel"]

_log = logging.getLogger("rama.proxy.http")
_CHUNK: Final = 256 * 1024
SPLICE_AFTER: Final = 1024 * 1024
"""Bytes a direction copies through Python before it switches to splice."""
_PIPE_SIZE: Final = 1024 * 1024
_PIPE_IDLE: Final = 2.0
_F_SETPIPE_SZ: Final = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_SPLICE_FLAGS: Final = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_CAN_SPLICE: Final = sys.platform.startswith("linux") and hasattr(os, "splice")
_LINGER_RESET: Final = struct.pack("ii", 1, 0)
_AGAIN: Final = (BlockingIOError, InterruptedError)


class _Flow:
    """One direction of a tunnel: ``src`` -> ``dst``."""

    __slots__ = (
        "dfd",
        "done",
        "dst",
        "eof",
        "in_pipe",
        "last",
        "moved",
        "pending",
        "pipe",
        "sfd",
        "src",
        "tunnel",
    )

    def __init__(self, tunnel: Tunnel, src: socket.socket, dst: socket.socket) -> None:
        self.tunnel = tunnel
        self.src = src
        self.dst = dst
        self.sfd = src.fileno()
        self.dfd = dst.fileno()
        self.pending = b""
        self.eof = False
        self.done = False
        self.moved = 0
        self.pipe: tuple[int, int] | None = None
        self.in_pipe = 0
        self.last = 0.0

    # -- copying ---------------------------------------------------------------------------
    def on_readable(self) -> None:
        try:
            self._readable()
        except Exception as exc:
            self.tunnel.internal_error(exc)

    def on_writable(self) -> None:
        try:
            self._writable()
        except Exception as exc:
            self.tunnel.internal_error(exc)

    def _readable(self) -> None:
        if self.pipe is not None:
            self._splice_in()
            return
        try:
            data = self.src.recv(_CHUNK)
        except _AGAIN:
            return
        except OSError as exc:
            self.tunnel.fail(exc)
            return
        if not data:
            self._eof()
            return
        tunnel = self.tunnel
        tunnel.touch()
        self.moved += len(data)
        try:
            n = self.dst.send(data)
        except _AGAIN:
            n = 0
        except OSError as exc:
            tunnel.fail(exc)
            return
        if n < len(data):
            self.pending = data[n:]
            loop = tunnel.loop
            loop.remove_reader(self.sfd)
            loop.add_writer(self.dfd, self.on_writable)
        elif self.moved >= SPLICE_AFTER and _CAN_SPLICE:
            self._take_pipe()

    def _writable(self) -> None:
        tunnel = self.tunnel
        if self.in_pipe:
            if self._drain_pipe() and not tunnel.ended:
                tunnel.loop.remove_writer(self.dfd)
                if not self.eof:
                    tunnel.loop.add_reader(self.sfd, self.on_readable)
            return
        try:
            n = self.dst.send(self.pending)
        except _AGAIN:
            return
        except OSError as exc:
            tunnel.fail(exc)
            return
        tunnel.touch()
        self.pending = self.pending[n:]
        if self.pending:
            return
        loop = tunnel.loop
        loop.remove_writer(self.dfd)
        if self.eof:
            self._finish()
        else:
            loop.add_reader(self.sfd, self.on_readable)

    def start(self, early: bytes) -> None:
        """Begin relaying; ``early`` goes to ``dst`` first (bytes read ahead from ``src``)."""
        loop = self.tunnel.loop
        if early:
            self.pending = early
            self.moved += len(early)
            loop.add_writer(self.dfd, self.on_writable)
        else:
            loop.add_reader(self.sfd, self.on_readable)

    def _eof(self) -> None:
        self.tunnel.loop.remove_reader(self.sfd)
        self.eof = True
        if not self.pending and not self.in_pipe:
            self._finish()

    def _finish(self) -> None:
        self.done = True
        self._release_pipe()
        tunnel = self.tunnel
        if tunnel.up.done and tunnel.down.done:
            tunnel.flow_done()  # both ways at EOF: closing sends the FIN
            return
        with contextlib.suppress(OSError):
            self.dst.shutdown(socket.SHUT_WR)
        tunnel.flow_done()

    # -- splicing --------------------------------------------------------------------------
    def _take_pipe(self) -> None:
        try:
            rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return  # out of descriptors: keep copying
        with contextlib.suppress(OSError):
            fcntl.fcntl(wfd, _F_SETPIPE_SZ, _PIPE_SIZE)
        self.pipe = (rfd, wfd)
        self.last = self.tunnel.loop.time()

    def _release_pipe(self) -> None:
        pipe = self.pipe
        if pipe is not None:
            self.pipe = None
            self.in_pipe = 0
            os.close(pipe[0])
            os.close(pipe[1])

    def release_idle_pipe(self, now: float) -> None:
        """Give the pipe back if this direction was quiet for a while."""
        if self.pipe is not None and not self.in_pipe and now - self.last > _PIPE_IDLE:
            self._release_pipe()

    def _splice_in(self) -> None:
        assert self.pipe is not None
        try:
            n = os.splice(self.sfd, self.pipe[1], _PIPE_SIZE, flags=_SPLICE_FLAGS)
        except _AGAIN:
            return
        except OSError as exc:
            self.tunnel.fail(exc)
            return
        if n == 0:
            self._eof()
            return
        tunnel = self.tunnel
        tunnel.touch()
        self.last = tunnel.now
        self.moved += n
        self.in_pipe = n
        if not self._drain_pipe():
            tunnel.loop.remove_reader(self.sfd)
            tunnel.loop.add_writer(self.dfd, self.on_writable)

    def _drain_pipe(self) -> bool:
        """Move the pipe's bytes to ``dst``; False when ``dst`` is full (wait for writable)."""
        assert self.pipe is not None
        rfd = self.pipe[0]
        while self.in_pipe:
            try:
                self.in_pipe -= os.splice(rfd, self.dfd, self.in_pipe, flags=_SPLICE_FLAGS)
            except _AGAIN:
                return False
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    return False
                self.tunnel.fail(exc)
                return False
        if self.eof:
            self._finish()
        return True


class Tunnel:
    """Relay between ``client`` and ``upstream`` until both directions end.

    ``on_end(tunnel)`` is called once when it has ended and both sockets are
    closed; :attr:`error` (what failed, if anything) and :attr:`timed_out` say how.
    :attr:`deadline` is the loop time after which the owner's sweeper calls
    :meth:`expire`.
    """

    __slots__ = (
        "deadline",
        "down",
        "ended",
        "error",
        "idle_timeout",
        "loop",
        "now",
        "on_end",
        "timed_out",
        "up",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: socket.socket,
        upstream: socket.socket,
        idle_timeout: float | None,
        on_end: Callable[[Tunnel], None],
    ) -> None:
        self.loop = loop
        self.up = _Flow(self, client, upstream)
        self.down = _Flow(self, upstream, client)
        self.idle_timeout = idle_timeout if idle_timeout is not None else float("inf")
        self.now = loop.time()
        self.deadline = self.now + self.idle_timeout
        self.on_end = on_end
        self.error: BaseException | None = None
        self.timed_out = False
        self.ended = False

    @property
    def bytes_up(self) -> int:
        """Bytes moved client -> upstream."""
        return self.up.moved

    @property
    def bytes_down(self) -> int:
        """Bytes moved upstream -> client."""
        return self.down.moved

    def start(self, early: bytes = b"", reply: bytes = b"") -> None:
        """Begin relaying. ``early``: client bytes read ahead, sent upstream first;
        ``reply``: the rest of our own answer to the client (not counted as moved)."""
        self.up.start(early)
        self.down.start(reply)
        self.down.moved -= len(reply)

    def touch(self) -> None:
        self.now = now = self.loop.time()
        self.deadline = now + self.idle_timeout

    def flow_done(self) -> None:
        if self.up.done and self.down.done:
            self._end()

    def fail(self, exc: BaseException) -> None:
        """One side broke: reset the other one and end."""
        if self.ended:
            return
        self.error = exc
        for sock in (self.up.src, self.up.dst):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self._end()

    def internal_error(self, exc: BaseException) -> None:
        """A bug of ours in a callback: logged once with its traceback; the tunnel ends."""
        _log.error("fast path: tunnel failed", exc_info=exc)
        self.fail(exc)

    def expire(self) -> None:
        """The idle timeout passed: close both sides."""
        self.timed_out = True
        self._end()

    def sweep(self, now: float) -> None:
        """Periodic upkeep: give back the pipes of quiet directions."""
        self.up.release_idle_pipe(now)
        self.down.release_idle_pipe(now)

    def abort(self) -> None:
        """Close both sides now (shutdown's drain bound)."""
        self._end()

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        loop = self.loop
        for flow in (self.up, self.down):
            flow._release_pipe()
            if not flow.eof:
                loop.remove_reader(flow.sfd)
            if flow.pending or flow.in_pipe or not flow.done:
                loop.remove_writer(flow.dfd)
        self.up.src.close()
        self.up.dst.close()
        self.on_end(self)
