"""Proxies from the environment: ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``.

:class:`EnvProxies` reads them as curl and the Python HTTP clients do (pure
code over a mapping, so it is tested without touching ``os.environ``):

- the lowercase name wins over the uppercase one when both are set; an
  empty value means "not set";
- ``HTTP_PROXY`` (uppercase) is ignored when ``REQUEST_METHOD`` is set: a CGI
  process gets request headers as ``HTTP_*`` variables, so a client's
  ``Proxy:`` header would become the proxy ("httpoxy", as urllib does);
- ``https_proxy`` serves ``https://`` URLs, ``http_proxy`` ``http://`` ones,
  and ``all_proxy`` both when the specific one is not set;
- a proxy without a scheme (``proxy:3128``) is ``http://``;
- ``no_proxy`` is a comma (or space) separated list: ``*`` (no proxy at all),
  a domain (``example.com`` and ``.example.com`` both match the domain and
  its subdomains, ``*.example.com`` too), an IP address (``10.1.2.3``,
  ``::1``, ``[::1]``), a network in CIDR notation (``10.0.0.0/8``,
  ``fd00::/8``), any of those with ``:port`` to match only that port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from ._connect import ProxyConfig

__all__ = ["EnvProxies", "NoProxy"]

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = (environ.get(name.lower()) or "").strip()
    if not value:
        if name == "HTTP_PROXY" and "REQUEST_METHOD" in environ:
            return None  # httpoxy
        value = (environ.get(name.upper()) or "").strip()
    return value or None


def _proxy(value: str | None) -> ProxyConfig | None:
    if value is None:
        return None
    if "://" not in value:
        value = f"http://{value}"
    return ProxyConfig(value)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class _Rule:
    domain: str | None = None
    net: _Net | None = None
    port: int | None = None


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port``, ``[v6]:port``, bare ``v6``, ``net/len`` -> (host, port)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            return host, int(rest[1:])
        return host, None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
        return host, None
    return entry, None  # a bare IPv6 address or network: no port


class NoProxy:
    """The ``NO_PROXY`` list: which hosts go direct."""

    __slots__ = ("_all", "_rules")

    def __init__(self, value: str | None) -> None:
        self._all = False
        self._rules: list[_Rule] = []
        for raw in (value or "").replace(" ", ",").split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                self._all = True
                continue
            host, port = _split_port(entry)
            if "/" in host:
                try:
                    net = ipaddress.ip_network(host.strip("[]"), strict=False)
                except ValueError:
                    continue
                self._rules.append(_Rule(net=net, port=port))
                continue
            addr = _ip(host)
            if addr is not None:
                self._rules.append(_Rule(net=ipaddress.ip_network(addr), port=port))
                continue
            domain = host.lstrip("*").lstrip(".").rstrip(".")
            if domain:
                self._rules.append(_Rule(domain=domain, port=port))

    @property
    def everything(self) -> bool:
        """``NO_PROXY=*``: nothing goes through a proxy."""
        return self._all

    def __bool__(self) -> bool:
        return self._all or bool(self._rules)

    def matches(self, host: str, port: int) -> bool:
        """Whether a request to ``host:port`` goes direct."""
        if self._all:
            return True
        host = host.lower().rstrip(".")
        addr = _ip(host)
        for rule in self._rules:
            if rule.port is not None and rule.port != port:
                continue
            if rule.net is not None:
                if addr is not None and addr.version == rule.net.version and addr in rule.net:
                    return True
            elif rule.domain is not None and addr is None:
                d = rule.domain
                if host == d or host.endswith("." + d):
                    return True
        return False


class EnvProxies:
    """The proxies an environment asks for, per request URL (see the module docs)."""

    __slots__ = ("_cache", "http", "https", "no_proxy")

    def __init__(
        self,
        *,
        http: ProxyConfig | None = None,
        https: ProxyConfig | None = None,
        no_proxy: NoProxy | None = None,
    ) -> None:
        self.http = http
        """For ``http://`` URLs."""
        self.https = https
        """For ``https://`` URLs."""
        self.no_proxy = no_proxy or NoProxy(None)
        """Hosts that go direct."""
        self._cache: dict[tuple[str, str, int], ProxyConfig | None] = {}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> EnvProxies:
        """Read ``environ`` (``os.environ`` in the client)."""
        every = _proxy(_env(environ, "ALL_PROXY"))
        return cls(
            http=_proxy(_env(environ, "HTTP_PROXY")) or every,
            https=_proxy(_env(environ, "HTTPS_PROXY")) or every,
            no_proxy=NoProxy(_env(environ, "NO_PROXY")),
        )

    def __bool__(self) -> bool:
        return (self.http is not None or self.https is not None) and not self.no_proxy.everything

    def proxy_for(self, scheme: str, host: str, port: int) -> ProxyConfig | None:
        """The proxy for a request to ``scheme://host:port``, or None (direct)."""
        key = (scheme, host, port)
        cache = self._cache
        if key in cache:
            return cache[key]
        proxy = self.https if scheme == "https" else self.http
        if proxy is not None and self.no_proxy.matches(host, port):
            proxy = None
        if len(cache) < 1024:
            cache[key] = proxy
        return proxy
