"""UDP: a datagram listener serving a datagram service, and a client connector.

A datagram service takes ``(ctx, Datagram)`` and returns the reply payload
(or ``None`` for no reply). Each datagram is served in its own task with a
forked Context holding :class:`~rama_net.SocketInfo`; a bounded number run
at once and datagrams beyond that are dropped and counted, because UDP has no
backpressure and a queue would only add latency.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from socket import AddressFamily
from typing import Any, Literal

import anyio
from anyio.abc import ConnectedUDPSocket, SocketAttribute, TaskGroup, UDPSocket

from rama_core import Context, RamaError, Service, Shutdown, format_error_chain

from ._address import Authority, Host, SocketAddress
from ._dns import DnsError, Resolver, default_resolver, resolve_host
from ._metrics import TransportMetrics, transport_metrics
from ._tcp._connector import ResolveError
from ._tcp._server import SocketInfo

__all__ = [
    "Datagram",
    "UdpConnector",
    "UdpListener",
    "UdpServerConfig",
    "connect_udp",
]

_log = logging.getLogger("rama.net.udp")
_Family = Literal[AddressFamily.AF_UNSPEC, AddressFamily.AF_INET, AddressFamily.AF_INET6]


@dataclass(frozen=True, slots=True)
class Datagram:
    """One received datagram and who sent it."""

    payload: bytes
    peer: SocketAddress


@dataclass(frozen=True)
class UdpServerConfig:
    """Limits of a UDP server."""

    max_in_flight: int = 1024
    """Datagrams served at once; more are dropped (and counted in ``dropped``)."""
    metrics: TransportMetrics | None = None
    """Where to record transport metrics (default: the process-wide instruments)."""


class UdpListener:
    """A bound UDP socket and the loop that serves its datagrams."""

    def __init__(self, sock: UDPSocket) -> None:
        self.socket = sock
        self.dropped = 0
        """Datagrams dropped because ``max_in_flight`` were being served."""
        self._closed = False
        self._stop: anyio.Event | None = None
        self._send_lock: anyio.Lock | None = None

    @classmethod
    async def bind(
        cls, address: str | Authority | tuple[str, int], *, reuse_port: bool = False
    ) -> UdpListener:
        """Bind ``host:port`` (port 0 picks a free one)."""
        if isinstance(address, tuple):
            host, port = Host.parse(address[0]), address[1]
        else:
            auth = address if isinstance(address, Authority) else Authority.parse(address)
            host, port = auth.host, auth.port
        family: Literal[AddressFamily.AF_UNSPEC, AddressFamily.AF_INET, AddressFamily.AF_INET6] = (
            socket.AF_UNSPEC
        )
        if host.ip is not None:
            family = socket.AF_INET6 if host.ip.version == 6 else socket.AF_INET
        sock = await anyio.create_udp_socket(
            family=family, local_host=str(host), local_port=port, reuse_port=reuse_port
        )
        return cls(sock)

    @property
    def local_addr(self) -> SocketAddress:
        """The bound address."""
        return SocketAddress.from_sockaddr(self.socket.extra(SocketAttribute.local_address))

    async def send_to(self, payload: bytes, peer: SocketAddress) -> None:
        """Send one datagram from the listening socket."""
        if self._send_lock is None:
            self._send_lock = anyio.Lock()
        # anyio sockets allow one writer at a time; handlers reply concurrently
        async with self._send_lock:
            await self.socket.sendto(payload, str(peer.ip), peer.port)

    def close(self) -> None:
        """Stop serving; in-flight datagram handlers finish."""
        self._closed = True
        if self._stop is not None:
            self._stop.set()

    async def serve(
        self,
        service: Service[Datagram, bytes | None],
        config: UdpServerConfig | None = None,
        *,
        ctx: Context | None = None,
    ) -> None:
        """Serve datagrams until :meth:`close` or the context's shutdown.

        Without ``ctx`` the root Context comes from the enclosing
        ``async with Shutdown()`` (:meth:`rama_core.Shutdown.current`), as
        for :meth:`TcpListener.serve`.
        """
        if ctx is None:
            current = Shutdown.current()
            ctx = current.context() if current is not None else Context()
        cfg = config or UdpServerConfig()
        metrics = cfg.metrics or transport_metrics()
        local = self.local_addr
        in_flight = 0

        async def handle(data: bytes, peer: SocketAddress) -> None:
            nonlocal in_flight
            try:
                child = ctx.fork()
                child.insert(SocketInfo(peer_addr=peer, local_addr=local))
                reply = await service.serve(child, Datagram(data, peer))
                if reply is not None:
                    await self.send_to(reply, peer)
                    metrics.moved("udp", sent=len(reply))
            except RamaError as exc:
                _log.debug("datagram from %s: %s", peer, format_error_chain(exc))
            except TimeoutError as exc:
                # an expected event (the handler's own timeout), not a bug: no traceback
                _log.info("datagram from %s: timed out: %s", peer, exc or "TimeoutError")
            except Exception:
                _log.exception("datagram service failed for %s", peer)
            finally:
                in_flight -= 1

        async def receive_loop(handlers: TaskGroup) -> None:
            nonlocal in_flight
            async for data, (host, port, *_) in self.socket:
                metrics.moved("udp", received=len(data))
                if in_flight >= cfg.max_in_flight:
                    self.dropped += 1
                    continue
                in_flight += 1
                handlers.start_soon(handle, data, SocketAddress.from_sockaddr((host, port)))

        self._stop = stop = anyio.Event()
        if self._closed:
            await self.socket.aclose()
            return
        async with anyio.create_task_group() as handlers, anyio.create_task_group() as loop:
            loop.start_soon(receive_loop, handlers)

            async def stop_on(wait: Any) -> None:
                await wait()
                loop.cancel_scope.cancel()

            loop.start_soon(stop_on, stop.wait)
            loop.start_soon(stop_on, ctx.executor.wait_shutdown)
        with anyio.CancelScope(shield=True):
            await self.socket.aclose()


class UdpConnector:
    """Service of ``Authority`` -> connected UDP socket (name resolved, first address)."""

    def __init__(self, resolver: Resolver | None = None) -> None:
        self.resolver = resolver

    async def serve(self, ctx: Context, req: Authority) -> ConnectedUDPSocket:
        """Resolve ``req`` and return a UDP socket connected to it."""
        resolver = (
            self.resolver
            or ctx.get(Resolver)  # type: ignore[type-abstract]
            or default_resolver()
        )
        try:
            addrs = await resolve_host(resolver, req.host)
        except DnsError as exc:
            raise ResolveError(f"cannot resolve {req.host}: {exc}", authority=req) from exc
        ip = addrs[0]
        family: Literal[AddressFamily.AF_INET, AddressFamily.AF_INET6] = (
            socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        )
        return await anyio.create_connected_udp_socket(str(ip), req.port, family=family)


async def connect_udp(
    target: Authority | str, resolver: Resolver | None = None
) -> ConnectedUDPSocket:
    """Convenience: a UDP socket connected to ``target`` (``"host:port"``)."""
    authority = target if isinstance(target, Authority) else Authority.parse(target)
    return await UdpConnector(resolver).serve(Context(), authority)
