"""Hop-by-hop header fields (RFC 9110 section 7.6.1), removed by a forwarding proxy.

A proxy forwards end-to-end fields unchanged (order and casing kept) and drops
the fields that describe only one connection: ``Connection`` and every field
it lists, ``Proxy-Connection``, ``Keep-Alive``, ``TE``, ``Trailer``,
``Transfer-Encoding`` (each hop frames the body itself), ``Upgrade`` (kept,
with ``Connection: upgrade``, when a WebSocket upgrade is relayed), and the
proxy's own ``Proxy-Authorization``/``Proxy-Authenticate`` (credentials for
this proxy never travel further). Pure functions over :class:`Headers`.
"""

from __future__ import annotations

from typing import Final

from rama_http import Headers

__all__ = [
    "HOP_BY_HOP",
    "connection_tokens",
    "is_websocket_upgrade",
    "strip_hop_by_hop",
    "strip_hop_by_hop_fields",
]

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    }
)
"""Lower-cased names always removed (``Connection`` adds the names it lists)."""

# Cheap pre-filter: a header list whose names all have other lengths has no
# hop-by-hop field (the common request has none but Proxy-Connection/Connection).
_LENGTHS: Final = frozenset(len(n) for n in HOP_BY_HOP)


def connection_tokens(headers: Headers) -> set[str]:
    """The lower-cased options listed in every ``Connection`` field."""
    tokens: set[str] = set()
    for value in headers.get_all("connection"):
        for part in value.split(","):
            t = part.strip(" \t").lower()
            if t:
                tokens.add(t)
    return tokens


def is_websocket_upgrade(headers: Headers) -> bool:
    """``Connection: upgrade`` with ``Upgrade: websocket`` (RFC 6455 section 4.1)."""
    if "upgrade" not in connection_tokens(headers):
        return False
    return any(
        p.strip(" \t").split("/", 1)[0].lower() == "websocket"
        for v in headers.get_all("upgrade")
        for p in v.split(",")
    )


def strip_hop_by_hop(headers: Headers, *, keep_upgrade: bool = False) -> Headers:
    """``headers`` without hop-by-hop fields; the same object when there are none.

    With ``keep_upgrade`` (a relayed WebSocket handshake) ``Upgrade`` stays and
    ``Connection`` is reduced to ``upgrade``.
    """
    stripped = strip_hop_by_hop_fields(headers._items, headers._keys, keep_upgrade=keep_upgrade)
    if stripped is None:
        return headers
    return Headers.from_parsed(*stripped)


def strip_hop_by_hop_fields(
    fields: list[tuple[str, str]], keys: list[str], *, keep_upgrade: bool = False
) -> tuple[list[tuple[str, str]], list[str]] | None:
    """:func:`strip_hop_by_hop` over parsed ``(name, value)`` fields and their
    lower-cased names: the kept fields and names, or None when all are kept."""
    lengths = _LENGTHS
    hop = HOP_BY_HOP
    found = False
    listed: set[str] | None = None
    for i, k in enumerate(keys):
        if len(k) in lengths and k in hop:
            found = True
            if k == "connection":
                for part in fields[i][1].split(","):
                    t = part.strip(" \t").lower()
                    if t and t not in hop:
                        if listed is None:
                            listed = set()
                        listed.add(t)
    if not found:
        return None
    drop = hop if listed is None else hop | listed
    items: list[tuple[str, str]] = []
    out_keys: list[str] = []
    if keep_upgrade:
        drop = drop - {"upgrade", "connection"}
        for item, k in zip(fields, keys, strict=True):
            if k in drop:
                continue
            if k == "connection":
                item = (item[0], "upgrade")
            items.append(item)
            out_keys.append(k)
    else:
        for item, k in zip(fields, keys, strict=True):
            if k not in drop:
                items.append(item)
                out_keys.append(k)
    return items, out_keys
