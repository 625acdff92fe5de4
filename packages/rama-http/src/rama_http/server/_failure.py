"""What a server answers and logs when a handler fails: one policy for every version.

Whose fault it is decides both. The peer's faults (a :class:`RemoteProtocolError`
or :class:`BodyError` raised while the handler read the request) get their 4xx
and a DEBUG line. Expected events get their status and an INFO line without a
traceback: :class:`ServiceTimeout` is 504, :class:`Overloaded` is 503 with
``Retry-After`` (a limit rejecting requests under load must not flood the log
with tracebacks). Everything else is ours (a bug, an invalid header the handler
built): 500, logged once at ERROR with its traceback.

Answers carry the reason phrase only, never ``str(exc)``: internals (paths,
hostnames, values) must not reach the peer.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from rama_core import Overloaded, ServiceTimeout

from .._errors import BodyError, RemoteProtocolError
from .._message import Response

__all__ = ["HandlerFailure", "handler_failure", "log_handler_failure"]


@dataclass(frozen=True, slots=True)
class HandlerFailure:
    """The answer to a failed handler and how loudly to log it."""

    status: int
    """The status to answer with (when no response has started yet)."""
    level: int
    """The ``logging`` level of the one log line."""
    traceback: bool
    """Whether that line carries the traceback (only for our own faults)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra response headers (``Retry-After`` for 503)."""

    def response(self) -> Response:
        """A plain-text answer with the reason phrase as its body."""
        resp = Response.error(self.status)
        for name, value in self.headers:
            resp.headers.set(name, value)
        return resp


def _peer_status(exc: BaseException) -> int | None:
    if isinstance(exc, RemoteProtocolError | BodyError):
        status = exc.status
        return status if 400 <= status < 600 else 400
    return None


def handler_failure(exc: BaseException) -> HandlerFailure:
    """Classify an exception that escaped a handler (see the module docstring)."""
    status = _peer_status(exc)
    if status is not None:
        return HandlerFailure(status, logging.DEBUG, False)
    if isinstance(exc, ServiceTimeout):
        return HandlerFailure(504, logging.INFO, False)
    if isinstance(exc, Overloaded):
        headers: tuple[tuple[str, str], ...] = ()
        if exc.retry_after is not None:
            headers = (("Retry-After", str(max(0, math.ceil(exc.retry_after)))),)
        return HandlerFailure(503, logging.INFO, False, headers)
    return HandlerFailure(500, logging.ERROR, True)


def log_handler_failure(
    log: logging.Logger, failure: HandlerFailure, exc: BaseException, method: str, target: str
) -> None:
    """Log a failed request once, at the failure's level."""
    if not log.isEnabledFor(failure.level):
        return
    if failure.traceback:
        log.log(failure.level, "HTTP handler failed for %s %s", method, target, exc_info=exc)
    else:
        log.log(
            failure.level,
            "%s %s answered %d: %s",
            method,
            target,
            failure.status,
            exc,
        )
