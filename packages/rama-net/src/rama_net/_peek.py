"""Look at the first bytes of a stream and hand them back.

Protocol detection (TLS ClientHello, PROXY protocol, HTTP vs h2 vs SOCKS5)
needs to read ahead without consuming: :class:`PeekStream` keeps what was
peeked and replays it to the next reader.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio
from anyio.abc import ByteStream

from rama_core import RamaError

__all__ = ["PeekError", "PeekStream"]


class PeekError(RamaError):
    """Peeking failed: too many bytes needed, or the peer was too slow."""


class PeekStream(ByteStream):
    """Wraps a stream; bytes read by :meth:`peek` are replayed by :meth:`receive`."""

    def __init__(self, inner: ByteStream, prefix: bytes = b"") -> None:
        self.inner = inner
        self._buffer = bytearray(prefix)
        self._eof = False

    @property
    def peeked(self) -> bytes:
        """Bytes read ahead and not yet consumed."""
        return bytes(self._buffer)

    @property
    def at_eof(self) -> bool:
        """Whether peeking hit the end of the stream."""
        return self._eof

    async def peek(self, n: int, *, timeout: float | None = None) -> bytes:
        """Return the first ``n`` bytes (fewer only at EOF) without consuming them."""
        await self.fill(lambda buf: len(buf) >= n, limit=max(n, 1), timeout=timeout)
        return bytes(self._buffer[:n])

    async def fill(
        self,
        done: Callable[[bytes], bool],
        *,
        limit: int = 64 * 1024,
        timeout: float | None = None,
        incremental: bool = False,
    ) -> bytes:
        """Read ahead until ``done(...)`` holds or EOF; return everything peeked.

        ``done`` gets the whole buffer on every call; with ``incremental`` it
        gets only the bytes it has not been shown yet (first what was already
        peeked, if anything, then each chunk as it arrives), for callers that
        parse as they go: then each byte is copied a bounded number of times
        however it is split into segments, instead of the buffer being copied
        again per segment.

        Raises :class:`PeekError` when ``limit`` bytes do not satisfy ``done``
        or ``timeout`` seconds pass first.
        """
        buffer = self._buffer
        with anyio.move_on_after(timeout) as scope:
            if incremental:
                satisfied = done(bytes(buffer)) if buffer else False
            else:
                satisfied = done(bytes(buffer))
            while not satisfied:
                if self._eof:
                    break
                if len(buffer) >= limit:
                    raise PeekError(f"no decision after peeking {len(buffer)} bytes")
                try:
                    chunk = await self.inner.receive(max(limit - len(buffer), 1))
                except anyio.EndOfStream:
                    self._eof = True
                    break
                buffer += chunk
                satisfied = done(chunk) if incremental else done(bytes(buffer))
        if scope.cancelled_caught:
            raise PeekError(f"peer sent {len(buffer)} bytes within {timeout:g}s, not enough")
        return bytes(buffer)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Replay peeked bytes first, then read from the inner stream."""
        if self._buffer:
            chunk = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
            return chunk
        if self._eof:
            raise anyio.EndOfStream
        return await self.inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        """Send on the inner stream."""
        await self.inner.send(item)

    async def send_eof(self) -> None:
        """Half-close the inner stream."""
        await self.inner.send_eof()

    async def aclose(self) -> None:
        """Close the inner stream."""
        await self.inner.aclose()

    def take_peeked(self) -> bytes:
        """Remove and return the peeked bytes (the caller now owns them)."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes
