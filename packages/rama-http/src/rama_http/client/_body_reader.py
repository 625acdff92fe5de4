"""The response-body iterator both client connections hand out (HTTP/1.1 and h2).

:class:`BodyReader` is the part they share: iteration state, trailers, and
what happens when the body fails or is dropped before its end. A connection
subclass says how to get the next chunk (:meth:`BodyReader._next`, which
calls :meth:`BodyReader._end` at the end of the body), what a failure does
to the connection (:meth:`BodyReader._failed`), and how to drop the rest
synchronously (:meth:`BodyReader._drop`, when the body is closed unread) or
asynchronously (:meth:`BodyReader._close`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from .._headers import Headers

__all__ = ["BodyReader"]


class BodyReader:
    """One response body, read from its connection as it is iterated."""

    __slots__ = ("_done", "_timeout", "trailers")

    def __init__(self, read_timeout: float | None) -> None:
        self._timeout = read_timeout
        self._done = False
        self.trailers: Headers | None = None
        """Trailer fields, once the body has been read to its end (None: none)."""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            return await self._next()
        except StopAsyncIteration:
            raise
        except BaseException:
            # an error, a timeout, a cancellation: this body is over, and the connection
            # decides what is left of it
            self._done = True
            await self._failed()
            raise

    def _end(self, trailers: Headers | None = None) -> None:
        """The body ended (called by :meth:`_next` before it finishes the exchange)."""
        self._done = True
        self.trailers = trailers

    async def _next(self) -> bytes:
        """The next non-empty chunk; StopAsyncIteration after :meth:`_end`."""
        raise NotImplementedError

    async def _failed(self) -> None:
        """Reading failed (the exception propagates after this)."""
        raise NotImplementedError

    def _drop(self) -> None:
        """Closed before its end, synchronously: free the slot now."""
        raise NotImplementedError

    async def _close(self) -> None:
        """Closed before its end: free the slot (and say so to the peer)."""
        self._drop()

    def abandon(self) -> None:
        """The body was closed before its end (the Body's synchronous close hook)."""
        if not self._done:
            self._done = True
            self._drop()

    async def aclose(self) -> None:
        """Close before the end."""
        if not self._done:
            self._done = True
            await self._close()
