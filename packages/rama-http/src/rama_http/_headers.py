"""Headers that keep the order and the original casing of names.

A proxy must forward ``X-Custom-Header`` and the order of headers unchanged,
so :class:`Headers` is a list of ``(name, value)`` pairs as sent, with
case-insensitive lookups on top. Names and values are ``str`` decoded as
latin-1 (so any byte round-trips); :meth:`Headers.raw` gives the bytes form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeAlias, overload

from ._errors import InvalidHeader

__all__ = ["HeaderInput", "Headers", "validate_header"]

HeaderInput: TypeAlias = (
    "Headers | Mapping[str, str] | Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]] | None"
)
"""What :class:`Headers` and the Request/Response constructors accept."""

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


# Servers build the same few fields for every response; remembering the pairs
# that passed validation saves two regex runs per field. Bounded in entries and
# value size so client-controlled values cannot grow it.
_VALID: dict[tuple[str, str], None] = {}
_VALID_MAX = 4096
_VALID_MAX_VALUE = 200


def validate_header(name: str, value: str) -> None:
    """Raise :class:`InvalidHeader` unless ``name`` is a token and ``value`` has no CTLs."""
    if (name, value) in _VALID:
        return
    if not _TOKEN.match(name):
        raise InvalidHeader(f"invalid header name {name!r}")
    if _BAD_VALUE.search(value):
        raise InvalidHeader(f"invalid characters in value of header {name!r}")
    if len(value) <= _VALID_MAX_VALUE and len(_VALID) < _VALID_MAX:
        _VALID[(name, value)] = None


def _s(x: str | bytes) -> str:
    return x.decode("latin-1") if isinstance(x, bytes | bytearray) else x


class Headers:
    """An ordered multi-map of header fields with case-insensitive names.

    Iterating yields ``(name, value)`` pairs in the order and casing they were
    added or received.
    """

    __slots__ = ("_items", "_keys")

    def __init__(self, headers: HeaderInput = None) -> None:
        self._items: list[tuple[str, str]] = []
        self._keys: list[str] = []
        if headers is None:
            return
        pairs: Iterable[tuple[str | bytes, str | bytes]]
        t = type(headers)
        if t is list or t is tuple:
            pairs = headers  # type: ignore[assignment]  # the common case: no ABC check
        elif isinstance(headers, Headers):
            self._items = list(headers._items)
            self._keys = list(headers._keys)
            return
        else:
            pairs = headers.items() if isinstance(headers, Mapping) else headers
        items, keys = self._items, self._keys
        valid = _VALID
        for name, value in pairs:
            if type(name) is not str:
                name = _s(name)
            if type(value) is not str:
                value = _s(value)
            if (name, value) not in valid:
                validate_header(name, value)
            items.append((name, value))
            keys.append(name.lower())

    @classmethod
    def from_trusted(cls, items: list[tuple[str, str]]) -> Headers:
        """Build from already validated ``(name, value)`` pairs without copying or checks.

        Used by parsers on the hot path; the list is taken over, not copied.
        """
        h = cls.__new__(cls)
        h._items = items
        h._keys = [n.lower() for n, _ in items]
        return h

    @classmethod
    def from_parsed(cls, items: list[tuple[str, str]], keys: list[str]) -> Headers:
        """Build from a parser's pairs and their lower-cased names (both taken over)."""
        h = cls.__new__(cls)
        h._items = items
        h._keys = keys
        return h

    # -- lookups ---------------------------------------------------------------------
    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name`` (case-insensitive), else ``default``."""
        key = name.lower()
        keys = self._keys
        for i in range(len(keys)):
            if keys[i] == key:
                return self._items[i][1]
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order (empty list when absent)."""
        key = name.lower()
        return [self._items[i][1] for i, k in enumerate(self._keys) if k == key]

    def get_list(self, name: str) -> list[str]:
        """Every comma-separated element of every ``name`` field, stripped, empties dropped.

        Only SP and HTAB are stripped (RFC 9110 section 5.6.3 OWS), not the
        Unicode whitespace ``str.strip()`` also removes (NBSP, NEL...).
        """
        out: list[str] = []
        for value in self.get_all(name):
            out.extend(e for p in value.split(",") if (e := p.strip(" \t")))
        return out

    def contains(self, name: str) -> bool:
        """Whether a field called ``name`` (case-insensitive) is present."""
        return name.lower() in self._keys

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._keys

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def has_token(self, name: str, token: str) -> bool:
        """Whether the comma-separated list in ``name`` contains ``token`` (case-insensitive)."""
        token = token.lower()
        return any(t.lower() == token for t in self.get_list(name))

    # -- mutation --------------------------------------------------------------------
    def add(self, name: str, value: str) -> None:
        """Append a field, keeping any existing ones of the same name."""
        validate_header(name, value)
        self._items.append((name, value))
        self._keys.append(name.lower())

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` with one field.

        The new field takes the position of the first old one (or goes last),
        so replacing a value keeps the header order a peer sent.
        """
        validate_header(name, value)
        key = name.lower()
        first = -1
        items: list[tuple[str, str]] = []
        keys: list[str] = []
        for i, k in enumerate(self._keys):
            if k == key:
                if first < 0:
                    first = len(items)
                    items.append((name, value))
                    keys.append(key)
                continue
            items.append(self._items[i])
            keys.append(k)
        if first < 0:
            items.append((name, value))
            keys.append(key)
        self._items, self._keys = items, keys

    def setdefault(self, name: str, value: str) -> str:
        """Add ``name: value`` unless present; return the value in effect."""
        current = self.get(name)
        if current is None:
            self.add(name, value)
            return value
        return current

    def remove(self, name: str) -> int:
        """Remove every field called ``name``; return how many were removed."""
        key = name.lower()
        keep = [i for i, k in enumerate(self._keys) if k != key]
        removed = len(self._keys) - len(keep)
        if removed:
            self._items = [self._items[i] for i in keep]
            self._keys = [self._keys[i] for i in keep]
        return removed

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        if not self.remove(name):
            raise KeyError(name)

    def extend(self, other: Iterable[tuple[str, str]]) -> None:
        """Append every pair of ``other``."""
        for name, value in other:
            self.add(name, value)

    def clear(self) -> None:
        """Remove every field."""
        self._items = []
        self._keys = []

    def copy(self) -> Headers:
        """A shallow copy."""
        return Headers(self)

    # -- views -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def items(self) -> list[tuple[str, str]]:
        """The ``(name, value)`` pairs as sent (a copy)."""
        return list(self._items)

    def names(self) -> list[str]:
        """Field names in order and original casing (duplicates kept)."""
        return [n for n, _ in self._items]

    def keys(self) -> list[str]:
        """Distinct lower-cased field names in first-seen order."""
        return list(dict.fromkeys(self._keys))

    def raw(self) -> list[tuple[bytes, bytes]]:
        """The pairs as latin-1 bytes, as they go on the wire."""
        return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in self._items]

    def to_bytes(self) -> bytes:
        """The HTTP/1.x header block (``Name: value\\r\\n`` lines, no final blank line)."""
        return "".join(f"{n}: {v}\r\n" for n, v in self._items).encode("latin-1")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"
