"""Transform requests, responses and errors around a service.

Mapping functions may be plain or ``async``; an awaitable result is awaited.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeAlias, TypeVar, cast, overload

from .._context import Context
from .._service import Service

__all__ = [
    "MapError",
    "MapErrorLayer",
    "MapRequest",
    "MapRequestLayer",
    "MapResponse",
    "MapResponseLayer",
]

A = TypeVar("A")
B = TypeVar("B")
Out = TypeVar("Out")
R = TypeVar("R")

MaybeAwaitable: TypeAlias = Awaitable[R] | R


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class MapRequest(Generic[A, B, Out]):
    """Calls ``fn(ctx, req)`` and serves its result to the inner service."""

    __slots__ = ("fn", "inner")

    @overload
    def __init__(
        self, inner: Service[B, Out], fn: Callable[[Context, A], Awaitable[B]]
    ) -> None: ...
    @overload
    def __init__(self, inner: Service[B, Out], fn: Callable[[Context, A], B]) -> None: ...
    def __init__(
        self, inner: Service[B, Out], fn: Callable[[Context, A], MaybeAwaitable[B]]
    ) -> None:
        self.inner = inner
        self.fn = fn

    async def serve(self, ctx: Context, req: A) -> Out:
        """Map, then serve."""
        mapped: B = await _resolve(self.fn(ctx, req))
        return await self.inner.serve(ctx, mapped)


class MapRequestLayer(Generic[A, B]):
    """Layer producing :class:`MapRequest`."""

    __slots__ = ("fn",)

    @overload
    def __init__(self, fn: Callable[[Context, A], Awaitable[B]]) -> None: ...
    @overload
    def __init__(self, fn: Callable[[Context, A], B]) -> None: ...
    def __init__(self, fn: Callable[[Context, A], MaybeAwaitable[B]]) -> None:
        self.fn = fn

    def layer(self, inner: Service[B, Out]) -> MapRequest[A, B, Out]:
        """Wrap ``inner``."""
        return MapRequest(inner, cast(Callable[[Context, A], B], self.fn))


class MapResponse(Generic[R, A, B]):
    """Serves, then returns ``fn(ctx, response)``."""

    __slots__ = ("fn", "inner")

    @overload
    def __init__(self, inner: Service[R, A], fn: Callable[[Context, A], Awaitable[B]]) -> None: ...
    @overload
    def __init__(self, inner: Service[R, A], fn: Callable[[Context, A], B]) -> None: ...
    def __init__(self, inner: Service[R, A], fn: Callable[[Context, A], MaybeAwaitable[B]]) -> None:
        self.inner = inner
        self.fn = fn

    async def serve(self, ctx: Context, req: R) -> B:
        """Serve, then map."""
        resp = await self.inner.serve(ctx, req)
        mapped: B = await _resolve(self.fn(ctx, resp))
        return mapped


class MapResponseLayer(Generic[A, B]):
    """Layer producing :class:`MapResponse`."""

    __slots__ = ("fn",)

    @overload
    def __init__(self, fn: Callable[[Context, A], Awaitable[B]]) -> None: ...
    @overload
    def __init__(self, fn: Callable[[Context, A], B]) -> None: ...
    def __init__(self, fn: Callable[[Context, A], MaybeAwaitable[B]]) -> None:
        self.fn = fn

    def layer(self, inner: Service[R, A]) -> MapResponse[R, A, B]:
        """Wrap ``inner``."""
        return MapResponse(inner, cast(Callable[[Context, A], B], self.fn))


class MapError(Generic[R, Out]):
    """Replaces an exception of the inner service with ``fn(ctx, exc)``.

    The new exception is chained to the original (``raise new from exc``),
    unless ``fn`` returns the original itself. Cancellation is never mapped.
    """

    __slots__ = ("fn", "inner")

    def __init__(
        self, inner: Service[R, Out], fn: Callable[[Context, Exception], BaseException]
    ) -> None:
        self.inner = inner
        self.fn = fn

    async def serve(self, ctx: Context, req: R) -> Out:
        """Serve, mapping any ``Exception``."""
        try:
            return await self.inner.serve(ctx, req)
        except Exception as exc:
            mapped = self.fn(ctx, exc)
            if mapped is exc:
                raise
            raise mapped from exc


class MapErrorLayer:
    """Layer producing :class:`MapError`."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Context, Exception], BaseException]) -> None:
        self.fn = fn

    def layer(self, inner: Service[R, Out]) -> MapError[R, Out]:
        """Wrap ``inner``."""
        return MapError(inner, self.fn)
