"""The MITM's decisions as pure functions over what was seen (sans-IO, no sockets, no clock).

- :func:`sniff` tells TLS, HTTP/1.x, the h2 preface and anything else apart
  from the first bytes of a tunnel;
- :func:`upstream_alpn` is what to offer the upstream, from the client's
  ClientHello; :func:`client_alpn` what to offer the client once the
  upstream chose (so h1 stays h1 and h2 stays h2);
- :func:`leaf_hosts` the names of the leaf certificate shown to the client.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence

from cryptography import x509

__all__ = [
    "HTTP_ALPN",
    "Sniffed",
    "client_alpn",
    "leaf_hosts",
    "sniff",
    "upstream_alpn",
]

HTTP_ALPN = ("h2", "http/1.1")
"""The application protocols the relay speaks."""

_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_METHODS = (
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"OPTIONS",
    b"PATCH",
    b"TRACE",
    b"CONNECT",
)
_LONGEST_METHOD = max(len(m) for m in _METHODS) + 1


class Sniffed(enum.Enum):
    """What the first bytes of a tunnel are."""

    TLS = "tls"
    HTTP = "http"
    OTHER = "other"


def sniff(data: bytes) -> Sniffed | None:
    """Classify the first bytes of a tunnel; None: need more bytes to tell.

    A TLS handshake record starts ``16 03 0x``; HTTP/1.x starts with a known
    method and a space; the h2 preface starts ``PRI ``. An empty ``data``
    needs more; anything that cannot become one of these is ``OTHER``.
    """
    if not data:
        return None
    if data[0] == 0x16:
        if len(data) < 2:
            return None
        return Sniffed.TLS if data[1] == 0x03 else Sniffed.OTHER
    if data[:4] == _H2_PREFACE[:4]:
        return Sniffed.HTTP
    if _H2_PREFACE.startswith(data):
        return None
    head = data[:_LONGEST_METHOD]
    for method in _METHODS:
        token = method + b" "
        if head.startswith(token):
            return Sniffed.HTTP
        if token.startswith(head):
            return None  # a prefix of a method: wait for more
    return Sniffed.OTHER


def upstream_alpn(client_offer: Sequence[str]) -> tuple[str, ...]:
    """The ALPN protocols to offer upstream: the client's HTTP ones, in its order.

    A client that offered no ALPN gets none offered upstream (it will speak
    HTTP/1.1 or whatever it speaks); protocols the relay cannot speak
    (``h3``, ``spdy/3``...) are left out.
    """
    seen: list[str] = []
    for proto in client_offer:
        if proto in HTTP_ALPN and proto not in seen:
            seen.append(proto)
    return tuple(seen)


def client_alpn(upstream_selected: str | None, client_offer: Sequence[str]) -> tuple[str, ...]:
    """The ALPN protocols offered to the client once the upstream chose.

    Only the upstream's choice (so both sides speak the same version); when
    the upstream chose nothing, ``http/1.1`` if the client offered it, else
    nothing (an ALPN-less handshake means HTTP/1.1 to both).
    """
    if upstream_selected is not None and upstream_selected in client_offer:
        return (upstream_selected,)
    if "http/1.1" in client_offer:
        return ("http/1.1",)
    return ()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def leaf_hosts(
    server_name: str | None,
    target_host: str,
    upstream_cert: x509.Certificate | None = None,
    *,
    max_names: int = 100,
) -> tuple[str, ...]:
    """The names (first: the CN) of the leaf certificate shown to the client.

    With SNI: that name (and the target when it is an IP, so a client that
    checks the address also passes). Without SNI: the upstream certificate's
    DNS and IP names (a client connecting by IP may still check a name it
    knows), then the target host; an IP target always gets its IP SAN.
    """
    names: list[str] = []

    def add(name: str) -> None:
        key = name.lower().rstrip(".").strip("[]")
        if key and key not in names and len(names) < max_names:
            names.append(key)

    if server_name:
        add(server_name)
        if _is_ip(target_host):
            add(target_host)
        return tuple(names)
    if _is_ip(target_host):
        add(target_host)
    if upstream_cert is not None:
        try:
            san = upstream_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except (x509.ExtensionNotFound, ValueError):
            san = None
        if san is not None:
            for dns in san.value.get_values_for_type(x509.DNSName):
                add(dns)
            for ip in san.value.get_values_for_type(x509.IPAddress):
                add(str(ip))
    add(target_host)
    return tuple(names)
