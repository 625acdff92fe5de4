"""Errors at the stream boundary.

Every rama stream (:class:`~rama_net.ProtocolStream`, :class:`~rama_net.TrackedStream`,
rama_tls's TLS stream) raises :class:`ConnectionLost` when the connection fails
under it: the peer reset it, a write hit a broken pipe, the socket errored. Code
above the stream catches this one type instead of anyio's
``BrokenResourceError``, ``ClosedResourceError`` and ``OSError`` (it subclasses
``BrokenResourceError``, so code written against anyio keeps working). A clean
EOF is still :class:`anyio.EndOfStream`; using a stream we closed ourselves is
still :class:`anyio.ClosedResourceError`, a bug rather than an event.
"""

from __future__ import annotations

import anyio

from rama_core import RamaError

__all__ = ["BindError", "ConnectionLost", "connection_lost"]


class ConnectionLost(RamaError, anyio.BrokenResourceError):
    """The connection failed under a stream (reset, broken pipe, socket error)."""


def connection_lost(cause: BaseException | None, what: str = "connection lost") -> ConnectionLost:
    """A :class:`ConnectionLost` describing ``cause`` (chain it with ``raise ... from cause``)."""
    if cause is None:
        return ConnectionLost(what)
    detail = str(cause) or type(cause).__name__
    return ConnectionLost(f"{what}: {detail}")


class BindError(RamaError, OSError):
    """A listening socket could not be bound; the message names the address.

    An :class:`OSError` too, with the cause's ``errno`` and ``strerror``, so
    ``except OSError`` and ``exc.errno == errno.EADDRINUSE`` keep working::

        cannot bind 127.0.0.1:80: [Errno 13] Permission denied
    """

    def __init__(self, address: str, cause: OSError) -> None:
        super().__init__(f"cannot bind {address}: {cause}")
        self.address = address
        """The address (``host:port``) that could not be bound."""
        self.errno = cause.errno
        self.strerror = cause.strerror
