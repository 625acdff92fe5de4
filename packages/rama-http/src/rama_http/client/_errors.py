"""Typed errors of the HTTP client; names follow httpx where a user expects them.

Every error is a :class:`~rama_http.HttpError`. A peer's broken HTTP is
:class:`~rama_http.RemoteProtocolError` (from the engines); the rest are here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._errors import HttpError

if TYPE_CHECKING:
    from ._response import ClientResponse

__all__ = [
    "ConnectError",
    "ConnectTimeout",
    "HTTPStatusError",
    "NetworkError",
    "PoolTimeout",
    "ProxyError",
    "ReadError",
    "ReadTimeout",
    "TimeoutException",
    "TooManyRedirects",
    "TotalTimeout",
    "WriteError",
    "WriteTimeout",
]


class TimeoutException(HttpError, TimeoutError):
    """A client timeout fired; the subclass says which one."""

    status = 504


class ConnectTimeout(TimeoutException):
    """Opening the connection (TCP, proxy tunnel, TLS handshake) took too long."""


class ReadTimeout(TimeoutException):
    """The server sent nothing for ``Timeout.read`` seconds."""


class WriteTimeout(TimeoutException):
    """Sending the request stalled for ``Timeout.write`` seconds."""


class PoolTimeout(TimeoutException):
    """No connection of the pool became free within ``Timeout.pool`` seconds."""


class TotalTimeout(TimeoutException):
    """The whole exchange (redirects and retries included) exceeded ``Timeout.total``."""


class NetworkError(HttpError):
    """The connection failed under the exchange."""

    status = 502


class ConnectError(NetworkError):
    """The connection could not be opened (refused, DNS, TLS handshake, certificate)."""


class ProxyError(ConnectError):
    """The proxy refused or failed to open the tunnel."""


class ReadError(NetworkError):
    """The connection broke while receiving the response."""


class WriteError(NetworkError):
    """The connection broke while sending the request."""


class TooManyRedirects(HttpError):
    """More redirects than the policy allows."""

    status = 502


class HTTPStatusError(HttpError):
    """Raised by :meth:`ClientResponse.raise_for_status` for a 4xx or 5xx answer."""

    status = 502

    def __init__(self, message: str, *, response: ClientResponse) -> None:
        super().__init__(message)
        self.response = response
