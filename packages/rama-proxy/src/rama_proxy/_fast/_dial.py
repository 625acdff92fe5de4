"""A non-blocking TCP connect on the event loop's writer callback.

Addresses are tried in order (an IP literal is one; a name resolves to its
A/AAAA records first, in a task, see :class:`~rama_proxy._fast._engine.FastProxy`);
the owner's sweeper calls :meth:`Dial.expire` once :attr:`Dial.deadline`
passes. The outcome goes to ``on_done(sock, error)`` exactly once: a
connected socket (non-blocking, TCP_NODELAY), or the error of the last
attempt (an ``OSError`` with its errno, or ``TimeoutError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any, Final

__all__ = ["Dial", "SockAddr"]

SockAddr = tuple[int, tuple[Any, ...]]
"""``(family, sockaddr)`` of one address to try."""

_IN_PROGRESS: Final = frozenset({errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK})
_STREAM: Final = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)
_TCP_INFO: Final = getattr(socket, "TCP_INFO", None)
_ESTABLISHED: Final = b"\x01"  # tcpi_state, the first byte of struct tcp_info


def _established(sock: socket.socket) -> bool:
    """Whether the TCP handshake of ``sock`` is already complete (Linux ``TCP_INFO``)."""
    if _TCP_INFO is None:
        return False
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[:1] == _ESTABLISHED
    except OSError:
        return False


class Dial:
    """One connect attempt sequence; see the module docs."""

    __slots__ = ("addrs", "deadline", "done", "loop", "on_done", "sock", "started")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        addrs: Sequence[SockAddr],
        timeout: float,
        on_done: Callable[[socket.socket | None, BaseException | None], None],
    ) -> None:
        self.loop = loop
        self.addrs = list(addrs)
        self.started = loop.time()
        self.deadline = self.started + timeout
        self.on_done = on_done
        self.sock: socket.socket | None = None
        self.done = False

    def start(self) -> None:
        """Try the first address (the outcome may be reported before this returns)."""
        self._next(None)

    def _next(self, error: BaseException | None) -> None:
        while self.addrs:
            family, addr = self.addrs.pop(0)
            try:
                # non-blocking from the start (Linux): one syscall less than setblocking()
                sock = socket.socket(family, _STREAM)
            except OSError as exc:
                error = exc
                continue
            if _STREAM == socket.SOCK_STREAM:
                sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex(addr)
            if err == 0:
                self._finish(sock, None)
                return
            if err in _IN_PROGRESS:
                if _established(sock):
                    # loopback (and other local peers): the handshake completed
                    # inside connect(); no writability round trip through the loop
                    self._finish(sock, None)
                    return
                self.sock = sock
                self.loop.add_writer(sock.fileno(), self._on_writable)
                return
            sock.close()
            error = OSError(err, os.strerror(err))
        self._finish(None, error or OSError(errno.EHOSTUNREACH, "no address to connect to"))

    def _on_writable(self) -> None:
        sock = self.sock
        assert sock is not None
        self.loop.remove_writer(sock.fileno())
        self.sock = None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            self._finish(sock, None)
            return
        sock.close()
        self._next(OSError(err, os.strerror(err)))

    def _finish(self, sock: socket.socket | None, error: BaseException | None) -> None:
        self.done = True
        self.on_done(sock, error)

    def expire(self) -> None:
        """The connect timeout passed."""
        if self.done:
            return
        self.cancel()
        self._finish(None, TimeoutError("connect timed out"))

    def cancel(self) -> None:
        """Stop trying (the requester went away); ``on_done`` is not called."""
        self.done = True
        sock, self.sock = self.sock, None
        if sock is not None:
            self.loop.remove_writer(sock.fileno())
            sock.close()
