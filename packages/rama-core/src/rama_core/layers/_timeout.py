"""Bound the time a service may take."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio

from .._context import Context
from .._errors import ServiceTimeout
from .._service import Service

__all__ = ["Timeout", "TimeoutLayer"]

In = TypeVar("In")
Out = TypeVar("Out")

Fallback = Callable[[Context, In], Awaitable[Out]]


class Timeout(Generic[In, Out]):
    """Cancels the inner service after ``seconds``.

    Raises :class:`~rama_core.ServiceTimeout`, or answers with
    ``fallback(ctx, req)`` when one is given.
    """

    __slots__ = ("fallback", "inner", "seconds")

    def __init__(
        self,
        inner: Service[In, Out],
        seconds: float,
        fallback: Fallback[In, Out] | None = None,
    ) -> None:
        if seconds <= 0:
            raise ValueError("timeout must be positive")
        self.inner = inner
        self.seconds = seconds
        self.fallback = fallback

    async def serve(self, ctx: Context, req: In) -> Out:
        """Serve with a deadline."""
        with anyio.move_on_after(self.seconds) as scope:
            return await self.inner.serve(ctx, req)
        if not scope.cancelled_caught:  # pragma: no cover - the body always returns
            raise AssertionError("unreachable")
        if self.fallback is not None:
            return await self.fallback(ctx, req)
        raise ServiceTimeout(self.seconds)


class TimeoutLayer:
    """Layer producing :class:`Timeout`; keeps the wrapped service's types.

    ``fallback`` is not checked against the services this layer wraps (one
    layer may wrap services of different types); build ``Timeout(inner,
    seconds, fallback)`` directly to have mypy check it.
    """

    __slots__ = ("fallback", "seconds")

    def __init__(self, seconds: float, fallback: Fallback[Any, Any] | None = None) -> None:
        if seconds <= 0:
            raise ValueError("timeout must be positive")
        self.seconds = seconds
        self.fallback = fallback

    def layer(self, inner: Service[In, Out]) -> Timeout[In, Out]:
        """Wrap ``inner``."""
        return Timeout(inner, self.seconds, self.fallback)
