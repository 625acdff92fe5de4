"""Limit how many calls run at once."""

from __future__ import annotations

import enum
from typing import Generic, TypeVar

import anyio

from .._context import Context
from .._errors import Overloaded
from .._service import Service

__all__ = ["ConcurrencyLimit", "ConcurrencyLimitLayer", "LimitPolicy"]

In = TypeVar("In")
Out = TypeVar("Out")


class LimitPolicy(enum.Enum):
    """What to do with a call once the limit is reached."""

    WAIT = "wait"
    """Queue until a slot frees (optionally bounded by ``wait_timeout``)."""
    REJECT = "reject"
    """Fail at once with :class:`~rama_core.Overloaded`."""


class ConcurrencyLimit(Generic[In, Out]):
    """Runs at most ``max_concurrent`` calls of the inner service at a time."""

    __slots__ = ("_in_flight", "_slots", "inner", "max_concurrent", "policy", "wait_timeout")

    def __init__(
        self,
        inner: Service[In, Out],
        max_concurrent: int,
        policy: LimitPolicy = LimitPolicy.WAIT,
        wait_timeout: float | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.inner = inner
        self.max_concurrent = max_concurrent
        self.policy = policy
        self.wait_timeout = wait_timeout
        self._in_flight = 0
        # Created on first use: anyio primitives need a running event loop.
        self._slots: anyio.Semaphore | None = None

    @property
    def in_flight(self) -> int:
        """Calls currently running."""
        return self._in_flight

    async def serve(self, ctx: Context, req: In) -> Out:
        """Serve when a slot is free, per the policy."""
        if self._slots is None:
            self._slots = anyio.Semaphore(self.max_concurrent)
        slots = self._slots
        if self.policy is LimitPolicy.REJECT:
            try:
                slots.acquire_nowait()
            except anyio.WouldBlock:
                raise Overloaded(f"concurrency limit of {self.max_concurrent} reached") from None
        elif self.wait_timeout is None:
            await slots.acquire()
        else:
            acquired = False
            with anyio.move_on_after(self.wait_timeout):
                await slots.acquire()
                acquired = True
            if not acquired:
                raise Overloaded(
                    f"no free slot of {self.max_concurrent} within {self.wait_timeout:g}s"
                )
        return await self._serve_holding(slots, ctx, req)

    async def _serve_holding(self, slots: anyio.Semaphore, ctx: Context, req: In) -> Out:
        self._in_flight += 1
        try:
            return await self.inner.serve(ctx, req)
        finally:
            self._in_flight -= 1
            slots.release()


class ConcurrencyLimitLayer:
    """Layer producing :class:`ConcurrencyLimit`; each wrapped service gets its own slots."""

    __slots__ = ("max_concurrent", "policy", "wait_timeout")

    def __init__(
        self,
        max_concurrent: int,
        policy: LimitPolicy = LimitPolicy.WAIT,
        wait_timeout: float | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.max_concurrent = max_concurrent
        self.policy = policy
        self.wait_timeout = wait_timeout

    def layer(self, inner: Service[In, Out]) -> ConcurrencyLimit[In, Out]:
        """Wrap ``inner``."""
        return ConcurrencyLimit(inner, self.max_concurrent, self.policy, self.wait_timeout)
