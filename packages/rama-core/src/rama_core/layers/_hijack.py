"""Route matching requests to another service ("hijack"), or pick one of two."""

from __future__ import annotations

from typing import Generic, TypeVar

from .._context import Context
from .._matcher import Matcher
from .._service import Service

__all__ = ["Either", "Hijack", "HijackLayer"]

In = TypeVar("In")
Out = TypeVar("Out")


class Either(Generic[In, Out]):
    """Serves with ``left`` when ``matcher`` matches, else with ``right``."""

    __slots__ = ("left", "matcher", "right")

    def __init__(
        self, matcher: Matcher[In], left: Service[In, Out], right: Service[In, Out]
    ) -> None:
        self.matcher = matcher
        self.left = left
        self.right = right

    async def serve(self, ctx: Context, req: In) -> Out:
        """Dispatch on the matcher."""
        if self.matcher.matches(ctx, req):
            return await self.left.serve(ctx, req)
        return await self.right.serve(ctx, req)


class Hijack(Either[In, Out]):
    """The inner service, except that requests matching ``matcher`` go to ``hijacker``."""

    __slots__ = ()

    def __init__(
        self, inner: Service[In, Out], matcher: Matcher[In], hijacker: Service[In, Out]
    ) -> None:
        super().__init__(matcher, hijacker, inner)


class HijackLayer(Generic[In, Out]):
    """Layer producing :class:`Hijack`."""

    __slots__ = ("hijacker", "matcher")

    def __init__(self, matcher: Matcher[In], hijacker: Service[In, Out]) -> None:
        self.matcher = matcher
        self.hijacker = hijacker

    def layer(self, inner: Service[In, Out]) -> Hijack[In, Out]:
        """Wrap ``inner``."""
        return Hijack(inner, self.matcher, self.hijacker)
