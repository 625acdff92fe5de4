"""A stream that replays bytes already read before reading from the socket.

After a protocol switch (Upgrade, CONNECT) the HTTP/1.1 parser may hold
bytes the client sent right behind its request; the upgraded service must see
them first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from anyio.abc import ByteStream

__all__ = ["RewindStream"]


class RewindStream(ByteStream):
    """Wraps ``inner``; :meth:`receive` returns ``prefix`` before reading more."""

    def __init__(self, inner: ByteStream, prefix: bytes = b"") -> None:
        self.inner = inner
        self._prefix = prefix

    @property
    def pending(self) -> bytes:
        """Replayed bytes not yet received."""
        return self._prefix

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Replay buffered bytes first, then read from the inner stream."""
        if self._prefix:
            chunk, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            return chunk
        return await self.inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        """Write to the inner stream."""
        await self.inner.send(item)

    async def send_eof(self) -> None:
        """Half-close the inner stream."""
        await self.inner.send_eof()

    async def aclose(self) -> None:
        """Close the inner stream."""
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes
