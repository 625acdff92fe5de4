"""One access-log line per request: Common, Combined or JSON Lines.

The line is written when the response body has been sent (so the byte count
and the duration are real), through :mod:`logging` (logger
``rama.http.access`` at INFO by default) or any ``write(str)`` callable.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Literal

import anyio

from rama_core import Context, Service
from rama_net import SocketInfo

from .._message import Request, Response
from ._counting import counted_body

__all__ = ["AccessLog", "AccessLogLayer"]

HttpService = Service[Request, Response]
Format = Literal["common", "combined", "json"]
_log = logging.getLogger("rama.http.access")


def _clf_time(ts: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(ts))


def _quote(value: str | None) -> str:
    if value is None:
        return "-"
    return value.replace("\\", "\\\\").replace('"', '\\"')


class AccessLog:
    """``inner`` with one access record per request."""

    __slots__ = ("format", "inner", "write")

    def __init__(
        self, inner: HttpService, *, format: Format = "combined", write: Callable[[str], object]
    ) -> None:
        self.inner = inner
        self.format = format
        self.write = write

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Serve; log when the answer has been sent."""
        started = anyio.current_time()
        wall = time.time()
        info = ctx.get(SocketInfo)
        client = str(info.peer_addr.ip) if info is not None else "-"
        try:
            resp = await self.inner.serve(ctx, req)
        except BaseException as e:
            self._emit(req, client, wall, started, 500, 0, e, ctx)
            raise

        def done(sent: int, error: BaseException | None) -> None:
            self._emit(req, client, wall, started, resp.status, sent, error, ctx)

        resp.body = counted_body(resp.body, done)
        return resp

    def _emit(
        self,
        req: Request,
        client: str,
        wall: float,
        started: float,
        status: int,
        sent: int,
        error: BaseException | None,
        ctx: Context,
    ) -> None:
        duration = anyio.current_time() - started
        user = _user_of(ctx)
        if self.format == "json":
            record = {
                "ts": round(wall, 6),
                "client": client,
                "user": user,
                "method": req.method,
                "target": req.target,
                "version": str(req.version),
                "status": status,
                "bytes": sent,
                "duration": round(duration, 6),
                "referer": req.headers.get("referer"),
                "user_agent": req.headers.get("user-agent"),
                "error": type(error).__name__ if error is not None else None,
            }
            line = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        else:
            line = (
                f"{client} - {user or '-'} [{_clf_time(wall)}] "
                f'"{_quote(req.method)} {_quote(req.target)} {req.version}" {status} '
                f"{sent if sent else '-'}"
            )
            if self.format == "combined":
                line += (
                    f' "{_quote(req.headers.get("referer"))}"'
                    f' "{_quote(req.headers.get("user-agent"))}"'
                )
        self.write(line)


def _user_of(ctx: Context) -> str | None:
    from ._auth import AuthenticatedUser

    user = ctx.get(AuthenticatedUser)
    return user.name if user is not None else None


class AccessLogLayer:
    """``AccessLogLayer("json", write=print)``; default: the ``rama.http.access`` logger."""

    __slots__ = ("format", "write")

    def __init__(
        self, format: Format = "combined", *, write: Callable[[str], object] | None = None
    ) -> None:
        if format not in ("common", "combined", "json"):
            raise ValueError(f"unknown access log format {format!r}")
        self.format: Format = format
        self.write: Callable[[str], object] = write or (lambda line: _log.info("%s", line))

    def layer(self, inner: HttpService) -> AccessLog:
        """Wrap ``inner``."""
        return AccessLog(inner, format=self.format, write=self.write)
