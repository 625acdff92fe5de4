"""Route patterns and the tree that matches them in time linear in the path's depth.

A pattern is a path of segments: static text (``users``), a parameter
(``{id}``, or typed ``{id:int}``) or, last, a wildcard (``{*path}``) taking
the rest of the path. The tree keeps, per node, a dict of static children,
at most one parameter child per converter and one wildcard, so a lookup costs
one dict probe per segment however many routes there are. Static segments win
over parameters, parameters over wildcards; a failed deeper match backtracks.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import unquote

__all__ = ["CONVERTERS", "Converter", "PatternError", "RouteTree", "parse_pattern"]

T = TypeVar("T")


class PatternError(ValueError):
    """A route pattern that cannot be registered (syntax, or a conflict)."""


@dataclass(frozen=True, slots=True)
class Converter:
    """Turns a path segment into a typed value; ``None`` means the segment does not match."""

    name: str
    parse: Callable[[str], object | None]


def _int(s: str) -> int | None:
    return int(s) if s.isascii() and (s.isdigit() or (s[:1] == "-" and s[1:].isdigit())) else None


def _float(s: str) -> float | None:
    try:
        v = float(s)
    except ValueError:
        return None
    return v if s.strip() == s and s.lower() not in ("nan", "inf", "-inf", "infinity") else None


def _uuid(s: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(s) if len(s) in (32, 36) else None
    except ValueError:
        return None


CONVERTERS: dict[str, Converter] = {
    "str": Converter("str", lambda s: s if s else None),
    "int": Converter("int", _int),
    "float": Converter("float", _float),
    "uuid": Converter("uuid", _uuid),
}
"""Converters usable as ``{name:conv}``; add to this dict for custom ones."""

_PARAM = re.compile(r"^\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_][A-Za-z0-9_]*))?\}$")


@dataclass(frozen=True, slots=True)
class _Segment:
    kind: str  # "static" | "param" | "wildcard"
    text: str  # static text, or the parameter's name
    converter: Converter | None = None


def parse_pattern(pattern: str) -> list[_Segment]:
    """Split ``/users/{id:int}/files/{*path}`` into segments; :class:`PatternError` if invalid."""
    if not pattern.startswith("/"):
        raise PatternError(f"route pattern must start with '/': {pattern!r}")
    parts = pattern[1:].split("/")
    segments: list[_Segment] = []
    names: set[str] = set()
    for i, part in enumerate(parts):
        m = _PARAM.match(part)
        if m is None:
            if "{" in part or "}" in part:
                raise PatternError(f"invalid segment {part!r} in {pattern!r}")
            segments.append(_Segment("static", part))
            continue
        star, name, conv = m.groups()
        if name in names:
            raise PatternError(f"parameter {name!r} appears twice in {pattern!r}")
        names.add(name)
        if star:
            if i != len(parts) - 1:
                raise PatternError(f"wildcard {{*{name}}} must be last in {pattern!r}")
            if conv:
                raise PatternError(f"a wildcard takes no converter: {pattern!r}")
            segments.append(_Segment("wildcard", name))
        else:
            converter = CONVERTERS.get(conv or "str")
            if converter is None:
                raise PatternError(f"unknown converter {conv!r} in {pattern!r}")
            segments.append(_Segment("param", name, converter))
    return segments


@dataclass(slots=True)
class _Node(Generic[T]):
    static: dict[str, _Node[T]] = field(default_factory=dict)
    params: list[tuple[str, Converter, _Node[T]]] = field(default_factory=list)
    wildcard: tuple[str, T] | None = None
    value: T | None = None
    pattern: str | None = None


class RouteTree(Generic[T]):
    """Patterns -> values; :meth:`match` returns the value and the decoded parameters."""

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self._wild_patterns: dict[int, str] = {}

    def insert(self, pattern: str, value: T) -> None:
        """Register ``pattern``; registering a pattern twice is a :class:`PatternError`."""
        node = self._root
        for seg in parse_pattern(pattern):
            if seg.kind == "static":
                node = node.static.setdefault(seg.text, _Node())
            elif seg.kind == "param":
                assert seg.converter is not None
                for name, conv, child in node.params:
                    if conv.name == seg.converter.name:
                        if name != seg.text:
                            raise PatternError(
                                f"{pattern!r}: parameter {{{seg.text}}} conflicts with "
                                f"{{{name}}} at the same position"
                            )
                        node = child
                        break
                else:
                    child = _Node[T]()
                    node.params.append((seg.text, seg.converter, child))
                    # str last: typed converters are tried first ({id:int} before {slug})
                    node.params.sort(key=lambda p: p[1].name == "str")
                    node = child
            else:
                if node.wildcard is not None:
                    raise PatternError(f"{pattern!r} conflicts with an existing wildcard route")
                node.wildcard = (seg.text, value)
                return
        if node.value is not None:
            raise PatternError(f"route {pattern!r} is already registered")
        node.value = value
        node.pattern = pattern

    def match(self, path: str) -> tuple[T, dict[str, object]] | None:
        """The value for ``path`` (a raw request path, percent-encoded) and its parameters."""
        if not path.startswith("/"):
            return None
        raw = path[1:].split("/")
        segments = [unquote(s) if "%" in s else s for s in raw]
        params: dict[str, object] = {}
        found = self._match(self._root, segments, raw, 0, params)
        return (found, params) if found is not None else None

    def _match(
        self,
        node: _Node[T],
        segments: list[str],
        raw: list[str],
        i: int,
        params: dict[str, object],
    ) -> T | None:
        if i == len(segments):
            # `/static/{*path}` matches `/static/` and below, not `/static` itself
            return node.value
        seg = segments[i]
        child = node.static.get(seg)
        if child is not None:
            found = self._match(child, segments, raw, i + 1, params)
            if found is not None:
                return found
        for name, conv, pchild in node.params:
            parsed = conv.parse(seg)
            if parsed is None:
                continue
            found = self._match(pchild, segments, raw, i + 1, params)
            if found is not None:
                params[name] = parsed
                return found
        if node.wildcard is not None:
            name, value = node.wildcard
            params[name] = "/".join(segments[i:])
            return value
        return None
