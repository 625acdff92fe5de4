"""Why an upstream could not be reached, in terms every proxy protocol can answer.

The HTTP proxy answers 502/504 with a short body naming the cause; the SOCKS5
server answers the matching reply code. Both classify the failure once, here,
from the connector's typed errors, so the two never disagree.
"""

from __future__ import annotations

import enum
import errno as _errno

from rama_core import RamaError
from rama_net import ConnectError, ConnectRefused, ResolveError
from rama_net import ConnectTimeout as NetConnectTimeout

__all__ = ["UpstreamError", "UpstreamFailure", "classify_upstream_error"]


class UpstreamFailure(enum.Enum):
    """The cause of a failed egress, with its HTTP status and SOCKS5 reply code."""

    REFUSED = ("connection refused", 502, 0x05)
    DNS = ("DNS resolution failed", 502, 0x04)
    NETWORK_UNREACHABLE = ("network unreachable", 502, 0x03)
    HOST_UNREACHABLE = ("host unreachable", 502, 0x04)
    TTL_EXPIRED = ("TTL expired", 502, 0x06)
    TIMEOUT = ("upstream timed out", 504, 0x04)
    TLS = ("TLS handshake with the upstream failed", 502, 0x01)
    PROXY = ("upstream proxy refused or failed", 502, 0x01)
    NOT_ALLOWED = ("target not allowed", 403, 0x02)
    OTHER = ("upstream connection failed", 502, 0x01)

    def __init__(self, reason: str, http_status: int, socks5_reply: int) -> None:
        self.reason = reason
        """A short phrase safe to show the client (no internals)."""
        self.http_status = http_status
        """502, 504 (timeout) or 403 (policy)."""
        self.socks5_reply = socks5_reply
        """RFC 1928 REP field."""


class UpstreamError(RamaError):
    """The egress to a target (directly or through an upstream proxy) failed."""

    def __init__(self, failure: UpstreamFailure, message: str, *, upstream: str | None = None):
        super().__init__(message)
        self.failure = failure
        self.upstream = upstream
        """The upstream proxy (URL without credentials) that was tried, if any."""


_ERRNO_FAILURES = {
    _errno.ECONNREFUSED: UpstreamFailure.REFUSED,
    _errno.ENETUNREACH: UpstreamFailure.NETWORK_UNREACHABLE,
    _errno.EHOSTUNREACH: UpstreamFailure.HOST_UNREACHABLE,
    _errno.EHOSTDOWN: UpstreamFailure.HOST_UNREACHABLE,
    _errno.ETIMEDOUT: UpstreamFailure.TIMEOUT,
}


def classify_upstream_error(exc: BaseException, *, upstream: str | None = None) -> UpstreamError:
    """Map a connector exception to an :class:`UpstreamError` (itself returned unchanged)."""
    if isinstance(exc, UpstreamError):
        return exc
    failure: UpstreamFailure
    if isinstance(exc, ResolveError):
        failure = UpstreamFailure.DNS
    elif isinstance(exc, ConnectRefused):
        failure = UpstreamFailure.REFUSED
    elif isinstance(exc, (NetConnectTimeout, TimeoutError)):
        failure = UpstreamFailure.TIMEOUT
    elif isinstance(exc, (ConnectError, OSError)) and exc.errno in _ERRNO_FAILURES:
        failure = _ERRNO_FAILURES[exc.errno]
    else:
        failure = UpstreamFailure.OTHER
    err = UpstreamError(failure, str(exc) or failure.reason, upstream=upstream)
    err.__cause__ = exc
    return err
