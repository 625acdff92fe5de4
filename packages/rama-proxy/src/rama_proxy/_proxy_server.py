"""The assembled proxy: HTTP, HTTPS-proxy and SOCKS5 on one port (``rama serve proxy``).

:class:`ProxyServer` builds, from a :class:`ProxyServerConfig` (the CLI
flags), the stack every part of rama-proxy plugs into::

    TcpListener (max connections, SO_REUSEPORT for workers)
      -> ProxyProtocolLayer            (--proxy-protocol accept)
      -> ProxyDetector                 (one port: first bytes decide)
           -> HttpProxy                (HTTP/1.1 and h2; behind TLS for https://)
           -> SocksProxy               (SOCKS5/5h, SOCKS4/4a)
    both reaching targets through one Egress:
      direct | --upstream URL | --proxy-db FILE (labels in the username pick)
      [+ a PROXY header on every outgoing connection: --proxy-protocol send-v1|send-v2]

Observers (the JSON-lines :class:`~rama_proxy.AccessLog` and the
OpenTelemetry :class:`~rama_proxy.ProxyMetrics`) sit in the root Context.
:func:`serve_proxy` runs it under a :class:`rama_core.Shutdown`: SIGINT or
SIGTERM stop accepting, let requests and tunnels in flight finish within
``grace`` seconds, then cancel the rest.

::

    await serve_proxy(ProxyServerConfig(bind="127.0.0.1:8080", auth=[("john", "secret")]))
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Sequence
from contextlib import AsyncExitStack
from typing import Any, Literal

import anyio
from anyio.abc import ByteStream

from rama_core import Context, Service, Shutdown
from rama_net import (
    Authority,
    EstablishedConnection,
    SocketAddress,
    TcpConnector,
    TcpListener,
    TcpServerConfig,
)
from rama_tls import CertifiedKey, TlsAcceptorConfig, TlsClientConfig, self_signed

from ._access_log import AccessLog
from ._auth import ProxyAuthenticator, StaticCredentials, UsernameParser
from ._detect import ProxyDetector
from ._egress import Egress, StaticUpstream, UpstreamSelector, default_proxy_connectors
from ._fast import FastProxy
from ._haproxy_layer import ProxyProtocolConnectorLayer, ProxyProtocolLayer
from ._http_proxy import HttpProxy
from ._https_connector import HttpsProxyConnector
from ._labels import UsernameLabelParser
from ._metrics import ProxyMetrics, proxy_metrics
from ._proxy_db import ProxyDbFile
from ._record import ProxyObserver, ProxyObservers
from ._selector import ProxyDbSelector
from ._socks_server import SocksProxy

__all__ = ["ProxyServer", "ProxyServerConfig", "serve_proxy"]

_log = logging.getLogger("rama.proxy.server")

ProxyProtocolMode = Literal["accept", "send-v1", "send-v2"]


@dataclasses.dataclass
class ProxyServerConfig:
    """Everything ``rama serve proxy`` can be told; each field is one CLI flag."""

    bind: str = "127.0.0.1:8080"
    """``host:port`` to listen on (port 0 picks a free one)."""
    auth: Sequence[tuple[str, str]] = ()
    """Users and passwords; when set, HTTP (407) and SOCKS5 (RFC 1929) require them."""
    upstream: str | None = None
    """Send everything through this proxy (``http://``, ``https://``, ``socks5://``...)."""
    proxy_db: str | None = None
    """A CSV or JSON proxy DB; the username's labels choose the upstream (hot reloaded)."""
    upstream_ca: str | None = None
    """PEM file of the CAs trusted for ``https://`` upstream proxies (replaces the system
    roots for them), for an upstream with a private or self-signed certificate."""
    proxy_db_mode: Literal["random", "round_robin", "sticky"] = "random"
    """How the proxy DB picks among matching upstreams (``session-<key>`` is always sticky)."""
    labels_strict: bool = True
    """Refuse usernames with unknown labels (else skip them)."""
    tls_cert: str | None = None
    """PEM certificate chain for the HTTPS proxy (``curl --proxy https://...``)."""
    tls_key: str | None = None
    """PEM private key matching ``tls_cert``."""
    tls_self_signed: bool = False
    """Serve the HTTPS proxy with a throwaway self-signed certificate."""
    proxy_protocol: ProxyProtocolMode | None = None
    """``accept``: read a PROXY header from trusted peers; ``send-v1``/``send-v2``: send one
    on every upstream connection."""
    proxy_protocol_trusted: Sequence[str] | None = None
    """CIDRs allowed to send a PROXY header (default: loopback only)."""
    allow_connect_ports: Collection[int] | None = None
    """Ports CONNECT and SOCKS may reach (None: any)."""
    access_log: str | None = None
    """``-`` (stdout) or a file for the JSON-lines access log; None: no access log."""
    max_connections: int | None = None
    """Concurrent client connections (default: what the fd limit allows, at most 10,000)."""
    timeout: float = 30.0
    """Seconds for each wait on a client or an upstream (connects use ``connect_timeout``)."""
    connect_timeout: float = 10.0
    """Seconds to reach a target or an upstream proxy."""
    idle_timeout: float = 300.0
    """Seconds a connection or tunnel may be silent both ways."""
    peek_timeout: float = 10.0
    """Seconds a new connection has to send its first bytes."""
    grace: float = 10.0
    """Seconds requests and tunnels in flight get to finish on shutdown."""
    workers: int = 1
    """Processes sharing the port (SO_REUSEPORT); the CLI forks them."""
    reuse_port: bool = False
    """Bind with SO_REUSEPORT (set for every worker when ``workers > 1``)."""
    http2: bool = True
    """Serve h2 to clients (prior knowledge, or ALPN behind TLS)."""
    socks: bool = True
    """Serve SOCKS5/SOCKS4 on the port."""
    fast_path: bool = True
    """On asyncio, serve plain HTTP/1.1 forwarding and CONNECT tunnels on event-loop
    callbacks (no task per connection) where that behaves exactly like the general
    path: direct egress, no PROXY protocol. Everything else is served by the
    general stack either way."""

    def __post_init__(self) -> None:
        if self.upstream is not None and self.proxy_db is not None:
            raise ValueError("use an upstream or a proxy DB, not both")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("a TLS certificate needs its key (and the other way round)")
        if self.tls_cert is not None and self.tls_self_signed:
            raise ValueError("use a TLS certificate or a self-signed one, not both")
        if self.proxy_protocol not in (None, "accept", "send-v1", "send-v2"):
            raise ValueError(
                f"proxy_protocol must be accept, send-v1 or send-v2, not {self.proxy_protocol!r}"
            )
        for name in ("timeout", "connect_timeout", "idle_timeout", "peek_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.grace < 0:
            raise ValueError("grace must not be negative")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        for user, _ in self.auth:
            if not user:
                raise ValueError("a proxy user needs a name")
        if self.allow_connect_ports is not None:
            for port in self.allow_connect_ports:
                if not 0 < port < 65536:
                    raise ValueError(f"not a TCP port: {port}")


class ProxyServer:
    """The assembled proxy server; build it, then ``await server.serve()``.

    The parts are attributes, built from the config and open to inspection
    (and replacement before :meth:`serve`): :attr:`egress`,
    :attr:`authenticator`, :attr:`http_proxy`, :attr:`socks_proxy`,
    :attr:`detector` and :attr:`service` (the stream service the listener
    runs). ``observers`` are added to the access log and metrics.
    """

    def __init__(
        self,
        config: ProxyServerConfig | None = None,
        *,
        observers: Sequence[ProxyObserver] = (),
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self.config = cfg = config or ProxyServerConfig()
        self.metrics = metrics or proxy_metrics()
        self.access_log = AccessLog(cfg.access_log) if cfg.access_log is not None else None
        obs: list[ProxyObserver] = [self.metrics, *observers]
        if self.access_log is not None:
            obs.insert(0, self.access_log)
        self.observers = ProxyObservers(*obs)
        self.proxy_db: ProxyDbFile | None = None
        """The reloading proxy DB file (``--proxy-db``), if any."""
        self.connectors = default_proxy_connectors()
        """How upstream proxies are spoken to, by URL scheme."""
        if cfg.upstream_ca is not None:
            self.connectors.register(
                "https", HttpsProxyConnector(tls=TlsClientConfig(ca_file=cfg.upstream_ca))
            )
        self.egress = Egress(
            self._tcp_connector(),
            selector=self._selector(),
            connectors=self.connectors,
            connect_timeout=cfg.connect_timeout,
        )
        self.authenticator = self._authenticator()
        self.http_proxy = HttpProxy(
            egress=self.egress,
            authenticator=self.authenticator,
            allow_connect_ports=cfg.allow_connect_ports,
            timeout=cfg.timeout,
            tunnel_idle_timeout=cfg.idle_timeout,
        )
        self.socks_proxy: SocksProxy | None = None
        if cfg.socks:
            self.socks_proxy = SocksProxy(
                egress=self.egress,
                authenticator=self.authenticator,
                allow_connect_ports=cfg.allow_connect_ports,
                handshake_timeout=min(cfg.timeout, cfg.peek_timeout),
                idle_timeout=cfg.idle_timeout,
            )
        self.certificate = self._certificate()
        self.http_config = HttpProxy.server_config(  # no request-body cap: bodies stream
            header_read_timeout=cfg.timeout,
            keep_alive_timeout=cfg.timeout,
            body_read_timeout=cfg.timeout,
            write_timeout=cfg.timeout,
            shutdown_grace=cfg.grace,
        )
        """How clients are served over HTTP/1.1 and h2 (limits tied to ``timeout``)."""
        self.detector = ProxyDetector(
            http=self.http_proxy,
            socks=self.socks_proxy,
            tls=TlsAcceptorConfig.single(self.certificate) if self.certificate else None,
            http_config=self.http_config,
            peek_timeout=cfg.peek_timeout,
            h2=cfg.http2,
            metrics=self.metrics,
        )
        self.service: Service[ByteStream, Any] = self.detector
        if cfg.proxy_protocol == "accept":
            layer = ProxyProtocolLayer(
                trusted=(
                    cfg.proxy_protocol_trusted
                    if cfg.proxy_protocol_trusted is not None
                    else ("127.0.0.0/8", "::1")
                ),
                header_timeout=cfg.peek_timeout,
            )
            self.service = layer.layer(self.detector)
        self.listener: TcpListener | None = None

    # -- building ----------------------------------------------------------------------------
    def _tcp_connector(self) -> Service[Authority, EstablishedConnection]:
        cfg = self.config
        tcp: Service[Authority, EstablishedConnection] = TcpConnector(
            connect_timeout=cfg.connect_timeout
        )
        if cfg.proxy_protocol in ("send-v1", "send-v2"):
            version = 1 if cfg.proxy_protocol == "send-v1" else 2
            connector_layer = ProxyProtocolConnectorLayer(version, crc=version == 2)
            tcp = connector_layer.layer(tcp)
        return tcp

    def _selector(self) -> UpstreamSelector | None:
        cfg = self.config
        if cfg.upstream is not None:
            scheme = cfg.upstream.partition("://")[0].lower()
            if scheme not in self.connectors.schemes:
                raise ValueError(
                    f"no connector for {scheme}:// upstreams "
                    f"(this version speaks {', '.join(sorted(self.connectors.schemes))})"
                )
            return StaticUpstream(cfg.upstream)
        if cfg.proxy_db is not None:
            self.proxy_db = ProxyDbFile(cfg.proxy_db)
            selector: UpstreamSelector = ProxyDbSelector(
                self.proxy_db, mode=cfg.proxy_db_mode, schemes=self.connectors.schemes
            )
            return selector
        return None

    def _authenticator(self) -> ProxyAuthenticator | None:
        cfg = self.config
        if not cfg.auth:
            return None
        parser: UsernameParser | None = None
        if cfg.proxy_db is not None:
            parser = UsernameLabelParser(strict=cfg.labels_strict)
        return ProxyAuthenticator(
            StaticCredentials(dict(cfg.auth)),
            username_parser=parser,
            on_failure=self.metrics.auth_failed,
        )

    def _certificate(self) -> CertifiedKey | None:
        cfg = self.config
        if cfg.tls_cert is not None and cfg.tls_key is not None:
            return CertifiedKey.load(cfg.tls_cert, cfg.tls_key)
        if cfg.tls_self_signed:
            host = Authority.parse(cfg.bind).host
            names = {"localhost", "127.0.0.1", "::1", str(host)} - {"0.0.0.0", "::", ""}
            return self_signed(*sorted(names))
        return None

    # -- running -----------------------------------------------------------------------------
    def bind(self) -> TcpListener:
        """Bind the listening socket now (idempotent); its address is :attr:`local_addr`."""
        if self.listener is None:
            cfg = self.config
            self.listener = TcpListener.bind(cfg.bind, reuse_port=cfg.reuse_port or cfg.workers > 1)
        return self.listener

    @property
    def local_addr(self) -> SocketAddress:
        """The bound address (port 0 resolved); binds first if needed."""
        return self.bind().local_addr

    @property
    def tcp_config(self) -> TcpServerConfig:
        """The listener's limits."""
        cfg = self.config
        tcp = TcpServerConfig(idle_timeout=cfg.idle_timeout)
        if cfg.max_connections is not None:
            tcp = dataclasses.replace(tcp, max_connections=cfg.max_connections)
        return tcp

    async def serve(
        self,
        *,
        ctx: Context | None = None,
        on_listening: Callable[[SocketAddress], Any] | None = None,
    ) -> None:
        """Serve until the listener closes or the Context's shutdown drained it.

        Without ``ctx`` the root Context comes from the enclosing
        ``async with Shutdown()`` (as with any rama listener). The upstream
        pool, the proxy DB watcher and the access log are closed on return.
        """
        listener = self.bind()
        if ctx is None:
            current = Shutdown.current()
            ctx = current.context() if current is not None else Context()
        ctx.insert(self.observers)
        async with AsyncExitStack() as stack:
            stack.push_async_callback(self._aclose)
            if self.proxy_db is not None:
                await stack.enter_async_context(self.proxy_db)
            if on_listening is not None:
                on_listening(listener.local_addr)
            _log.info("rama proxy listening on %s", listener.local_addr)
            fast = FastProxy.for_server(self)
            if fast is not None:
                stack.callback(fast.abort)
            await listener.serve(self.service, self.tcp_config, ctx=ctx, takeover=fast)

    async def _aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self.http_proxy.aclose()
            finally:
                if self.access_log is not None:
                    self.access_log.close()


async def serve_proxy(
    config: ProxyServerConfig | None = None,
    *,
    on_listening: Callable[[SocketAddress], Any] | None = None,
    server: ProxyServer | None = None,
) -> None:
    """Run a :class:`ProxyServer` until SIGINT/SIGTERM, then shut down gracefully.

    Requests and tunnels in flight get ``config.grace`` seconds; a second
    signal cancels them at once. ``on_listening`` gets the bound address.
    """
    server = server or ProxyServer(config)
    async with Shutdown(grace=server.config.grace) as shutdown:
        await server.serve(ctx=shutdown.context(), on_listening=on_listening)
