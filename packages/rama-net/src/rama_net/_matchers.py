"""Matchers over the connection: the peer's or the local address, by CIDR and port.

They read the :class:`~rama_net.SocketInfo` the listener puts into the
Context, so they work for any request type (a stream, an HTTP request...).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from rama_core import Context, Matcher

from ._address import SocketAddress
from ._tcp import SocketInfo

__all__ = ["LocalAddressMatcher", "PeerAddressMatcher"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(cidrs: Iterable[str]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _in(ip: object, nets: tuple[_Network, ...]) -> bool:
    addr = ipaddress.ip_address(str(ip))
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == n.version and addr in n for n in nets)


class _AddressMatcher(Matcher[object]):
    __slots__ = ("networks", "ports")

    def __init__(self, cidrs: Iterable[str] = (), *, ports: Iterable[int] | None = None) -> None:
        self.networks = _networks(cidrs)
        self.ports = frozenset(ports) if ports is not None else None

    def _address(self, info: SocketInfo) -> SocketAddress:
        raise NotImplementedError

    def matches(self, ctx: Context, req: object) -> bool:
        """Read the Context's SocketInfo; no SocketInfo never matches."""
        info = ctx.get(SocketInfo)
        if info is None:
            return False
        addr = self._address(info)
        if self.ports is not None and addr.port not in self.ports:
            return False
        return not self.networks or _in(addr.ip, self.networks)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({[str(n) for n in self.networks]})"


class PeerAddressMatcher(_AddressMatcher):
    """The client's address is in one of ``cidrs`` (and, if given, its port in ``ports``)."""

    __slots__ = ()

    def _address(self, info: SocketInfo) -> SocketAddress:
        return info.peer_addr


class LocalAddressMatcher(_AddressMatcher):
    """The connection arrived on one of ``cidrs`` / ``ports`` of this host."""

    __slots__ = ()

    def _address(self, info: SocketInfo) -> SocketAddress:
        return info.local_addr
