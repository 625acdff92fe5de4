"""Matchers: predicates over (Context, request) that compose with ``& | ~``.

Later packages add domain matchers (HTTP method, path, host, socket address)
by subclassing :class:`Matcher`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from ._context import Context

__all__ = [
    "AllOf",
    "Always",
    "AnyOf",
    "FnMatcher",
    "Matcher",
    "Never",
    "Not",
    "matcher_fn",
]

R = TypeVar("R")
R_contra = TypeVar("R_contra", contravariant=True)


class Matcher(Generic[R_contra]):
    """Base class: implement :meth:`matches`; combine with ``&``, ``|`` and ``~``.

    Contravariant in the request type: a ``Matcher[object]`` (``Always``...)
    is usable wherever a ``Matcher[str]`` is expected.
    """

    __slots__ = ()

    def matches(self, ctx: Context, req: R_contra) -> bool:
        """Whether ``req`` (in ``ctx``) matches."""
        raise NotImplementedError

    def __and__(self, other: Matcher[R_contra]) -> Matcher[R_contra]:
        return AllOf(self, other)

    def __or__(self, other: Matcher[R_contra]) -> Matcher[R_contra]:
        return AnyOf(self, other)

    def __invert__(self) -> Matcher[R_contra]:
        return Not(self)


class Always(Matcher[object]):
    """Matches everything."""

    __slots__ = ()

    def matches(self, ctx: Context, req: object) -> bool:
        """Always True."""
        return True


class Never(Matcher[object]):
    """Matches nothing."""

    __slots__ = ()

    def matches(self, ctx: Context, req: object) -> bool:
        """Always False."""
        return False


class AllOf(Matcher[R]):
    """Matches when every inner matcher does (short-circuits; empty matches)."""

    __slots__ = ("matchers",)

    matchers: tuple[Matcher[R], ...]

    def __init__(self, *matchers: Matcher[R]) -> None:
        flat: list[Matcher[R]] = []
        for m in matchers:
            flat.extend(m.matchers if isinstance(m, AllOf) else (m,))
        self.matchers = tuple(flat)

    def matches(self, ctx: Context, req: R) -> bool:
        """True if all inner matchers match."""
        return all(m.matches(ctx, req) for m in self.matchers)

    def __repr__(self) -> str:
        return " & ".join(map(repr, self.matchers)) or "AllOf()"


class AnyOf(Matcher[R]):
    """Matches when any inner matcher does (short-circuits; empty never matches)."""

    __slots__ = ("matchers",)

    matchers: tuple[Matcher[R], ...]

    def __init__(self, *matchers: Matcher[R]) -> None:
        flat: list[Matcher[R]] = []
        for m in matchers:
            flat.extend(m.matchers if isinstance(m, AnyOf) else (m,))
        self.matchers = tuple(flat)

    def matches(self, ctx: Context, req: R) -> bool:
        """True if any inner matcher matches."""
        return any(m.matches(ctx, req) for m in self.matchers)

    def __repr__(self) -> str:
        return "(" + " | ".join(map(repr, self.matchers)) + ")"


class Not(Matcher[R]):
    """Inverts a matcher."""

    __slots__ = ("inner",)

    def __init__(self, inner: Matcher[R]) -> None:
        self.inner = inner

    def matches(self, ctx: Context, req: R) -> bool:
        """True if the inner matcher does not match."""
        return not self.inner.matches(ctx, req)

    def __invert__(self) -> Matcher[R]:
        return self.inner

    def __repr__(self) -> str:
        return f"~{self.inner!r}"


class FnMatcher(Matcher[R]):
    """A matcher from a plain predicate ``f(ctx, req) -> bool``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Context, R], bool]) -> None:
        self.fn = fn

    def matches(self, ctx: Context, req: R) -> bool:
        """Call the predicate."""
        return self.fn(ctx, req)

    def __repr__(self) -> str:
        return f"matcher_fn({getattr(self.fn, '__qualname__', self.fn)})"


def matcher_fn(fn: Callable[[Context, R], bool]) -> FnMatcher[R]:
    """Turn ``f(ctx, req) -> bool`` into a :class:`Matcher`."""
    return FnMatcher(fn)
