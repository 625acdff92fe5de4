"""The fast path of ``rama serve proxy``: plain HTTP/1.1 proxying on loop callbacks.

:class:`FastProxy` is a :class:`rama_net.ConnectionTakeover`: the listener
hands it every accepted socket, and it serves the two requests a forward
proxy mostly sees (absolute-form ``http://`` requests and ``CONNECT``
tunnels) with no task, no cancel scope and no stream object per connection;
see :mod:`rama_proxy._fast._client`. Whatever else arrives goes, with the
bytes read so far, to the listener's service (the general
:class:`~rama_proxy.ProxyDetector` stack), which answers as it would have
from the first byte.

It runs only on asyncio (uvloop included) and only where it behaves exactly
like the general path (:meth:`FastProxy.for_server` decides): direct egress,
no upstream proxy or proxy DB, no custom CONNECT policy, no ``Via`` /
``Forwarded``, no PROXY protocol. Records, the access log and the metrics
are the same as the general path's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from anyio.abc import ByteStream

from rama_core import Service
from rama_http.server._h1_engine import EngineLimits
from rama_net import (
    AddressError,
    Authority,
    SocketAddress,
    TakeoverHandle,
    TcpConnector,
    transport_metrics,
)
from rama_net._dns import Resolver, default_resolver, resolve_host

from .._auth import ProxyAuthenticator
from .._record import ProxyObservers, ProxyRecord
from .._socks5_codec import Socks5Request, Socks5ServerProtocol
from .._socks_server import SocksCommand, SocksProxy
from ._client import ClientConnection
from ._dial import SockAddr
from ._upstream import UpstreamPool

if TYPE_CHECKING:
    from .._metrics import ProxyMetrics
    from .._proxy_server import ProxyServer

__all__ = ["FastProxy"]

_log = logging.getLogger("rama.proxy.fast")

_ADDR_CACHE: Final = 1024
_PROTOCOL: Final = "http/1.1"


class FastProxy:
    """See the module docs; build it with :meth:`for_server`."""

    def __init__(
        self,
        *,
        observers: ProxyObservers,
        metrics: ProxyMetrics,
        authenticator: ProxyAuthenticator | None,
        realm_header: str,
        allow_connect_ports: frozenset[int] | None,
        timeout: float,
        connect_timeout: float,
        idle_timeout: float | None,
        peek_timeout: float,
        limits: EngineLimits,
        resolver: Resolver | None = None,
        socks: SocksProxy | None = None,
        upstream_idle_timeout: float = 60.0,
        max_idle_per_origin: int = 256,
    ) -> None:
        self.observers = observers
        self.metrics = metrics
        self.authenticator = authenticator
        self.realm_header = realm_header
        self.allow_connect_ports = allow_connect_ports
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.peek_timeout = peek_timeout
        self.limits = limits
        self.resolver = resolver
        self.socks = socks
        """The general SOCKS server: the fast path speaks SOCKS5 CONNECT itself
        (without authentication) and hands it the other commands."""
        self.socks_allow_ports = socks.allow_connect_ports if socks is not None else None
        self.socks_handshake_timeout = socks.handshake_timeout if socks is not None else 10.0
        self._upstream_idle_timeout = upstream_idle_timeout
        self._max_idle_per_origin = max_idle_per_origin
        self.stopping = False
        self.clients: set[ClientConnection] = set()
        self._addrs: dict[tuple[str, int], list[SockAddr] | None] = {}
        self._ips: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
        self._targets: dict[str, tuple[str, int] | None] = {}
        self._handle: TakeoverHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        shortest = min(t for t in (timeout, connect_timeout, peek_timeout, idle_timeout) if t)
        self._period = min(max(shortest / 4, 0.01), 1.0)
        self._transport = transport_metrics()

    @classmethod
    def for_server(cls, server: ProxyServer) -> FastProxy | None:
        """The fast path for ``server``, or None where it would not behave the same."""
        from .._connect_policy import AllowAll
        from .._egress import NoUpstream

        cfg = server.config
        http = server.http_proxy
        egress = server.egress
        if (
            not cfg.fast_path
            or cfg.proxy_protocol is not None
            or type(egress.selector) is not NoUpstream
            or type(egress.tcp) is not TcpConnector
            or type(http.connect_policy) is not AllowAll
            or http.egress is not egress
            or http.via is not None
            or http.forwarded
            or http.lazy_connect
            or server.detector.http is not http
            or server.service is not server.detector
        ):
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None  # trio: the general path serves everything
        try:
            probe = socket.socketpair()
        except OSError:
            return None
        try:
            loop.add_reader(probe[0].fileno(), lambda: None)
            loop.remove_reader(probe[0].fileno())
        except NotImplementedError:
            return None  # a loop without readiness callbacks (Windows' proactor)
        finally:
            probe[0].close()
            probe[1].close()
        socks = server.socks_proxy
        if socks is not None and (
            socks.authenticator is not None
            or socks.connect_handoff is not None
            or socks.egress is not egress
            or server.detector.socks is not socks
        ):
            socks = None  # SOCKS connections go to the general path whole
        http_cfg = server.http_config
        return cls(
            observers=server.observers,
            metrics=server.metrics,
            authenticator=http.authenticator,
            realm_header=http._realm_header,
            allow_connect_ports=http.allow_connect_ports,
            timeout=cfg.timeout,
            connect_timeout=egress.connect_timeout,
            idle_timeout=http.tunnel_idle_timeout,
            peek_timeout=cfg.peek_timeout,
            limits=EngineLimits(
                max_request_line=http_cfg.max_request_line,
                max_header_size=http_cfg.max_header_size,
                max_headers=http_cfg.max_headers,
            ),
            resolver=egress.tcp.resolver,
            socks=socks,
        )

    # -- ConnectionTakeover ------------------------------------------------------------------
    def start(self, handle: TakeoverHandle) -> None:
        """The listener is serving: start the sweeper."""
        self._handle = handle
        self.loop = asyncio.get_running_loop()
        self.pool = UpstreamPool(
            self.loop,
            idle_timeout=self._upstream_idle_timeout,
            max_per_origin=self._max_idle_per_origin,
        )
        self._timer = self.loop.call_later(self._period, self._sweep)

    def take(self, sock: socket.socket, peer: Any) -> bool:
        """Serve every accepted TCP socket (hand-offs go back to the listener)."""
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = ClientConnection(self, sock, peer)
        except Exception:
            # the listener serves it the usual way (a peer that reset at once, say)
            _log.debug("fast path: cannot take a connection", exc_info=True)
            return False
        self.clients.add(client)
        return True

    def stop(self) -> None:
        """Shutdown: idle connections close now, busy ones after their answer."""
        self.stopping = True
        for client in list(self.clients):
            client.shutdown()

    def abort(self) -> None:
        """The drain bound: close everything."""
        for client in list(self.clients):
            client.close()
        pool = getattr(self, "pool", None)  # None when the listener never started serving
        if pool is not None:
            pool.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- what connections ask of the engine ---------------------------------------------------
    def handoff(
        self,
        client: ClientConnection,
        prefix: bytes,
        *,
        service: Service[ByteStream, Any] | None = None,
    ) -> None:
        """Give ``client``'s socket (and what was read from it) to the general stack
        (or to ``service``, for a connection already spoken with)."""
        sock = client.detach()
        self.clients.discard(client)
        self._count_closed(client)
        assert self._handle is not None
        self._handle.adopt(sock, prefix, service=service)

    def handoff_socks(
        self, client: ClientConnection, server: Socks5ServerProtocol, request: Socks5Request
    ) -> None:
        """Give a SOCKS5 connection whose handshake is done to the general SOCKS server."""
        assert self.socks is not None
        self.handoff(client, b"", service=SocksCommand(self.socks, server, request))

    def closed(self, client: ClientConnection) -> None:
        """``client`` ended (its socket is closed)."""
        if client in self.clients:
            self.clients.remove(client)
            self._count_closed(client)
            assert self._handle is not None
            self._handle.release()

    def handle_spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run a coroutine function for a connection (authentication, DNS)."""
        assert self._handle is not None
        self._handle.spawn(self._guarded, fn, args)

    async def _guarded(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            await fn(*args)
        except Exception:
            _log.exception("fast path task %s failed", getattr(fn, "__qualname__", fn))

    def begin_record(
        self, client: ClientConnection, protocol: str, method: str | None, target: str | None
    ) -> ProxyRecord:
        """Open the record of a request or tunnel (and count the connection once)."""
        if not client.opened:
            with contextlib.suppress(OSError, ValueError, TypeError, IndexError):
                client.peer = self.socket_address(client.sockaddr)
            self.metrics.connection_opened(_PROTOCOL)
            self._transport.connection_opened("tcp")
            client.opened = self.loop.time() or 1e-9
        record = ProxyRecord(
            protocol,
            client.peer,
            method=method,
            target=target,
            started=self.loop.time(),
            started_wall=time.time(),
        )
        self.observers.started(record)
        return record

    def socket_address(self, sockaddr: Any) -> SocketAddress:
        """A ``SocketAddress`` for a socket-module address (IP objects are cached)."""
        host = sockaddr[0]
        ip = self._ips.get(host)
        if ip is None:
            if len(self._ips) >= _ADDR_CACHE:
                self._ips.clear()
            ip = self._ips[host] = ipaddress.ip_address(host.split("%", 1)[0])
        return SocketAddress(ip, sockaddr[1])

    def end_record(self, record: ProxyRecord) -> None:
        """Close a record (idempotent) and tell the observers."""
        if record.duration is None:
            record.duration = self.loop.time() - record.started
            self.observers.finished(record)

    def connect_target(self, target: str) -> tuple[str, int] | None:
        """``(host, port)`` of a CONNECT target (``target`` is its canonical spelling),
        or None when the general path is to answer (400/403)."""
        try:
            return self._targets[target]
        except KeyError:
            pass
        authority = self._connect_target(target)
        if len(self._targets) >= _ADDR_CACHE:
            self._targets.clear()
        self._targets[target] = authority
        return authority

    def _connect_target(self, target: str) -> tuple[str, int] | None:
        if ":" not in target or target.startswith("["):
            return None  # no port, or an IPv6 literal: the general path's parse decides
        try:
            authority = Authority.parse(target)
        except (AddressError, ValueError):
            return None
        ports = self.allow_connect_ports
        if ports is not None and authority.port not in ports:
            return None
        if str(authority) != target:
            return None  # anything not in its canonical spelling: the general path decides
        return str(authority.host), authority.port

    def addresses(self, host: str, port: int) -> list[SockAddr] | None:
        """The socket address of an IP-literal host, or None for a name to resolve."""
        key = (host, port)
        try:
            return self._addrs[key]
        except KeyError:
            pass
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            addrs = None
        else:
            family = int(socket.AF_INET6 if ip.version == 6 else socket.AF_INET)
            addrs = [(family, (str(ip), port))]
        if len(self._addrs) >= _ADDR_CACHE:
            self._addrs.clear()
        if addrs is not None:
            self._addrs[key] = addrs
        return addrs

    def resolve(self, client: ClientConnection, host: str, port: int) -> None:
        """Resolve ``host`` (in a task), then let ``client`` dial it."""
        client.resolving = True
        client.deadline = self.loop.time() + self.connect_timeout
        self.handle_spawn(self._resolve, client, host, port)

    async def _resolve(self, client: ClientConnection, host: str, port: int) -> None:
        resolver = self.resolver or default_resolver()
        try:
            ips = await resolve_host(resolver, Authority.parse(f"{host}:{port}").host)
        except Exception as exc:
            if client.resolving:
                client.resolving = False
                client.resolve_failed(exc)
            return
        if not client.resolving:
            return  # timed out or gone meanwhile
        client.resolving = False
        addrs: list[SockAddr] = [
            (int(socket.AF_INET6 if ip.version == 6 else socket.AF_INET), (str(ip), port))
            for ip in ips
        ]
        client.dial_addresses(addrs)

    # -- upkeep ------------------------------------------------------------------------------
    def _count_closed(self, client: ClientConnection) -> None:
        if client.opened:
            self.metrics.connection_closed(_PROTOCOL)
            rx, tx = client.rx, client.tx
            if client.tunnel is not None:
                rx += client.tunnel.bytes_up
                tx += client.tunnel.bytes_down
            self._transport.connection_closed("tcp", self.loop.time() - client.opened, rx, tx)

    def _sweep(self) -> None:
        now = self.loop.time()
        for client in list(self.clients):
            try:
                tunnel = client.tunnel
                if tunnel is not None:
                    if tunnel.deadline <= now:
                        tunnel.expire()
                    else:
                        tunnel.sweep(now)
                elif client.deadline <= now:
                    client.timed_out()
            except Exception:
                client.internal_error()
        try:
            self.pool.sweep(now)
        except Exception:
            _log.exception("fast path: upstream pool sweep failed")
        self._timer = self.loop.call_later(self._period, self._sweep)
