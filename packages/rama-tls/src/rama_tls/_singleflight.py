"""One in-flight computation per key: concurrent callers share its result.

Used by the leaf-certificate and SSLContext caches so that a burst of
handshakes for the same new name issues one certificate (and builds one
context) instead of one per handshake.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar, cast

import anyio

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Call(Generic[V]):
    __slots__ = ("done", "finished", "value")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.finished = False
        self.value: V | None = None


class SingleFlight(Generic[K, V]):
    """Runs ``produce`` once per key at a time; callers arriving meanwhile wait for it.

    When the running call fails or is cancelled, the waiters do not inherit its
    exception: each retries (the first one to wake becomes the new runner), so
    a cancelled handshake never fails the others. Belongs to one event loop.
    """

    def __init__(self) -> None:
        self._calls: dict[K, _Call[V]] = {}

    async def run(self, key: K, produce: Callable[[], Awaitable[V]]) -> V:
        """The result of ``produce()`` for ``key``, shared with concurrent callers."""
        while (running := self._calls.get(key)) is not None:
            await running.done.wait()
            if running.finished:
                return cast(V, running.value)
        call: _Call[V] = _Call()
        self._calls[key] = call
        try:
            value = await produce()
            call.value = value
            call.finished = True
            return value
        finally:
            del self._calls[key]
            call.done.set()
