"""Network addresses: Domain, Host, Authority and SocketAddress.

All parse strictly and format canonically, so ``parse(str(x)) == x``. IPv6
literals are bracketed wherever a port follows them (``[::1]:443``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, TypeAlias

import idna

from rama_core import RamaError

__all__ = [
    "DEFAULT_PORTS",
    "AddressError",
    "Authority",
    "Domain",
    "Host",
    "IpAddress",
    "SocketAddress",
    "default_port",
]

IpAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS: dict[str, int] = {
    "http": 80,
    "https": 443,
    "ws": 80,
    "wss": 443,
    "h2": 443,
    "h3": 443,
    "socks5": 1080,
    "socks5h": 1080,
    "ftp": 21,
}
"""Well-known default ports by URI scheme (lowercase)."""


class AddressError(RamaError, ValueError):
    """An address, host, domain or port could not be parsed."""


def default_port(scheme: str) -> int | None:
    """The default port of ``scheme`` (case-insensitive), or None if unknown."""
    return DEFAULT_PORTS.get(scheme.lower())


_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


@dataclass(frozen=True, slots=True)
class Domain:
    """A validated DNS name: lowercase ASCII (IDNA/punycode), no trailing dot."""

    value: str

    def __post_init__(self) -> None:
        _validate_ascii_domain(self.value)

    @classmethod
    def parse(cls, text: str) -> Domain:
        """Parse a domain; Unicode names are IDNA-encoded (UTS #46 mapping)."""
        name = text.strip()
        if name.endswith("."):
            name = name[:-1]
        if not name:
            raise AddressError(f"empty domain in {text!r}")
        if not name.isascii():
            try:
                name = idna.encode(name, uts46=True).decode("ascii")
            except idna.IDNAError as exc:
                raise AddressError(f"invalid internationalized domain {text!r}: {exc}") from exc
        return cls(name.lower())

    def to_unicode(self) -> str:
        """The human-readable (Unicode) form of the name."""
        try:
            return str(idna.decode(self.value))
        except idna.IDNAError:
            return self.value

    @property
    def labels(self) -> tuple[str, ...]:
        """The dot-separated labels, left to right."""
        return tuple(self.value.split("."))

    def is_subdomain_of(self, parent: Domain | str) -> bool:
        """True if this is ``parent`` or a name below it."""
        p = parent.value if isinstance(parent, Domain) else Domain.parse(parent).value
        return self.value == p or self.value.endswith("." + p)

    def __str__(self) -> str:
        return self.value


def _validate_ascii_domain(value: str) -> None:
    if not value or len(value) > 253:
        raise AddressError(f"domain must be 1..253 characters: {value!r}")
    for label in value.split("."):
        if not _LABEL.match(label):
            raise AddressError(f"invalid domain label {label!r} in {value!r}")
    if value.split(".")[-1].isdigit():
        # "1.2.3" or "10.0.0.256": looks like an IP literal, is not a valid name
        raise AddressError(f"numeric top-level label in {value!r}")


@dataclass(frozen=True, slots=True)
class Host:
    """A domain name or an IP address."""

    value: Domain | IpAddress

    @classmethod
    def parse(cls, text: str) -> Host:
        """Parse ``example.com``, ``127.0.0.1``, ``::1`` or ``[::1]``."""
        raw = text.strip()
        if raw.startswith("["):
            if not raw.endswith("]"):
                raise AddressError(f"unterminated IPv6 bracket in {text!r}")
            try:
                return cls(ipaddress.IPv6Address(raw[1:-1]))
            except ValueError as exc:
                raise AddressError(f"invalid IPv6 literal {text!r}") from exc
        try:
            return cls(ipaddress.ip_address(raw))
        except ValueError:
            pass
        if ":" in raw:
            raise AddressError(f"invalid host {text!r}")
        return cls(Domain.parse(raw))

    @classmethod
    def from_value(cls, value: Host | Domain | IpAddress | str) -> Host:
        """Coerce a Host, Domain, IP address or string into a Host."""
        if isinstance(value, Host):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        return cls(value)

    @property
    def is_ip(self) -> bool:
        """Whether this host is an IP literal."""
        return not isinstance(self.value, Domain)

    @property
    def is_domain(self) -> bool:
        """Whether this host is a domain name."""
        return isinstance(self.value, Domain)

    @property
    def ip(self) -> IpAddress | None:
        """The IP address, if this host is one."""
        return None if isinstance(self.value, Domain) else self.value

    @property
    def domain(self) -> Domain | None:
        """The domain, if this host is one."""
        return self.value if isinstance(self.value, Domain) else None

    def bracketed(self) -> str:
        """The form used before ``:port`` and in URLs (IPv6 in brackets)."""
        if isinstance(self.value, ipaddress.IPv6Address):
            return f"[{self.value}]"
        return str(self.value)

    def __str__(self) -> str:
        return str(self.value)


def _parse_port(text: str, original: str) -> int:
    # ASCII digits only: str.isdigit also takes '²' and Arabic-Indic digits
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        raise AddressError(f"invalid port {text!r} in {original!r}")
    port = int(text)
    if port > 65535:
        raise AddressError(f"port {port} out of range in {original!r}")
    return port


def _split_host_port(text: str) -> tuple[str, str | None]:
    raw = text.strip()
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise AddressError(f"unterminated IPv6 bracket in {text!r}")
        rest = raw[end + 1 :]
        if rest == "":
            return raw[: end + 1], None
        if not rest.startswith(":"):
            raise AddressError(f"unexpected {rest!r} after IPv6 literal in {text!r}")
        return raw[: end + 1], rest[1:]
    if raw.count(":") > 1:
        raise AddressError(f"IPv6 literal must be bracketed when a port follows: {text!r}")
    host, sep, port = raw.partition(":")
    return host, (port if sep else None)


@dataclass(frozen=True, slots=True)
class Authority:
    """A host and a port: the target of a connection (``example.com:443``)."""

    host: Host
    port: int

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise AddressError(f"port {self.port} out of range")

    @classmethod
    def parse(cls, text: str, *, default_port: int | None = None) -> Authority:
        """Parse ``host:port``; without a port, ``default_port`` is used or an error raised."""
        host_text, port_text = _split_host_port(text)
        if port_text is None:
            if default_port is None:
                raise AddressError(f"missing port in {text!r}")
            port = default_port
        else:
            port = _parse_port(port_text, text)
        return cls(Host.parse(host_text), port)

    @classmethod
    def new(cls, host: Host | Domain | IpAddress | str, port: int) -> Authority:
        """Build from any host-like value and a port."""
        return cls(Host.from_value(host), port)

    def __str__(self) -> str:
        return f"{self.host.bracketed()}:{self.port}"


@dataclass(frozen=True, slots=True)
class SocketAddress:
    """An IP address and a port: one end of a connected socket."""

    ip: IpAddress
    port: int

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise AddressError(f"port {self.port} out of range")

    @classmethod
    def parse(cls, text: str) -> SocketAddress:
        """Parse ``1.2.3.4:80`` or ``[::1]:80``."""
        host_text, port_text = _split_host_port(text)
        if port_text is None:
            raise AddressError(f"missing port in {text!r}")
        host = Host.parse(host_text)
        if host.ip is None:
            raise AddressError(f"socket address needs an IP, not a name: {text!r}")
        return cls(host.ip, _parse_port(port_text, text))

    @classmethod
    def from_sockaddr(cls, sockaddr: Any) -> SocketAddress:
        """From a socket module address tuple (IPv4 2-tuple or IPv6 4-tuple)."""
        host = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 zone id
        return cls(ipaddress.ip_address(host), int(sockaddr[1]))

    def to_sockaddr(self) -> tuple[str, int]:
        """A tuple for ``socket.connect``/``bind``."""
        return (str(self.ip), self.port)

    @property
    def authority(self) -> Authority:
        """This address as an Authority."""
        return Authority(Host(self.ip), self.port)

    def __str__(self) -> str:
        if isinstance(self.ip, ipaddress.IPv6Address):
            return f"[{self.ip}]:{self.port}"
        return f"{self.ip}:{self.port}"
