"""What a request asks of its upstream proxy: the filter that username labels produce.

``john-country-us-residential`` authenticates ``john`` and yields
``ProxyFilter(country=("us",), residential=True)``; the proxy DB matches its
records against it (OR within a field, AND across fields).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProxyFilter"]


@dataclass(frozen=True, slots=True)
class ProxyFilter:
    """Constraints on the upstream proxy for one request; the empty filter matches all."""

    id: tuple[str, ...] = ()
    pool: tuple[str, ...] = ()
    continent: tuple[str, ...] = ()
    country: tuple[str, ...] = ()
    state: tuple[str, ...] = ()
    city: tuple[str, ...] = ()
    carrier: tuple[str, ...] = ()
    asn: tuple[str, ...] = ()
    datacenter: bool | None = None
    """True: only datacenter proxies; False: none of them; None: either."""
    residential: bool | None = None
    mobile: bool | None = None
    session: str | None = None
    """A sticky key: the same key keeps the same upstream while it is healthy."""
    new_connection: bool = False
    """Never reuse a pooled upstream connection for this request (rotation)."""

    @property
    def is_empty(self) -> bool:
        """Whether the filter constrains nothing."""
        return self == _EMPTY


_EMPTY = ProxyFilter()
