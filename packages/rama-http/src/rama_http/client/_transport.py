"""The bottom Service of the client: absolute-form Request -> Response through the pool."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Final, Literal

from rama_core import Context

from .._message import Request, Response
from .._uri import UriForm
from ._connect import PoolKey, ProxyConfig
from ._connection import NoResponse
from ._pool import ConnectionPool
from ._timeout import Timeout

__all__ = ["IDEMPOTENT_METHODS", "PoolTransport", "ProxyChooser", "ProxyMode", "is_replayable"]

ProxyChooser = Callable[[str, str, int], "ProxyConfig | None"]
"""``(scheme, host, port) -> proxy or None`` (e.g. :meth:`EnvProxies.proxy_for`)."""
ProxyMode = Literal["tunnel", "forward"]
"""How an ``http://`` target goes through an ``http://`` proxy (``https://`` always tunnels)."""

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""RFC 9110 section 9.2.2: safe to send twice."""


def is_replayable(request: Request) -> bool:
    """Whether the body can be sent again (in memory, not a one-shot stream)."""
    return request.body.bytes_now() is not None


class PoolTransport:
    """``Request -> Response``: the request's absolute URI picks the pooled connection.

    The target goes out in origin-form (absolute-form to a forwarding proxy).
    The proxy is :attr:`proxy`, else what ``proxy_for(scheme, host, port)``
    picks per request (environment proxies), else none. With
    ``proxy_mode="forward"`` an ``http://`` target through an ``http://``
    proxy is sent to the proxy as ``GET http://host/path HTTP/1.1`` on
    connections pooled per proxy; ``https://`` targets (and every target with
    the default ``"tunnel"``) go through a CONNECT tunnel (or the proxy
    connector). Timeouts come from a :class:`Timeout` in the Context, else
    :attr:`timeout`. An idempotent request with a
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
        proxy_for: ProxyChooser | None = None,
        proxy_mode: ProxyMode = "tunnel",
    ) -> None:
        if proxy_mode not in ("tunnel", "forward"):
            raise ValueError("proxy_mode must be 'tunnel' or 'forward'")
        self.pool = pool
        self.proxy = proxy
        self.proxy_for = proxy_for
        """Picks the proxy per request when :attr:`proxy` is None (None: direct)."""
        self.proxy_mode: ProxyMode = proxy_mode
        self.tls_key = tls_key
        self.emulation = emulation
        self.timeout = timeout or Timeout()

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Send ``req`` and return the response with its body still streaming."""
        timeout = ctx.get(Timeout) or self.timeout
        uri = req.uri
        if uri.form is not UriForm.ABSOLUTE:
            raise ValueError(f"the client needs an absolute URL, got {req.target!r}")
        proxy = self.proxy
        if proxy is None and self.proxy_for is not None and uri.host is not None:
            scheme = uri.scheme or "http"
            port = uri.effective_port or (443 if scheme == "https" else 80)
            proxy = self.proxy_for(scheme, uri.host.lower(), port)
        target = uri.path_and_query
        if (
            proxy is not None
            and self.proxy_mode == "forward"
            and uri.scheme == "http"
            and (proxy.uri.scheme or "http") == "http"
        ):
            key = PoolKey.for_forward_proxy(proxy, emulation=self.emulation)
            target = f"http://{uri.authority}{target}"
        else:
            key = PoolKey.for_uri(uri, proxy=proxy, tls=self.tls_key, emulation=self.emulation)
        out = Request._trusted(req.method, target, req.headers, req.body, req.version)
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
