"""What a request asks of its upstream proxy: the filter that username labels produce.

``john-country-us-residential`` authenticates ``john`` and yields
``ProxyFilter(country=("us",), residential=True)``; the proxy DB matches its
records against it (OR within a field, AND across fields, ``*`` matches any).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FILTER_FIELDS", "FLAG_FIELDS", "ProxyFilter"]

FILTER_FIELDS = ("id", "pool", "continent", "country", "state", "city", "carrier", "asn")
"""The string fields of a :class:`ProxyFilter` (each a tuple of accepted values)."""

FLAG_FIELDS = ("datacenter", "residential", "mobile")
"""The tri-state flags of a :class:`ProxyFilter` (True / False / None = either)."""


@dataclass(frozen=True, slots=True)
class ProxyFilter:
    """Constraints on the upstream proxy for one request; the empty filter matches all.

    String fields hold the accepted values (lowercased, OR-ed together; ``"*"``
    accepts any value); an empty tuple does not constrain the field.
    """

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
    extra: tuple[tuple[str, str], ...] = ()
    """``(key, value)`` pairs from custom labels (for custom selectors); not matched by the DB."""

    @property
    def is_empty(self) -> bool:
        """Whether the filter constrains nothing."""
        return self == _EMPTY

    @property
    def match_key(self) -> ProxyFilter:
        """The part of the filter the proxy DB matches on (no session, no per-request flags)."""
        if self.session is None and not self.new_connection and not self.extra:
            return self
        return ProxyFilter(
            self.id,
            self.pool,
            self.continent,
            self.country,
            self.state,
            self.city,
            self.carrier,
            self.asn,
            self.datacenter,
            self.residential,
            self.mobile,
        )

    def describe(self) -> str:
        """A short human form for logs and errors, e.g. ``country=us|gb residential``."""
        parts: list[str] = []
        for name in FILTER_FIELDS:
            values: tuple[str, ...] = getattr(self, name)
            if values:
                parts.append(f"{name}={'|'.join(values)}")
        for name in FLAG_FIELDS:
            flag: bool | None = getattr(self, name)
            if flag is not None:
                parts.append(name if flag else f"!{name}")
        return " ".join(parts) or "any"


_EMPTY = ProxyFilter()
