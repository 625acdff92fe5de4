"""HTTP request methods."""

from __future__ import annotations

from typing import ClassVar

__all__ = ["Method"]

_TCHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)


class Method(str):
    """A request method: a ``str`` (case-sensitive, as HTTP says) with constants.

    ``Method("GET") == "GET"``; extension methods are allowed as long as they
    are tokens.
    """

    __slots__ = ()

    GET: ClassVar[Method]
    HEAD: ClassVar[Method]
    POST: ClassVar[Method]
    PUT: ClassVar[Method]
    DELETE: ClassVar[Method]
    CONNECT: ClassVar[Method]
    OPTIONS: ClassVar[Method]
    TRACE: ClassVar[Method]
    PATCH: ClassVar[Method]

    def __new__(cls, value: str) -> Method:
        known = _KNOWN.get(value)
        if known is not None:
            return known
        if not value or not all(c in _TCHARS for c in value.encode("latin-1", "replace")):
            raise ValueError(f"invalid method {value!r}")
        return str.__new__(cls, value)

    @property
    def is_safe(self) -> bool:
        """GET, HEAD, OPTIONS, TRACE (RFC 9110 section 9.2.1)."""
        return self in ("GET", "HEAD", "OPTIONS", "TRACE")

    @property
    def is_idempotent(self) -> bool:
        """Safe methods plus PUT and DELETE."""
        return self.is_safe or self in ("PUT", "DELETE")

    def __repr__(self) -> str:
        return f"Method({str(self)!r})"


_KNOWN: dict[str, Method] = {}
for _name in ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"):
    _m = str.__new__(Method, _name)
    _KNOWN[_name] = _m
    setattr(Method, _name, _m)
