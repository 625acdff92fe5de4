"""Insert a fixed value into the Context of every call."""

from __future__ import annotations

from typing import Generic, TypeVar

from .._context import Context
from .._service import Service

__all__ = ["AddExtension", "AddExtensionLayer"]

In = TypeVar("In")
Out = TypeVar("Out")
T = TypeVar("T")


class AddExtension(Generic[In, Out, T]):
    """Inserts ``value`` into the Context, then serves."""

    __slots__ = ("inner", "key", "value")

    def __init__(self, inner: Service[In, Out], value: T, key: type[T] | None = None) -> None:
        self.inner = inner
        self.value = value
        self.key = key

    async def serve(self, ctx: Context, req: In) -> Out:
        """Insert and serve."""
        ctx.insert(self.value, key=self.key)
        return await self.inner.serve(ctx, req)


class AddExtensionLayer(Generic[T]):
    """Layer producing :class:`AddExtension`."""

    __slots__ = ("key", "value")

    def __init__(self, value: T, key: type[T] | None = None) -> None:
        self.value = value
        self.key = key

    def layer(self, inner: Service[In, Out]) -> AddExtension[In, Out, T]:
        """Wrap ``inner``."""
        return AddExtension(inner, self.value, self.key)
