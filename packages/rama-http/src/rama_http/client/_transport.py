"""The bottom Service of the client: absolute-form Request -> Response through the pool."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final

from rama_core import Context

from .._message import Request, Response
from .._uri import UriForm
from ._connect import PoolKey, ProxyConfig
from ._connection import NoResponse
from ._pool import ConnectionPool
from ._timeout import Timeout

__all__ = ["IDEMPOTENT_METHODS", "PoolTransport", "is_replayable"]

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""RFC 9110 section 9.2.2: safe to send twice."""


def is_replayable(request: Request) -> bool:
    """Whether the body can be sent again (in memory, not a one-shot stream)."""
    return request.body.bytes_now() is not None


class PoolTransport:
    """``Request -> Response``: the request's absolute URI picks the pooled connection.

    The target goes out in origin-form. Timeouts come from a :class:`Timeout`
    in the Context, else :attr:`timeout`. An idempotent request with a
    replayable body that fails on a reused connection before any response
    byte is retried once on a fresh connection.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        proxy: ProxyConfig | None = None,
        tls_key: Hashable | None = None,
        emulation: Hashable | None = None,
        timeout: Timeout | None = None,
    ) -> None:
        self.pool = pool
        self.proxy = proxy
        self.tls_key = tls_key
        self.emulation = emulation
        self.timeout = timeout or Timeout()

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Send ``req`` and return the response with its body still streaming."""
        timeout = ctx.get(Timeout) or self.timeout
        uri = req.uri
        if uri.form is not UriForm.ABSOLUTE:
            raise ValueError(f"the client needs an absolute URL, got {req.target!r}")
        key = PoolKey.for_uri(uri, proxy=self.proxy, tls=self.tls_key, emulation=self.emulation)
        out = Request._trusted(req.method, uri.path_and_query, req.headers, req.body, req.version)
        fresh = False
        while True:
            conn = await self.pool.acquire(
                ctx, key, pool_timeout=timeout.pool, connect_timeout=timeout.connect, fresh=fresh
            )
            try:
                return await conn.send(out, timeout)
            except NoResponse as e:
                if fresh or req.method not in IDEMPOTENT_METHODS or not is_replayable(req):
                    raise e.error from e.__cause__
                fresh = True
