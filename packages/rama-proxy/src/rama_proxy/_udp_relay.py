"""The UDP relay behind one SOCKS5 UDP ASSOCIATE (RFC 1928 section 7).

The client sends ``RSV FRAG ATYP DST.ADDR DST.PORT DATA`` datagrams to the
relay's client-facing socket; the relay sends ``DATA`` to the target from its
own outbound socket and wraps every answer in the same header (the source as
the address) back to the client. Bounded on every side:

- only datagrams from the client's IP (the TCP control connection's peer) are
  relayed, and from one port: the one the client named in its request, else the
  first one it used;
- only answers from addresses the client has sent to come back (a restricted
  cone: the relay is no open door to the client), that set is bounded;
- fragments (FRAG != 0) are dropped, as RFC 1928 allows;
- domain targets are resolved with a bounded time per datagram;
- the relay ends after ``idle_timeout`` seconds without a datagram either way
  (and, in :class:`~rama_proxy.SocksProxy`, with the TCP control connection).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

import anyio
from anyio.abc import SocketAttribute, UDPSocket

from rama_net import (
    DnsError,
    Host,
    IpAddress,
    Resolver,
    SocketAddress,
    default_resolver,
    resolve_host,
)

from ._socks5_codec import (
    Socks5UdpDatagram,
    SocksError,
    decode_udp_datagram,
    encode_udp_datagram,
)

__all__ = ["UdpRelay"]

_log = logging.getLogger("rama.proxy.socks.udp")
_Family = Literal[socket.AddressFamily.AF_INET, socket.AddressFamily.AF_INET6]


class UdpRelay:
    """A bounded SOCKS5 UDP relay for one client (see the module docstring)."""

    def __init__(
        self,
        client_socket: UDPSocket,
        client_ip: IpAddress,
        client_port: int | None = None,
        *,
        resolver: Resolver | None = None,
        idle_timeout: float = 60.0,
        resolve_timeout: float = 5.0,
        max_peers: int = 1024,
        on_activity: Callable[[], None] | None = None,
    ) -> None:
        self.client_socket = client_socket
        self.client_ip = _unmap(client_ip)
        self.client_port = client_port or None
        """The client's UDP port: named in the request, else learnt from its first datagram."""
        self.resolver = resolver or default_resolver()
        self.idle_timeout = idle_timeout
        self.resolve_timeout = resolve_timeout
        self.max_peers = max_peers
        """Targets remembered per association (answers from others are dropped)."""
        self.on_activity = on_activity
        self.bytes_in = 0
        """Payload bytes relayed from the client to targets."""
        self.bytes_out = 0
        """Payload bytes relayed from targets to the client."""
        self.dropped = 0
        """Datagrams dropped (stranger, fragment, malformed, unresolvable, not allowed)."""
        self._peers: OrderedDict[tuple[IpAddress, int], None] = OrderedDict()
        self._outbound: dict[int, UDPSocket] = {}
        self._last = anyio.current_time()
        self._closed = False
        self._client_send_lock = anyio.Lock()

    @classmethod
    async def open(
        cls,
        bind_ip: IpAddress,
        client_ip: IpAddress,
        client_port: int | None = None,
        *,
        resolver: Resolver | None = None,
        idle_timeout: float = 60.0,
        on_activity: Callable[[], None] | None = None,
    ) -> UdpRelay:
        """Bind the client-facing socket on ``bind_ip`` (a free port) and the relay."""
        family: _Family = socket.AF_INET6 if bind_ip.version == 6 else socket.AF_INET
        sock = await anyio.create_udp_socket(family=family, local_host=str(bind_ip), local_port=0)
        return cls(
            sock,
            client_ip,
            client_port,
            resolver=resolver,
            idle_timeout=idle_timeout,
            on_activity=on_activity,
        )

    @property
    def local_addr(self) -> SocketAddress:
        """Where the client sends its datagrams (the BND of the reply)."""
        return SocketAddress.from_sockaddr(self.client_socket.extra(SocketAttribute.local_address))

    async def run(self) -> None:
        """Relay until idle for ``idle_timeout`` (returns) or cancelled; closes the sockets."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._from_client, tg)
                while True:
                    remaining = self._last + self.idle_timeout - anyio.current_time()
                    if remaining <= 0:
                        _log.debug("UDP association for %s idle, closing", self.client_ip)
                        tg.cancel_scope.cancel()
                        break
                    await anyio.sleep(remaining)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close every socket of the relay."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self.client_socket.aclose()
        for sock in self._outbound.values():
            with contextlib.suppress(Exception):
                await sock.aclose()

    def _touch(self) -> None:
        self._last = anyio.current_time()
        if self.on_activity is not None:
            self.on_activity()

    async def _from_client(self, tg: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                packet, addr = await self.client_socket.receive()
            except (anyio.ClosedResourceError, anyio.EndOfStream):
                return
            except OSError as exc:  # an ICMP error reported on the socket: not fatal
                _log.debug("UDP relay receive from the client side: %s", exc)
                await anyio.sleep(0.01)  # never a busy loop on a persistent error
                continue
            src = SocketAddress.from_sockaddr(addr)
            if _unmap(src.ip) != self.client_ip:
                self.dropped += 1
                continue
            if self.client_port is None:
                self.client_port = src.port
            elif src.port != self.client_port:
                self.dropped += 1
                continue
            try:
                dgram = decode_udp_datagram(packet)
            except SocksError as exc:
                self.dropped += 1
                _log.debug("malformed UDP datagram from %s: %s", src, exc)
                continue
            if dgram.frag != 0:
                self.dropped += 1
                continue
            ip = await self._resolve(dgram.host)
            if ip is None:
                self.dropped += 1
                continue
            try:
                out = await self._outbound_for(ip, tg)
            except OSError as exc:  # e.g. no IPv6 on this host
                self.dropped += 1
                _log.debug("no UDP socket for %s: %s", ip, exc)
                continue
            peer = (_unmap(ip), dgram.port)
            self._peers[peer] = None
            self._peers.move_to_end(peer)
            while len(self._peers) > self.max_peers:
                self._peers.popitem(last=False)
            try:
                await out.sendto(dgram.data, str(ip), dgram.port)
            except OSError as exc:
                self.dropped += 1
                _log.debug("UDP send to %s:%d failed: %s", ip, dgram.port, exc)
                continue
            self.bytes_in += len(dgram.data)
            self._touch()

    async def _from_target(self, out: UDPSocket) -> None:
        while True:
            try:
                packet, addr = await out.receive()
            except (anyio.ClosedResourceError, anyio.EndOfStream):
                return
            except OSError as exc:
                _log.debug("UDP relay receive from the target side: %s", exc)
                await anyio.sleep(0.01)  # never a busy loop on a persistent error
                continue
            src = SocketAddress.from_sockaddr(addr)
            ip = _unmap(src.ip)
            if (ip, src.port) not in self._peers or self.client_port is None:
                self.dropped += 1
                continue
            data = encode_udp_datagram(Socks5UdpDatagram(ip, src.port, packet))
            try:
                async with self._client_send_lock:  # the IPv4 and IPv6 sides both answer
                    await self.client_socket.sendto(data, str(self.client_ip), self.client_port)
            except OSError as exc:
                self.dropped += 1
                _log.debug("UDP send to client %s failed: %s", self.client_ip, exc)
                continue
            self.bytes_out += len(packet)
            self._touch()

    async def _outbound_for(self, ip: IpAddress, tg: anyio.abc.TaskGroup) -> UDPSocket:
        version = ip.version
        sock = self._outbound.get(version)
        if sock is None:
            family: _Family = socket.AF_INET6 if version == 6 else socket.AF_INET
            sock = await anyio.create_udp_socket(
                family=family, local_host="::" if version == 6 else "0.0.0.0"
            )
            self._outbound[version] = sock
            tg.start_soon(self._from_target, sock)
        return sock

    async def _resolve(
        self, host: ipaddress.IPv4Address | ipaddress.IPv6Address | str
    ) -> IpAddress | None:
        if not isinstance(host, str):
            return host
        try:
            parsed = Host.parse(host)
            with anyio.fail_after(self.resolve_timeout):
                addresses = await resolve_host(self.resolver, parsed)
        except (ValueError, DnsError, TimeoutError) as exc:
            _log.debug("UDP target %r not resolved: %s", host[:255], exc)
            return None
        return addresses[0]


def _unmap(ip: IpAddress) -> IpAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
