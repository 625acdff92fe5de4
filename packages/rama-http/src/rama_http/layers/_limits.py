"""Body size limit, handler failures into answers, per-client rate limit, and hooks."""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable

import anyio

from rama_core import Context, Service
from rama_net import SocketInfo

from .._body import Body
from .._errors import BodyTooLarge
from .._message import Request, Response
from ..server._failure import handler_failure, log_handler_failure

__all__ = [
    "BodyLimit",
    "BodyLimitLayer",
    "CatchFailure",
    "CatchFailureLayer",
    "Hook",
    "HookLayer",
    "RateLimit",
    "RateLimitLayer",
    "client_ip_key",
]

HttpService = Service[Request, Response]
_log = logging.getLogger("rama.http.handler")


# -- body limit ---------------------------------------------------------------------------------
async def _limited(body: Body, limit: int) -> AsyncIterator[bytes]:
    seen = 0
    try:
        async for chunk in body:
            seen += len(chunk)
            if seen > limit:
                raise BodyTooLarge(limit)
            yield chunk
    finally:
        await body.aclose()


class BodyLimit:
    """413 for a request body over ``limit`` bytes (at once by Content-Length, else as read)."""

    __slots__ = ("inner", "limit")

    def __init__(self, inner: HttpService, limit: int) -> None:
        self.inner = inner
        self.limit = limit

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Refuse or bound the body, then serve."""
        length = req.body.length
        if length is not None and length > self.limit:
            return Response.error(413, f"request body over {self.limit} bytes")
        if length is None:
            req.body = Body.from_iter(_limited(req.body, self.limit))
        return await self.inner.serve(ctx, req)


class BodyLimitLayer:
    """Layer producing :class:`BodyLimit`."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self.limit = limit

    def layer(self, inner: HttpService) -> BodyLimit:
        """Wrap ``inner``."""
        return BodyLimit(inner, self.limit)


# -- failures -----------------------------------------------------------------------------------
class CatchFailure:
    """A handler exception becomes its answer here (500 without internals; peer errors
    their 4xx; timeouts 504; overload 503), logged once, so outer layers see a response."""

    __slots__ = ("inner",)

    def __init__(self, inner: HttpService) -> None:
        self.inner = inner

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Serve; turn an exception into the server's answer for it."""
        try:
            return await self.inner.serve(ctx, req)
        except Exception as exc:
            failure = handler_failure(exc)
            log_handler_failure(_log, failure, exc, req.method, req.target)
            return failure.response()


class CatchFailureLayer:
    """Layer producing :class:`CatchFailure`."""

    __slots__ = ()

    def layer(self, inner: HttpService) -> CatchFailure:
        """Wrap ``inner``."""
        return CatchFailure(inner)


# -- rate limit ---------------------------------------------------------------------------------
KeyFn = Callable[[Context, Request], Hashable | None]


def client_ip_key(ctx: Context, req: Request) -> Hashable | None:
    """The client's IP address (from the connection's SocketInfo)."""
    info = ctx.get(SocketInfo)
    return str(info.peer_addr.ip) if info is not None else None


class RateLimit:
    """A token bucket per client key; over the rate -> 429 with ``Retry-After``."""

    __slots__ = ("_buckets", "burst", "inner", "key", "max_keys", "rate")

    def __init__(
        self, inner: HttpService, *, rate: float, burst: int, key: KeyFn, max_keys: int
    ) -> None:
        self.inner = inner
        self.rate = rate
        self.burst = burst
        self.key = key
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def _take(self, key: Hashable) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        now = anyio.current_time()
        tokens, stamp = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - stamp) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)  # the least recently seen client
        return wait

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Serve within the rate, else 429."""
        key = self.key(ctx, req)
        if key is not None:
            wait = self._take(key)
            if wait > 0:
                return Response(
                    429,
                    headers=[("Retry-After", str(max(1, math.ceil(wait))))],
                    body=b"too many requests\n",
                )
        return await self.inner.serve(ctx, req)


class RateLimitLayer:
    """``RateLimitLayer(rate=10, burst=20)``: per client IP by default; ``key`` picks another."""

    __slots__ = ("burst", "key", "max_keys", "rate")

    def __init__(
        self,
        *,
        rate: float,
        burst: int | None = None,
        key: KeyFn = client_ip_key,
        max_keys: int = 100_000,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        """Requests per second refilled per key."""
        self.burst = burst if burst is not None else max(1, math.ceil(rate))
        self.key = key
        """Returns the client key; None exempts the request."""
        self.max_keys = max_keys
        """Keys tracked at most (the least recent are forgotten)."""

    def layer(self, inner: HttpService) -> RateLimit:
        """Wrap ``inner``."""
        return RateLimit(
            inner, rate=self.rate, burst=self.burst, key=self.key, max_keys=self.max_keys
        )


# -- hooks --------------------------------------------------------------------------------------
RequestHook = Callable[[Context, Request], Awaitable[Request | Response | None]]
ResponseHook = Callable[[Context, Request, Response], Awaitable[Response | None]]


class Hook:
    """Inspect or rewrite: ``on_request`` may return a new Request or answer directly;
    ``on_response`` may return a replacement Response."""

    __slots__ = ("inner", "on_request", "on_response")

    def __init__(
        self,
        inner: HttpService,
        on_request: RequestHook | None,
        on_response: ResponseHook | None,
    ) -> None:
        self.inner = inner
        self.on_request = on_request
        self.on_response = on_response

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Run the hooks around ``inner``."""
        if self.on_request is not None:
            out = await self.on_request(ctx, req)
            if isinstance(out, Response):
                return out
            if out is not None:
                req = out
        resp = await self.inner.serve(ctx, req)
        if self.on_response is not None:
            replaced = await self.on_response(ctx, req, resp)
            if replaced is not None:
                resp = replaced
        return resp


class HookLayer:
    """Layer producing :class:`Hook`."""

    __slots__ = ("on_request", "on_response")

    def __init__(
        self,
        *,
        on_request: RequestHook | None = None,
        on_response: ResponseHook | None = None,
    ) -> None:
        self.on_request = on_request
        self.on_response = on_response

    def layer(self, inner: HttpService) -> Hook:
        """Wrap ``inner``."""
        return Hook(inner, self.on_request, self.on_response)
