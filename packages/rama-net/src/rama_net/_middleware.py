"""Stream middleware: byte counting and read/write rate limiting.

Each wrapper is an :class:`anyio.abc.ByteStream` around another one, and each
comes with a layer for stream services (``layer(inner)`` gives a service that
wraps the stream before calling ``inner``). Wrapped streams are no longer
plain sockets, so :func:`rama_net` falls back to its copy path
for them, which keeps the counts and limits exact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import ByteStream

from rama_core import Context, Service

__all__ = [
    "ByteCountLayer",
    "ByteCounters",
    "CountingStream",
    "RateLimitLayer",
    "RateLimitedStream",
    "TokenBucket",
]

Out = TypeVar("Out")


@dataclass
class ByteCounters:
    """Bytes received from and sent to the peer of one stream (a Context extension)."""

    received: int = 0
    sent: int = 0


class CountingStream(ByteStream):
    """Counts every byte through ``inner`` into :class:`ByteCounters`."""

    def __init__(self, inner: ByteStream, counters: ByteCounters | None = None) -> None:
        self.inner = inner
        self.counters = counters if counters is not None else ByteCounters()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Receive and count."""
        data = await self.inner.receive(max_bytes)
        self.counters.received += len(data)
        return data

    async def send(self, item: bytes) -> None:
        """Send and count."""
        await self.inner.send(item)
        self.counters.sent += len(item)

    async def send_eof(self) -> None:
        """Half-close the inner stream."""
        await self.inner.send_eof()

    async def aclose(self) -> None:
        """Close the inner stream."""
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes


class _CountingService(Generic[Out]):
    def __init__(self, inner: Service[ByteStream, Out]) -> None:
        self.inner = inner

    async def serve(self, ctx: Context, stream: ByteStream) -> Out:
        counters = ByteCounters()
        ctx.insert(counters)
        return await self.inner.serve(ctx, CountingStream(stream, counters))


class ByteCountLayer:
    """Wraps each connection in a :class:`CountingStream`; counters go into the Context."""

    def layer(self, inner: Service[ByteStream, Out]) -> Service[ByteStream, Out]:
        """Wrap ``inner``."""
        return _CountingService(inner)


class TokenBucket:
    """A byte budget refilled at ``rate`` bytes/second, holding at most ``burst``."""

    def __init__(self, rate: float, burst: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(int(rate / 10), 1)
        if self.burst < 1:
            raise ValueError("burst must be at least one byte")
        self._tokens = float(self.burst)
        self._stamp = anyio.current_time()

    def _refill(self) -> None:
        now = anyio.current_time()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, want: int) -> int:
        """Wait until at least one byte is allowed; grant up to ``want`` (and ``burst``)."""
        while True:
            self._refill()
            if self._tokens >= 1:
                granted = min(want, int(self._tokens))
                self._tokens -= granted
                return granted
            await anyio.sleep((1 - self._tokens) / self.rate)

    def give_back(self, n: int) -> None:
        """Return ``n`` granted bytes that were not used."""
        self._tokens = min(self.burst, self._tokens + n)


class RateLimitedStream(ByteStream):
    """Caps read and/or write throughput of ``inner`` (bytes per second)."""

    def __init__(
        self,
        inner: ByteStream,
        *,
        read: TokenBucket | None = None,
        write: TokenBucket | None = None,
    ) -> None:
        self.inner = inner
        self.read_bucket = read
        self.write_bucket = write

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Receive at most what the read budget allows."""
        bucket = self.read_bucket
        if bucket is None:
            return await self.inner.receive(max_bytes)
        granted = await bucket.take(max_bytes)
        try:
            data = await self.inner.receive(granted)
        except BaseException:
            bucket.give_back(granted)
            raise
        bucket.give_back(granted - len(data))
        return data

    async def send(self, item: bytes) -> None:
        """Send in slices as the write budget allows."""
        bucket = self.write_bucket
        if bucket is None:
            await self.inner.send(item)
            return
        view = memoryview(item)
        while view:
            granted = await bucket.take(len(view))
            await self.inner.send(bytes(view[:granted]))
            view = view[granted:]

    async def send_eof(self) -> None:
        """Half-close the inner stream."""
        await self.inner.send_eof()

    async def aclose(self) -> None:
        """Close the inner stream."""
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes


class _RateLimitedService(Generic[Out]):
    def __init__(
        self, inner: Service[ByteStream, Out], read: float | None, write: float | None
    ) -> None:
        self.inner = inner
        self.read = read
        self.write = write

    async def serve(self, ctx: Context, stream: ByteStream) -> Out:
        limited = RateLimitedStream(
            stream,
            read=TokenBucket(self.read) if self.read else None,
            write=TokenBucket(self.write) if self.write else None,
        )
        return await self.inner.serve(ctx, limited)


class RateLimitLayer:
    """Gives each connection its own read/write budget in bytes per second."""

    def __init__(self, *, read: float | None = None, write: float | None = None) -> None:
        self.read = read
        self.write = write

    def layer(self, inner: Service[ByteStream, Out]) -> Service[ByteStream, Out]:
        """Wrap ``inner``."""
        return _RateLimitedService(inner, self.read, self.write)
