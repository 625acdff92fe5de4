"""Egress: reach a target directly or through an upstream proxy chosen per request.

Every proxy service (CONNECT tunnels, SOCKS5 CONNECT, the forward proxy's
client) gets its upstream connection from here:

- an :class:`UpstreamSelector` picks the upstream proxy candidates for the
  request (static ``--upstream URL``, or the proxy DB filtered by the user's
  labels); none means direct;
- :class:`ProxyConnectors` opens the tunnel through a candidate by its URL
  scheme (``http``: CONNECT; ``https``: TLS then CONNECT; ``socks5``/``socks5h``);
- :class:`Egress` tries the candidates in order, reports each outcome back to
  the selector (its failure backoff) and classifies the final failure as an
  :class:`UpstreamError`, so every protocol answers the same cause.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import anyio
from anyio.abc import ByteStream

from rama_core import Context, Service
from rama_http.client import (
    HttpConnectProxyConnector,
    ProxyConfig,
    ProxyConnector,
    ProxyError,
    ProxyRequest,
)
from rama_net import Authority, EstablishedConnection, SocketAddress, TcpConnector

from ._errors import UpstreamError, UpstreamFailure, classify_upstream_error
from ._record import ProxyRecord

__all__ = [
    "Egress",
    "EgressConnection",
    "NoUpstream",
    "ProxyConnectors",
    "StaticUpstream",
    "UpstreamSelector",
    "default_proxy_connectors",
    "redact_proxy_url",
]


def redact_proxy_url(url: str) -> str:
    """The proxy URL without its credentials (for logs and access records)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


class UpstreamSelector(Protocol):
    """Chooses the upstream proxies to try for one request, best first."""

    async def select(self, ctx: Context, target: Authority) -> Sequence[ProxyConfig]:
        """Candidates in order; empty means connect directly.

        The Context carries the :class:`~rama_proxy.ProxyUser` (with its label
        filter) when the client authenticated. Raise :class:`UpstreamError`
        (``UpstreamFailure.NOT_ALLOWED``) when no upstream may serve the request.
        """
        ...

    def report(self, upstream: ProxyConfig, ok: bool) -> None:
        """The outcome of trying ``upstream`` (failure backoff, health)."""
        ...


class NoUpstream:
    """Always direct."""

    async def select(self, ctx: Context, target: Authority) -> Sequence[ProxyConfig]:
        """No candidates."""
        return ()

    def report(self, upstream: ProxyConfig, ok: bool) -> None:
        """Nothing to track."""


class StaticUpstream:
    """One fixed upstream proxy (``--upstream URL``) for every request."""

    def __init__(self, url: str | ProxyConfig) -> None:
        self.upstream = ProxyConfig(url) if isinstance(url, str) else url

    async def select(self, ctx: Context, target: Authority) -> Sequence[ProxyConfig]:
        """The one upstream."""
        return (self.upstream,)

    def report(self, upstream: ProxyConfig, ok: bool) -> None:
        """Nothing to track."""


class ProxyConnectors:
    """A :class:`ProxyConnector` that dispatches on the proxy URL's scheme."""

    def __init__(self, connectors: Mapping[str, ProxyConnector] | None = None) -> None:
        self.connectors: dict[str, ProxyConnector] = dict(connectors or {})

    def register(self, scheme: str, connector: ProxyConnector) -> None:
        """Use ``connector`` for proxies whose URL has ``scheme``."""
        self.connectors[scheme.lower()] = connector

    @property
    def schemes(self) -> frozenset[str]:
        """The proxy URL schemes this instance can tunnel through."""
        return frozenset(self.connectors)

    async def serve(self, ctx: Context, req: ProxyRequest) -> ByteStream:
        """Tunnel through the connector for ``req.proxy``'s scheme."""
        scheme = (req.proxy.uri.scheme or "http").lower()
        connector = self.connectors.get(scheme)
        if connector is None:
            raise ProxyError(
                f"no proxy connector for scheme {scheme!r} (known: {sorted(self.connectors)})"
            )
        return await connector.serve(ctx, req)


def default_proxy_connectors() -> ProxyConnectors:
    """Connectors for every upstream proxy kind rama-proxy speaks."""
    connectors = ProxyConnectors()
    connectors.register("http", HttpConnectProxyConnector())
    from ._https_connector import HttpsProxyConnector  # httpproxy

    connectors.register("https", HttpsProxyConnector())
    from ._socks_connector import Socks4ProxyConnector, Socks5ProxyConnector  # (import cycle)

    connectors.register("socks5", Socks5ProxyConnector())  # resolves locally
    connectors.register("socks5h", Socks5ProxyConnector())  # the proxy resolves
    connectors.register("socks4", Socks4ProxyConnector())
    connectors.register("socks4a", Socks4ProxyConnector())
    return connectors


@dataclass(slots=True)
class EgressConnection:
    """A stream to the target and how it was reached."""

    stream: ByteStream
    target: Authority
    upstream: ProxyConfig | None
    """The upstream proxy the tunnel goes through; None when direct."""
    peer_addr: SocketAddress | None
    """The address dialled: the target's, or the upstream proxy's."""

    @property
    def upstream_label(self) -> str | None:
        """The upstream URL without credentials (for records), or None."""
        return redact_proxy_url(self.upstream.url) if self.upstream is not None else None


class Egress:
    """``Authority -> EgressConnection``: direct or through a selected upstream proxy."""

    def __init__(
        self,
        tcp: Service[Authority, EstablishedConnection] | None = None,
        *,
        selector: UpstreamSelector | None = None,
        connectors: ProxyConnector | None = None,
        connect_timeout: float = 10.0,
        max_attempts: int = 3,
    ) -> None:
        self.tcp: Service[Authority, EstablishedConnection] = tcp or TcpConnector(
            connect_timeout=connect_timeout
        )
        self.selector: UpstreamSelector = selector or NoUpstream()
        self.connectors: ProxyConnector = connectors or default_proxy_connectors()
        self.connect_timeout = connect_timeout
        """Bound on the whole egress (all attempts, proxy handshakes included)."""
        self.max_attempts = max_attempts
        """Upstream candidates tried before giving up."""

    async def serve(self, ctx: Context, req: Authority) -> EgressConnection:
        """Connect to ``req``; raises :class:`UpstreamError` naming the cause."""
        started = anyio.current_time()
        conn = await self._serve(ctx, req)
        record = ctx.get(ProxyRecord)
        if record is not None and record.duration is None:
            record.connect_time = anyio.current_time() - started
        return conn

    async def _serve(self, ctx: Context, req: Authority) -> EgressConnection:
        candidates = list(await self.selector.select(ctx, req))[: self.max_attempts]
        try:
            with anyio.fail_after(self.connect_timeout):
                if not candidates:
                    try:
                        conn = await self.tcp.serve(ctx, req)
                    except Exception as e:
                        raise classify_upstream_error(e) from e
                    return EgressConnection(conn.stream, req, None, conn.info.peer_addr)
                last: UpstreamError | None = None
                for upstream in candidates:
                    try:
                        conn_ = await self._through(ctx, req, upstream)
                    except UpstreamError as e:
                        self.selector.report(upstream, False)
                        last = e
                        continue
                    self.selector.report(upstream, True)
                    return conn_
                assert last is not None
                raise last
        except TimeoutError as e:
            if isinstance(e, UpstreamError):
                raise
            raise UpstreamError(
                UpstreamFailure.TIMEOUT,
                f"no connection to {req} within {self.connect_timeout:g}s",
                upstream=redact_proxy_url(candidates[0].url) if candidates else None,
            ) from e

    async def _through(
        self, ctx: Context, target: Authority, upstream: ProxyConfig
    ) -> EgressConnection:
        label = redact_proxy_url(upstream.url)
        try:
            conn = await self.tcp.serve(ctx, upstream.authority)
        except Exception as e:
            err = classify_upstream_error(e, upstream=label)
            # The upstream proxy itself is unreachable: say so, not "target refused".
            raise UpstreamError(
                UpstreamFailure.PROXY, f"upstream proxy {label}: {err}", upstream=label
            ) from e
        try:
            stream = await self.connectors.serve(ctx, ProxyRequest(conn.stream, target, upstream))
        except BaseException as e:
            with contextlib.suppress(Exception):
                await conn.stream.aclose()
            if isinstance(e, UpstreamError):
                raise
            if isinstance(e, Exception):
                raise classify_proxy_failure(e, label) from e
            raise
        return EgressConnection(stream, target, upstream, conn.info.peer_addr)


def classify_proxy_failure(exc: Exception, upstream: str) -> UpstreamError:
    """A failure inside an upstream proxy's handshake -> :class:`UpstreamError`."""
    failure = getattr(exc, "failure", None)
    if isinstance(failure, UpstreamFailure):
        return UpstreamError(failure, str(exc), upstream=upstream)
    if isinstance(exc, TimeoutError):
        return UpstreamError(UpstreamFailure.TIMEOUT, str(exc) or "timeout", upstream=upstream)
    return UpstreamError(UpstreamFailure.PROXY, str(exc) or "proxy failed", upstream=upstream)
