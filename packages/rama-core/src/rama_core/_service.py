"""The Service abstraction: an async function of (Context, request) -> response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar, runtime_checkable

from ._context import Context

__all__ = ["Service", "ServiceFn", "service_fn"]

In = TypeVar("In")
Out = TypeVar("Out")
In_contra = TypeVar("In_contra", contravariant=True)
Out_co = TypeVar("Out_co", covariant=True)


@runtime_checkable
class Service(Protocol[In_contra, Out_co]):
    """Anything with ``async def serve(self, ctx, req)``.

    Services are plain objects: keep per-call state in the Context or in
    locals so one instance can serve many tasks at once.
    """

    async def serve(self, ctx: Context, req: In_contra) -> Out_co:
        """Handle one request."""
        ...


class ServiceFn(Generic[In, Out]):
    """A Service made from a plain ``async def f(ctx, req)``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Context, In], Awaitable[Out]]) -> None:
        self.fn = fn

    async def serve(self, ctx: Context, req: In) -> Out:
        """Call the wrapped function."""
        return await self.fn(ctx, req)

    def __repr__(self) -> str:
        return f"service_fn({getattr(self.fn, '__qualname__', self.fn)!r})"


def service_fn(fn: Callable[[Context, In], Awaitable[Out]]) -> ServiceFn[In, Out]:
    """Turn ``async def f(ctx, req)`` into a Service. Usable as a decorator."""
    return ServiceFn(fn)
