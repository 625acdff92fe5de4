"""The connector stack: TCP -> proxy tunnel (optional) -> TLS -> HTTP connection by ALPN.

Each step is a Service usable alone:

- TCP: any ``Service[Authority, EstablishedConnection]``
  (default :class:`rama_net.TcpConnector`).
- Proxy: a :class:`ProxyConnector` takes the stream to the proxy and the
  target and returns a stream tunnelled to the target.
  :class:`HttpConnectProxyConnector` is the HTTP CONNECT one; rama-proxy adds
  HTTPS-proxy and SOCKS5 connectors behind the same interface.
- TLS: :class:`rama_tls.TlsConnector`'s handshake with SNI and ALPN.
- HTTP: :meth:`HttpConnector.connection_for` picks the client connection
  for the negotiated ALPN protocol (the single place the h2 connection plugs in).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import unquote

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute

from rama_core import Context, Service
from rama_net import (
    Authority,
    ConnectionLost,
    EstablishedConnection,
    TcpConnector,
)
from rama_net import (
    ConnectError as NetConnectError,
)
from rama_tls import TlsClientConfig, TlsConnector, TlsError

from .._errors import RemoteProtocolError
from .._uri import Uri
from ._connection import ClientConnection, Http1Connection, close_stream
from ._errors import ConnectError, ConnectTimeout, ProxyError
from ._h1_engine import ClientEngineLimits, H1ClientEngine
from ._h1_fast import FastClientEngine
from ._h1_h11 import H11ClientEngine
from ._h2_connection import H2ClientLimits, H2ClientSettings, Http2Connection

__all__ = [
    "ALPN_PROTOCOLS",
    "HttpConnectProxyConnector",
    "HttpConnector",
    "PoolKey",
    "ProxyConfig",
    "ProxyConnector",
    "ProxyRequest",
    "engine_factory",
]

ALPN_PROTOCOLS: Final = ("h2", "http/1.1")
"""What the TLS connector offers (``http/1.1`` alone with ``http2=False``)."""


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """An upstream proxy: ``http://[user:pass@]host:port`` (rama-proxy adds more schemes)."""

    url: str

    @property
    def uri(self) -> Uri:
        """The parsed proxy URL."""
        return Uri.parse(self.url)

    @property
    def basic_auth(self) -> str | None:
        """``Basic ...`` for Proxy-Authorization from the URL's ``user:pass@`` (percent-decoded)."""
        userinfo = self.uri.userinfo
        if not userinfo:
            return None
        user, _, password = userinfo.partition(":")
        raw = f"{unquote(user)}:{unquote(password)}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    @property
    def authority(self) -> Authority:
        """Where to dial."""
        u = self.uri
        return Authority.parse(
            f"{u.authority}" if u.port else f"{u.authority}:{u.effective_port or 80}"
        )


@dataclass(frozen=True, slots=True)
class PoolKey:
    """What decides whether two requests may share a connection."""

    scheme: str
    host: str
    port: int
    proxy: ProxyConfig | None = None
    tls: Hashable | None = None
    """The TLS client configuration (two configurations never share a connection)."""
    emulation: Hashable | None = None
    """The client-emulation profile (rama-ua); two fingerprints never share a connection."""
    forward: bool = False
    """A connection to the (``http://``) proxy itself, carrying absolute-form requests for
    any ``http://`` target (``proxy_mode="forward"``); ``host``/``port`` are the proxy's."""

    @property
    def authority(self) -> str:
        """``host:port`` (IPv6 bracketed), as sent in Host when the port is not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def dial(self) -> Authority:
        """The target as an Authority (always with its port)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return Authority.parse(f"{host}:{self.port}")

    @classmethod
    def for_uri(
        cls,
        uri: Uri,
        *,
        proxy: ProxyConfig | None = None,
        tls: Hashable | None = None,
        emulation: Hashable | None = None,
    ) -> PoolKey:
        """The key of an absolute URI."""
        scheme = (uri.scheme or "http").lower()
        if uri.host is None:
            raise ValueError(f"the URL {uri} has no host")
        port = uri.effective_port or (443 if scheme == "https" else 80)
        return cls(
            scheme, uri.host.lower(), port, proxy, tls if scheme == "https" else None, emulation
        )

    @classmethod
    def for_forward_proxy(cls, proxy: ProxyConfig, *, emulation: Hashable | None = None) -> PoolKey:
        """The key of connections to ``proxy`` that forward ``http://`` requests."""
        u = proxy.uri
        if u.host is None:
            raise ValueError(f"the proxy URL {proxy.url} has no host")
        port = u.effective_port or 80
        return cls("http", u.host.lower(), port, proxy, None, emulation, forward=True)


@dataclass(slots=True)
class ProxyRequest:
    """What a proxy connector gets: the stream to the proxy and where to tunnel."""

    stream: ByteStream
    target: Authority
    proxy: ProxyConfig


class ProxyConnector(Protocol):
    """``ProxyRequest -> ByteStream`` (a stream tunnelled to the target)."""

    async def serve(self, ctx: Context, req: ProxyRequest) -> ByteStream:
        """Open the tunnel over ``req.stream``; raise :class:`ProxyError` when refused."""
        ...


class HttpConnectProxyConnector:
    """Tunnel with ``CONNECT host:port`` (Basic auth from the proxy URL's userinfo)."""

    def __init__(self, *, max_head: int = 16 * 1024) -> None:
        self.max_head = max_head

    async def serve(self, ctx: Context, req: ProxyRequest) -> ByteStream:
        """Send CONNECT, expect a 2xx head, return the same stream (now a tunnel)."""
        target = str(req.target)
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        auth = req.proxy.basic_auth
        if auth:
            lines.append(f"Proxy-Authorization: {auth}")
        await req.stream.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        buf = b""
        while b"\r\n\r\n" not in buf:
            if len(buf) > self.max_head:
                raise ProxyError("proxy response head too large")
            try:
                buf += await req.stream.receive()
            except anyio.EndOfStream:
                raise ProxyError("proxy closed the connection during CONNECT") from None
        head, _, rest = buf.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0]
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProxyError(f"invalid proxy response {status_line[:60]!r}")
        status = int(parts[1])
        if not 200 <= status < 300:
            raise ProxyError(f"proxy refused CONNECT {target}: {status}")
        if rest:
            raise ProxyError("proxy sent bytes after its CONNECT answer")
        return req.stream


EngineName = str


def engine_factory(
    name: EngineName, limits: ClientEngineLimits | None = None
) -> Callable[[], H1ClientEngine]:
    """``"fast"`` (default), ``"h11"`` (the strict reference) or ``"httptools"``
    (llhttp parses the heads; the ``fast`` extra)."""
    if name == "fast":
        return lambda: FastClientEngine(limits)
    if name == "httptools":
        from ._h1_httptools import HttptoolsClientEngine

        return lambda: HttptoolsClientEngine(limits)
    if name == "h11":
        return lambda: H11ClientEngine(limits)
    raise ValueError(f"unknown HTTP/1.1 client engine {name!r} (use 'fast', 'h11' or 'httptools')")


class HttpConnector:
    """``PoolKey -> ClientConnection``: TCP, proxy tunnel, TLS, then HTTP by ALPN."""

    def __init__(
        self,
        *,
        tcp: Service[Authority, EstablishedConnection] | None = None,
        proxy_connector: ProxyConnector | None = None,
        tls: TlsClientConfig | None = None,
        http1_engine: EngineName = "fast",
        limits: ClientEngineLimits | None = None,
        connect_timeout: float | None = 10.0,
        http2: bool = True,
        http2_prior_knowledge: bool = False,
        h2_settings: H2ClientSettings | None = None,
        h2_limits: H2ClientLimits | None = None,
    ) -> None:
        self.tcp: Service[Authority, EstablishedConnection] = tcp or TcpConnector(
            connect_timeout=connect_timeout or 3600.0
        )
        self.proxy_connector: ProxyConnector = proxy_connector or HttpConnectProxyConnector()
        cfg = tls or TlsClientConfig()
        self.http2 = http2
        """Offer ``h2`` in ALPN (first, before ``http/1.1``)."""
        self.http2_prior_knowledge = http2_prior_knowledge
        """Speak h2 on cleartext ``http://`` connections without asking (h2c prior knowledge)."""
        self.h2_settings = h2_settings or H2ClientSettings()
        """What h2 connections send first (SETTINGS, WINDOW_UPDATE, PRIORITY, pseudo-headers)."""
        self.h2_limits = h2_limits or H2ClientLimits()
        """The flood allowances of h2 connections (what a server may make us do for nothing)."""
        alpn = ALPN_PROTOCOLS if http2 else ("http/1.1",)
        self.tls_config = dataclasses.replace(cfg, alpn_protocols=alpn)
        self._tls: TlsConnector | None = None
        self._engine = engine_factory(http1_engine, limits)

    @property
    def tls(self) -> TlsConnector:
        """The TLS connector (its SSLContext is built on first use)."""
        if self._tls is None:
            self._tls = TlsConnector(self.tcp, self.tls_config)
        return self._tls

    async def serve(self, ctx: Context, req: PoolKey) -> ClientConnection:
        """Open a connection for ``req``; typed :class:`ConnectError` subclasses on failure."""
        if (
            req.proxy is not None
            and isinstance(self.proxy_connector, HttpConnectProxyConnector)
            and (req.proxy.uri.scheme or "http") != "http"
        ):
            raise ProxyError(
                f"proxy scheme of {req.proxy.url!r} needs a ProxyConnector for it "
                "(the built-in one speaks HTTP CONNECT to an http:// proxy)"
            )
        if req.forward:
            return await self._forward(ctx, req)
        dial = req.proxy.authority if req.proxy is not None else req.dial
        try:
            conn = await self.tcp.serve(ctx, dial)
        except TimeoutError as e:
            raise ConnectTimeout(f"connecting to {dial} timed out") from e
        except (NetConnectError, OSError) as e:
            if req.proxy is not None:
                raise ProxyError(f"cannot connect to the proxy {dial}: {e}") from e
            raise ConnectError(f"cannot connect to {dial}: {e}") from e
        stream: ByteStream = conn.stream
        try:
            if req.proxy is not None:
                try:
                    stream = await self.proxy_connector.serve(
                        ctx, ProxyRequest(stream, req.dial, req.proxy)
                    )
                except (ConnectionLost, anyio.BrokenResourceError, OSError) as e:
                    raise ProxyError(f"proxy connection failed: {e}") from e
            alpn: str | None = None
            if req.scheme == "https":
                try:
                    tls = await self.tls.handshake(ctx, stream, req.host)
                except TimeoutError as e:
                    raise ConnectTimeout(f"TLS handshake with {req.authority} timed out") from e
                except (TlsError, ConnectionLost, anyio.BrokenResourceError, OSError) as e:
                    raise ConnectError(f"TLS handshake with {req.authority} failed: {e}") from e
                stream = tls
                alpn = tls.extra(TLSAttribute.alpn_protocol, None)
            return self.connection_for(stream, alpn, req)
        except BaseException:
            with contextlib.suppress(Exception):
                await close_stream(stream)
            raise

    async def _forward(self, ctx: Context, req: PoolKey) -> ClientConnection:
        """A plain HTTP/1.1 connection to an ``http://`` proxy, for absolute-form requests."""
        proxy = req.proxy
        if proxy is None or (proxy.uri.scheme or "http") != "http":
            raise ProxyError("forwarding (proxy_mode='forward') needs an http:// proxy")
        try:
            conn = await self.tcp.serve(ctx, req.dial)
        except TimeoutError as e:
            raise ConnectTimeout(f"connecting to the proxy {req.dial} timed out") from e
        except (NetConnectError, OSError) as e:
            raise ProxyError(f"cannot connect to the proxy {req.dial}: {e}") from e
        return Http1Connection(
            conn.stream, self._engine(), authority=req.authority, forward_proxy=proxy
        )

    def connection_for(
        self, stream: ByteStream, alpn: str | None, key: PoolKey
    ) -> ClientConnection:
        """The HTTP connection for the negotiated protocol.

        ``h2`` when the server chose it in ALPN, or for cleartext with
        :attr:`http2_prior_knowledge`; HTTP/1.1 otherwise.
        """
        if (alpn == "h2" and self.http2) or (
            alpn is None and key.scheme == "http" and self.http2_prior_knowledge
        ):
            return Http2Connection(
                stream,
                authority=key.authority,
                scheme=key.scheme,
                settings=self.h2_settings,
                limits=self.h2_limits,
            )
        if alpn not in (None, "http/1.1"):
            raise RemoteProtocolError(
                f"server selected ALPN {alpn!r}, which was not offered", status=502
            )
        return Http1Connection(stream, self._engine(), authority=key.authority)
