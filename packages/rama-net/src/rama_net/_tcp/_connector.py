"""TCP connector: Authority -> connected stream, with DNS and happy eyeballs."""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import ByteStream

from rama_core import Context, RamaError

from .._address import Authority, IpAddress, SocketAddress
from .._dns import DnsError, Resolver, default_resolver, resolve_host
from .._metrics import TransportMetrics, transport_metrics
from .._stream import wrap_socket
from ._server import SocketInfo

__all__ = [
    "ConnectError",
    "ConnectRefused",
    "ConnectTimeout",
    "EstablishedConnection",
    "ResolveError",
    "TcpConnector",
    "connect_tcp",
]


class ConnectError(RamaError):
    """A TCP connection could not be established."""

    def __init__(
        self, message: str, *, authority: Authority | None = None, errno: int | None = None
    ) -> None:
        super().__init__(message)
        self.authority = authority
        self.errno = errno
        """The OS error number of the failed attempt (``ENETUNREACH``, ...), when one is known.

        Proxies map it to their protocol's answer (SOCKS5 reply codes, 502 bodies).
        """


class ResolveError(ConnectError):
    """The target's name did not resolve."""


class ConnectRefused(ConnectError, ConnectionRefusedError):
    """Every address of the target refused the connection."""


class ConnectTimeout(ConnectError, TimeoutError):
    """No address of the target accepted within the connect timeout."""


@dataclass
class EstablishedConnection:
    """A connected stream and what is known about it."""

    stream: ByteStream
    authority: Authority
    info: SocketInfo


def _interleave(addrs: list[IpAddress]) -> list[IpAddress]:
    """RFC 8305 order: alternate families, starting with the first one given."""
    if not addrs:
        return []
    first = addrs[0].version
    a = [x for x in addrs if x.version == first]
    b = [x for x in addrs if x.version != first]
    out: list[IpAddress] = []
    for i in range(max(len(a), len(b))):
        out.extend(x[i] for x in (a, b) if i < len(x))
    return out


async def _connect_one(ip: IpAddress, port: int) -> socket.socket:
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        err = sock.connect_ex((str(ip), port))
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            raise OSError(err, os.strerror(err))
        if err != 0:
            await anyio.wait_writable(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
        return sock
    except BaseException:
        sock.close()
        raise


async def _race(addrs: list[IpAddress], port: int, delay: float) -> socket.socket:
    if len(addrs) == 1:
        # Nothing to race (an IP literal, a single record): no task group, no cancel.
        try:
            return await _connect_one(addrs[0], port)
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                raise ConnectRefused(
                    f"connection refused by {addrs[0]}", errno=errno.ECONNREFUSED
                ) from exc
            raise ConnectError(str(exc), errno=exc.errno) from exc
    winner: list[socket.socket] = []
    errors: list[OSError] = []
    async with anyio.create_task_group() as tg:

        async def attempt(ip: IpAddress, failed: anyio.Event) -> None:
            try:
                sock = await _connect_one(ip, port)
            except OSError as exc:
                errors.append(exc)
                failed.set()
                return
            if winner:
                sock.close()
                return
            winner.append(sock)
            tg.cancel_scope.cancel()

        for ip in addrs:
            failed = anyio.Event()
            tg.start_soon(attempt, ip, failed)
            with anyio.move_on_after(delay):
                await failed.wait()
    if winner:
        return winner[0]
    if errors and all(e.errno == errno.ECONNREFUSED for e in errors):
        raise ConnectRefused(
            f"connection refused by {', '.join(map(str, addrs))}", errno=errno.ECONNREFUSED
        )
    raise ConnectError(
        "; ".join(str(e) for e in errors) or "no address to connect to",
        errno=errors[-1].errno if errors else None,
    )


class TcpConnector:
    """Service of ``Authority`` -> :class:`EstablishedConnection`.

    Resolves names (A and AAAA), then races the addresses (happy eyeballs,
    RFC 8305: a new attempt every ``happy_eyeballs_delay`` seconds or as soon as
    one fails) within ``connect_timeout``.
    """

    def __init__(
        self,
        resolver: Resolver | None = None,
        *,
        connect_timeout: float = 10.0,
        happy_eyeballs_delay: float = 0.25,
        fast_streams: bool = True,
        metrics: TransportMetrics | None = None,
    ) -> None:
        self.resolver = resolver
        self.connect_timeout = connect_timeout
        self.happy_eyeballs_delay = happy_eyeballs_delay
        self.fast_streams = fast_streams
        self.metrics = metrics
        """Where dialled connections are counted (default: the process-wide instruments)."""

    async def serve(self, ctx: Context, req: Authority) -> EstablishedConnection:
        """Connect to ``req``; the Context may carry a Resolver extension to use."""
        resolver = self.resolver or ctx.get(Resolver) or default_resolver()  # type: ignore[type-abstract]
        try:
            with anyio.fail_after(self.connect_timeout):
                try:
                    addrs = await resolve_host(resolver, req.host)
                except DnsError as exc:
                    raise ResolveError(f"cannot resolve {req.host}: {exc}", authority=req) from exc
                sock = await _race(_interleave(addrs), req.port, self.happy_eyeballs_delay)
        except TimeoutError as exc:
            if isinstance(exc, ConnectError):
                raise
            raise ConnectTimeout(
                f"connecting to {req} timed out after {self.connect_timeout:g}s", authority=req
            ) from exc
        except ConnectError as exc:
            exc.authority = exc.authority or req
            exc.add_context(f"connecting to {req}")
            raise
        try:
            info = SocketInfo(
                peer_addr=SocketAddress.from_sockaddr(sock.getpeername()),
                local_addr=SocketAddress.from_sockaddr(sock.getsockname()),
            )
            stream = await wrap_socket(sock, fast=self.fast_streams)
        except BaseException:
            sock.close()
            raise
        (self.metrics or transport_metrics()).outbound_opened("tcp")
        return EstablishedConnection(stream, req, info)


async def connect_tcp(target: Authority | str, **options: Any) -> ByteStream:
    """Convenience: connect to ``target`` (``"host:port"``) and return the stream."""
    authority = target if isinstance(target, Authority) else Authority.parse(target)
    conn = await TcpConnector(**options).serve(Context(), authority)
    return conn.stream
