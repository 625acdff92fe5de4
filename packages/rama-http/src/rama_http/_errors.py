"""Typed errors of rama-http.

Every error derives from :class:`HttpError` (itself a ``RamaError``). As in
h11, protocol violations share one base, :class:`ProtocolError`, with the
side at fault below it: :class:`RemoteProtocolError` (the peer broke the
protocol; a server answers its 4xx :attr:`~HttpError.status`) and
:class:`LocalProtocolError` (we were asked to break it: a handler bug, 500).

Whose fault an error is decides the answer: an error a handler raises is a
500 logged with its traceback, unless it is one of the peer's (a
:class:`RemoteProtocolError` or a :class:`BodyError` from reading the
request), see :func:`rama_http.server.handler_failure`.
"""

from __future__ import annotations

from rama_core import RamaError

__all__ = [
    "BodyAlreadyConsumed",
    "BodyError",
    "BodyTooLarge",
    "HttpError",
    "InvalidHeader",
    "InvalidUri",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
]


class HttpError(RamaError):
    """Base class of rama-http errors."""

    status: int = 500
    """The status code a server answers with when this error reaches it."""


class ProtocolError(HttpError):
    """Base of protocol violations; catch a subclass to know whose fault it is."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the HTTP protocol (malformed message, bad framing, limit exceeded).

    ``status`` is the 4xx/5xx a server answers with (400 unless the violation has
    a more precise one: 413, 414, 431, 501, 505...).
    """

    def __init__(self, message: str = "", *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class LocalProtocolError(ProtocolError):
    """We (the local side) were asked to break the protocol, e.g. a body longer than its length."""

    status = 500


class InvalidUri(HttpError, ValueError):
    """A URI could not be parsed or built.

    Raised by our own code (a handler building a bad URI) it is a 500; servers
    turn a peer's unparsable request target into a :class:`RemoteProtocolError`.
    """

    status = 500


class InvalidHeader(HttpError, ValueError):
    """A header name or value contains bytes HTTP does not allow.

    Raised by our own code (a handler building ``{"X-Bad": "a\\r\\nb"}``) it is a
    500; servers reject a peer's bad header with a :class:`RemoteProtocolError`.
    """

    status = 500


class BodyError(HttpError):
    """Reading a request body failed on the peer's side (bad framing, bad encoding).

    Its 4xx ``status`` is the answer when it escapes a handler that was reading it.
    """

    status = 400


class BodyTooLarge(BodyError):
    """A body is larger than the limit it was read with."""

    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"body exceeds the limit of {limit} bytes")
        self.limit = limit


class BodyAlreadyConsumed(BodyError):
    """A streaming body can be iterated once; it was already consumed."""

    status = 500
