"""SocksProxy: a SOCKS5 (RFC 1928, RFC 1929 auth) and SOCKS4/4a server service.

``Service[ByteStream, None]`` for one accepted connection: serve it alone with
``TcpListener.serve(SocksProxy())`` or inside the one-port proxy server.

- CONNECT goes through an :class:`~rama_proxy.Egress` (directly or through the
  upstream the selector picks); domain targets are resolved by the proxy
  (SOCKS5h behaviour); a failure answers the REP code of its
  :class:`~rama_proxy.UpstreamFailure` (network/host unreachable, refused,
  TTL expired...).
- ``connect_handoff``: a ``Service[ByteStream, None]`` (a MITM) that gets
  the client's stream after the success reply instead of a tunnel; it finds
  the target in the Context as :class:`~rama_proxy.ConnectTarget` (its
  ``request`` a synthetic ``CONNECT host:port``) and dials it itself.
- BIND: a listening socket on the control connection's local IP, the first
  reply with its address, one incoming connection within ``bind_timeout``
  (from the host the client named, when it named an IP), the second reply, a tunnel.
- UDP ASSOCIATE: a bounded :class:`~rama_proxy.UdpRelay` that lives as long as
  the TCP control connection (and no longer than its idle timeout).
- BIND and UDP ASSOCIATE are served from this host (never through an upstream
  proxy: an upstream selector only routes CONNECT).
- RFC 1929 username/password through a :class:`~rama_proxy.ProxyAuthenticator`
  (the :class:`~rama_proxy.ProxyUser` goes into the Context for the selector).
- SOCKS4/4a (no authentication in that protocol: refused when an authenticator is set).

Every command opens one :class:`~rama_proxy.ProxyRecord` (status = the reply
code). Bad input gets the protocol's error reply (or a close) and one DEBUG
line; a client that does not finish its handshake within
``handshake_timeout`` is closed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import cast

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener

from rama_core import Context, Service
from rama_http import Request
from rama_net import (
    AddressError,
    Authority,
    ConnectionLost,
    DnsError,
    Host,
    IpAddress,
    PeekStream,
    Resolver,
    SocketAddress,
    SocketInfo,
    default_resolver,
    forward,
    resolve_host,
)

from ._auth import ProxyAuthenticator, ProxyUser
from ._connect_policy import ConnectTarget
from ._egress import Egress
from ._errors import UpstreamError
from ._record import ProxyRecord, begin_record, end_record
from ._socks4_codec import (
    Socks4Command,
    Socks4Reply,
    Socks4ReplyCode,
    parse_socks4_request,
)
from ._socks5_codec import (
    Socks5Address,
    Socks5AuthRequest,
    Socks5Greeting,
    Socks5ReplyCode,
    Socks5Request,
    Socks5ServerProtocol,
    SocksError,
    SocksVersionError,
)
from ._udp_relay import UdpRelay

__all__ = ["SocksProxy"]

_log = logging.getLogger("rama.proxy.socks")

_RECV_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionLost, OSError)
_UNSPECIFIED = ipaddress.IPv4Address(0)


@dataclass(slots=True)
class _Command:
    """A parsed request, whichever the protocol."""

    version: int  # 4 or 5
    command: str  # CONNECT, BIND, UDP_ASSOCIATE
    host: Socks5Address
    port: int
    early: bytes  # bytes the client sent after its request
    server: Socks5ServerProtocol | None = None


class _Closed(Exception):
    """The handshake ended (answered and closed); nothing more to do."""


class SocksCommand:
    """A ``Service[ByteStream, None]`` for a SOCKS5 connection whose handshake is done.

    The proxy server's fast path speaks the greeting and reads the request
    itself; a command it does not serve (BIND, UDP ASSOCIATE) comes here, to
    :class:`SocksProxy`, which answers it as if it had read it.
    """

    def __init__(
        self,
        proxy: SocksProxy,
        server: Socks5ServerProtocol,
        request: Socks5Request,
    ) -> None:
        self.proxy = proxy
        self.command = _Command(
            5, request.command.name, request.host, request.port, server.take_trailing_data(), server
        )

    async def serve(self, ctx: Context, stream: ByteStream) -> None:
        """Run the command on ``stream``; never raises for peer misbehaviour."""
        await self.proxy._serve(ctx, stream, self.command)


class SocksProxy:
    """A SOCKS5/SOCKS4 server for one accepted connection (see the module docstring)."""

    def __init__(
        self,
        *,
        egress: Egress | None = None,
        authenticator: ProxyAuthenticator | None = None,
        allow_connect_ports: Collection[int] | None = None,
        handshake_timeout: float = 10.0,
        enable_bind: bool = True,
        enable_udp: bool = True,
        enable_socks4: bool = True,
        bind_timeout: float = 30.0,
        udp_idle_timeout: float = 120.0,
        idle_timeout: float | None = 300.0,
        resolver: Resolver | None = None,
        connect_handoff: Service[ByteStream, None] | None = None,
    ) -> None:
        self.egress = egress or Egress()
        self.connect_handoff = connect_handoff
        """Gets the client's stream after a CONNECT's success reply (instead of a tunnel)."""
        self.authenticator = authenticator
        """RFC 1929 username/password is required when set."""
        self.allow_connect_ports = (
            frozenset(allow_connect_ports) if allow_connect_ports is not None else None
        )
        """Ports a CONNECT may reach (None: any); others answer ``not allowed`` (0x02)."""
        self.handshake_timeout = handshake_timeout
        """Seconds from accept until the request is complete; a slower client is closed."""
        self.enable_bind = enable_bind
        self.enable_udp = enable_udp
        self.enable_socks4 = enable_socks4
        self.bind_timeout = bind_timeout
        """Seconds a BIND waits for its incoming connection."""
        self.udp_idle_timeout = udp_idle_timeout
        """A UDP association without a datagram either way this long is closed."""
        self.idle_timeout = idle_timeout
        """A tunnel without a byte either way this long is closed (None: no limit)."""
        self.resolver = resolver
        """For BIND's expected peer and UDP targets (default: rama-net's resolver)."""

    async def serve(self, ctx: Context, stream: ByteStream) -> None:
        """Serve one SOCKS connection to its end; never raises for peer misbehaviour."""
        await self._serve(ctx, stream, None)

    async def _serve(self, ctx: Context, stream: ByteStream, cmd: _Command | None) -> None:
        """:meth:`serve`; with ``cmd``, the handshake was done already (the fast path)."""
        info = ctx.get(SocketInfo)
        client = info.peer_addr if info is not None else None
        try:
            try:
                if cmd is None:
                    with anyio.fail_after(self.handshake_timeout):
                        cmd = await self._handshake(ctx, stream, client)
            except TimeoutError:
                _log.info(
                    "SOCKS handshake from %s not done within %gs, closing",
                    client or "?",
                    self.handshake_timeout,
                )
                return
            except SocksError as exc:
                _log.debug("bad SOCKS input from %s: %s", client or "?", exc)
                if exc.response:
                    with contextlib.suppress(*_RECV_ERRORS):
                        await stream.send(exc.response)
                    if len(exc.response) >= 8:  # a refused request (not a greeting): a record
                        self._bad_request_record(ctx, client, exc)
                return
            except (_Closed, *_RECV_ERRORS):
                return
            await self._run(ctx, stream, cmd, client)
        except _RECV_ERRORS:
            _log.debug("SOCKS client %s went away", client or "?")
        except Exception:
            _log.exception("SOCKS connection from %s failed", client or "?")
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()

    def _bad_request_record(
        self, ctx: Context, client: SocketAddress | None, exc: SocksError
    ) -> None:
        assert exc.response is not None
        version = 5 if exc.response[0] == 0x05 else 4
        user = ctx.get(ProxyUser)
        record = begin_record(
            ctx,
            f"socks{version}",
            client=client,
            user=user.name if user is not None else None,
            status=exc.reply if version == 5 else Socks4ReplyCode.REJECTED,
            error="bad request",
        )
        end_record(ctx, record)

    # -- handshake --------------------------------------------------------------------

    async def _handshake(
        self, ctx: Context, stream: ByteStream, client: SocketAddress | None
    ) -> _Command:
        first = await stream.receive()
        if first[0] == 0x05:
            return await self._socks5_handshake(ctx, stream, client, first)
        if first[0] == 0x04 and self.enable_socks4:
            return await self._socks4_handshake(stream, first)
        raise SocksVersionError(f"not a SOCKS greeting (first byte 0x{first[0]:02x})")

    async def _socks5_handshake(
        self, ctx: Context, stream: ByteStream, client: SocketAddress | None, first: bytes
    ) -> _Command:
        proto = Socks5ServerProtocol()
        proto.receive_data(first)
        while True:
            event = proto.next_event()
            if event is None:
                try:
                    data = await stream.receive()
                except anyio.EndOfStream:
                    data = b""
                proto.receive_data(data)
                continue
            if isinstance(event, Socks5Greeting):
                method, answer = proto.select_method(
                    event, require_auth=self.authenticator is not None
                )
                await stream.send(answer)
                if method == 0xFF:
                    _log.debug("SOCKS5 client %s offers no acceptable method", client or "?")
                    raise _Closed
            elif isinstance(event, Socks5AuthRequest):
                assert self.authenticator is not None
                user = await self.authenticator.authenticate(
                    event.username.decode("utf-8", "replace"),
                    event.password.decode("utf-8", "replace"),
                    peer=client,
                )
                await stream.send(proto.auth_result(user is not None))
                if user is None:
                    raise _Closed
                ctx.insert(user)
            else:
                assert isinstance(event, Socks5Request)
                return _Command(
                    5,
                    event.command.name,
                    event.host,
                    event.port,
                    proto.take_trailing_data(),
                    proto,
                )

    async def _socks4_handshake(self, stream: ByteStream, first: bytes) -> _Command:
        buf = bytearray(first)
        eof = False
        while True:
            parsed = parse_socks4_request(buf, eof=eof)
            if parsed is not None:
                break
            try:
                buf += await stream.receive()
            except anyio.EndOfStream:
                eof = True
        req, used = parsed
        if self.authenticator is not None:
            await stream.send(Socks4Reply(Socks4ReplyCode.REJECTED).encode())
            _log.debug("SOCKS4 request refused: this proxy requires authentication")
            raise _Closed
        name = "CONNECT" if req.command == Socks4Command.CONNECT else "BIND"
        return _Command(4, name, req.host, req.port, bytes(buf[used:]))

    # -- commands ---------------------------------------------------------------------

    async def _run(
        self, ctx: Context, stream: ByteStream, cmd: _Command, client: SocketAddress | None
    ) -> None:
        user = ctx.get(ProxyUser)
        record = begin_record(
            ctx,
            f"socks{cmd.version}",
            client=client,
            user=user.name if user is not None else None,
            method=cmd.command,
            target=_target_text(cmd.host, cmd.port),
        )
        try:
            if cmd.command == "CONNECT":
                await self._connect(ctx, stream, cmd, record)
            elif cmd.command == "BIND" and self.enable_bind:
                await self._bind(ctx, stream, cmd, record)
            elif cmd.command == "UDP_ASSOCIATE" and self.enable_udp:
                await self._udp(ctx, stream, cmd, record, client)
            else:
                await self._fail(
                    stream, cmd, record, Socks5ReplyCode.COMMAND_NOT_SUPPORTED, "command disabled"
                )
        except BaseException as exc:
            if record.status is None:
                record.status = Socks5ReplyCode.GENERAL_FAILURE if cmd.version == 5 else 91
                if isinstance(exc, Exception) and not isinstance(exc, _RECV_ERRORS):
                    # our failure (e.g. no port to bind): the client still gets an answer
                    with contextlib.suppress(Exception):
                        await self._reply(stream, cmd, Socks5ReplyCode.GENERAL_FAILURE)
            if record.error is None and isinstance(exc, Exception):
                record.error = (
                    "internal error" if not isinstance(exc, _RECV_ERRORS) else "client went away"
                )
            raise
        finally:
            end_record(ctx, record)

    async def _reply(
        self,
        stream: ByteStream,
        cmd: _Command,
        code: int,
        addr: SocketAddress | None = None,
    ) -> None:
        if cmd.version == 5:
            assert cmd.server is not None
            host = _unmap(addr.ip) if addr is not None else _UNSPECIFIED
            data = cmd.server.reply(code, host, addr.port if addr is not None else 0)
        else:
            ok = code == Socks5ReplyCode.SUCCEEDED
            ip = _unmap(addr.ip) if addr is not None else _UNSPECIFIED
            v4 = ip if isinstance(ip, ipaddress.IPv4Address) else _UNSPECIFIED
            data = Socks4Reply(
                Socks4ReplyCode.GRANTED if ok else Socks4ReplyCode.REJECTED,
                addr.port if addr is not None else 0,
                v4,
            ).encode()
        await stream.send(data)

    async def _fail(
        self, stream: ByteStream, cmd: _Command, record: ProxyRecord, code: int, why: str
    ) -> None:
        record.status = code if cmd.version == 5 else Socks4ReplyCode.REJECTED
        record.error = why
        with contextlib.suppress(*_RECV_ERRORS):
            await self._reply(stream, cmd, code)

    def _authority(self, cmd: _Command) -> Authority:
        host = cmd.host
        return Authority(Host(host) if not isinstance(host, str) else Host.parse(host), cmd.port)

    async def _connect(
        self, ctx: Context, stream: ByteStream, cmd: _Command, record: ProxyRecord
    ) -> None:
        if self.allow_connect_ports is not None and cmd.port not in self.allow_connect_ports:
            _log.info("SOCKS CONNECT to %s refused: port not allowed", record.target)
            await self._fail(stream, cmd, record, Socks5ReplyCode.NOT_ALLOWED, "port not allowed")
            return
        try:
            target = self._authority(cmd)
        except AddressError:
            _log.debug("SOCKS CONNECT to an invalid host %r", str(cmd.host)[:255])
            await self._fail(stream, cmd, record, Socks5ReplyCode.HOST_UNREACHABLE, "invalid host")
            return
        if self.connect_handoff is not None:
            await self._handoff(ctx, stream, cmd, record, target, self.connect_handoff)
            return
        try:
            conn = await self.egress.serve(ctx, target)
        except UpstreamError as exc:
            record.upstream = exc.upstream
            _log.info("SOCKS CONNECT to %s failed: %s", target, exc)
            await self._fail(stream, cmd, record, exc.failure.socks5_reply, exc.failure.reason)
            return
        record.upstream = conn.upstream_label
        try:
            bound = _local_addr(conn.stream)
            await self._reply(stream, cmd, Socks5ReplyCode.SUCCEEDED, bound)
            record.status = (
                Socks5ReplyCode.SUCCEEDED if cmd.version == 5 else Socks4ReplyCode.GRANTED
            )
            if cmd.early:
                await conn.stream.send(cmd.early)
                record.bytes_in += len(cmd.early)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.stream.aclose()
            raise
        await self._tunnel(stream, conn.stream, record)

    async def _handoff(
        self,
        ctx: Context,
        stream: ByteStream,
        cmd: _Command,
        record: ProxyRecord,
        target: Authority,
        service: Service[ByteStream, None],
    ) -> None:
        await self._reply(stream, cmd, Socks5ReplyCode.SUCCEEDED)
        record.status = Socks5ReplyCode.SUCCEEDED if cmd.version == 5 else Socks4ReplyCode.GRANTED
        ctx.insert(ConnectTarget(target, Request("CONNECT", str(target))))
        if cmd.early:
            stream = PeekStream(stream, cmd.early)
        await service.serve(ctx, stream)

    async def _tunnel(self, client: ByteStream, target: ByteStream, record: ProxyRecord) -> None:
        stats = await forward(client, target, idle_timeout=self.idle_timeout)
        record.bytes_in += stats.left_to_right
        record.bytes_out += stats.right_to_left
        if stats.idle_timed_out:
            record.error = "idle timeout"
        elif stats.error is not None:
            record.error = "connection lost"

    async def _bind(
        self, ctx: Context, stream: ByteStream, cmd: _Command, record: ProxyRecord
    ) -> None:
        local = _local_addr(stream) or _info_local(ctx)
        if local is None:
            await self._fail(
                stream, cmd, record, Socks5ReplyCode.GENERAL_FAILURE, "no local address"
            )
            return
        expected: IpAddress | None = None
        if isinstance(cmd.host, str):
            try:
                with anyio.fail_after(5.0):
                    resolver = self.resolver or default_resolver()
                    expected = (await resolve_host(resolver, Host.parse(cmd.host)))[0]
            except (ValueError, TimeoutError, DnsError):
                await self._fail(
                    stream, cmd, record, Socks5ReplyCode.HOST_UNREACHABLE, "unresolvable peer"
                )
                return
        elif not cmd.host.is_unspecified:
            expected = cmd.host
        bind_ip = _unmap(local.ip)
        if cmd.version == 4 and bind_ip.version == 6:
            await self._fail(
                stream, cmd, record, Socks5ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED, "IPv6 bind"
            )
            return
        listener = await anyio.create_tcp_listener(local_host=str(bind_ip), local_port=0)
        try:
            sock_listener = cast(SocketListener, listener.listeners[0])
            bound = SocketAddress.from_sockaddr(sock_listener.extra(SocketAttribute.local_address))
            await self._reply(stream, cmd, Socks5ReplyCode.SUCCEEDED, bound)
            incoming: ByteStream | None = None
            peer: SocketAddress | None = None
            with anyio.move_on_after(self.bind_timeout):
                while incoming is None:
                    accepted = await sock_listener.accept()
                    peer = SocketAddress.from_sockaddr(
                        accepted.extra(SocketAttribute.remote_address)
                    )
                    if expected is not None and _unmap(peer.ip) != _unmap(expected):
                        _log.info(
                            "SOCKS BIND: connection from %s, expected %s: refused", peer, expected
                        )
                        await accepted.aclose()
                        continue
                    incoming = accepted
        finally:
            await listener.aclose()
        if incoming is None or peer is None:
            _log.info(
                "SOCKS BIND for %s: no connection within %gs", record.target, self.bind_timeout
            )
            await self._fail(stream, cmd, record, Socks5ReplyCode.TTL_EXPIRED, "bind timed out")
            return
        try:
            await self._reply(stream, cmd, Socks5ReplyCode.SUCCEEDED, peer)
            record.status = (
                Socks5ReplyCode.SUCCEEDED if cmd.version == 5 else Socks4ReplyCode.GRANTED
            )
            if cmd.early:
                await incoming.send(cmd.early)
                record.bytes_in += len(cmd.early)
        except BaseException:
            with contextlib.suppress(Exception):
                await incoming.aclose()
            raise
        await self._tunnel(stream, incoming, record)

    async def _udp(
        self,
        ctx: Context,
        stream: ByteStream,
        cmd: _Command,
        record: ProxyRecord,
        client: SocketAddress | None,
    ) -> None:
        local = _local_addr(stream) or _info_local(ctx)
        client_ip = client.ip if client is not None else _peer_addr_ip(stream)
        if local is None or client_ip is None:
            await self._fail(stream, cmd, record, Socks5ReplyCode.GENERAL_FAILURE, "no address")
            return
        relay = await UdpRelay.open(
            _unmap(local.ip),
            client_ip,
            cmd.port or None,
            resolver=self.resolver,
            idle_timeout=self.udp_idle_timeout,
            on_activity=lambda: _keep_alive(stream),
        )
        try:
            await self._reply(stream, cmd, Socks5ReplyCode.SUCCEEDED, relay.local_addr)
            record.status = Socks5ReplyCode.SUCCEEDED
            async with anyio.create_task_group() as tg:

                async def run_relay() -> None:
                    await relay.run()
                    tg.cancel_scope.cancel()

                tg.start_soon(run_relay)
                # the association lasts as long as the control connection
                with contextlib.suppress(*_RECV_ERRORS):
                    while True:
                        data = await stream.receive()
                        if not data:
                            break
                tg.cancel_scope.cancel()
        finally:
            await relay.aclose()
            record.bytes_in += relay.bytes_in
            record.bytes_out += relay.bytes_out


def _target_text(host: Socks5Address, port: int) -> str:
    if isinstance(host, ipaddress.IPv6Address):
        return f"[{host}]:{port}"
    return f"{str(host)[:255]}:{port}"


def _unmap(ip: IpAddress) -> IpAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _local_addr(stream: ByteStream) -> SocketAddress | None:
    try:
        raw = stream.extra(SocketAttribute.local_address, None)
        return SocketAddress.from_sockaddr(raw) if raw is not None else None
    except Exception:
        return None


def _info_local(ctx: Context) -> SocketAddress | None:
    info = ctx.get(SocketInfo)
    return info.local_addr if info is not None else None


def _peer_addr_ip(stream: ByteStream) -> IpAddress | None:
    try:
        raw = stream.extra(SocketAttribute.remote_address, None)
        return SocketAddress.from_sockaddr(raw).ip if raw is not None else None
    except Exception:
        return None


def _keep_alive(stream: object) -> None:
    """UDP traffic keeps the idle TCP control connection from the listener's idle sweep."""
    for _ in range(4):
        account = getattr(stream, "account", None)
        if callable(account):
            account()
            return
        stream = getattr(stream, "inner", None)
        if stream is None:
            return
