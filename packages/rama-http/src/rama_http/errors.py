"""Typed errors of rama-http.

Every error derives from :class:`HttpError` (itself a ``RamaError``). Errors a
server answers with a status code carry it in :attr:`HttpError.status`.
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
]


class HttpError(RamaError):
    """Base class of rama-http errors."""

    status: int = 500
    """The status code a server answers with when this error reaches it."""


class ProtocolError(HttpError):
    """The peer broke the HTTP protocol (malformed message, bad framing, limit exceeded)."""

    def __init__(self, message: str = "", *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class LocalProtocolError(HttpError):
    """We (the local side) tried to break the protocol, e.g. a body longer than its length."""

    status = 500


class InvalidUri(HttpError, ValueError):
    """A request target or URI could not be parsed."""

    status = 400


class InvalidHeader(HttpError, ValueError):
    """A header name or value contains bytes HTTP does not allow."""

    status = 400


class BodyError(HttpError):
    """Reading or writing a body failed (peer went away, bad framing)."""

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
