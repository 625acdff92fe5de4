"""Bodies: streams of byte chunks with backpressure and optional trailers.

A :class:`Body` is consumed once, by async iteration or by one of the
reading helpers (:meth:`Body.read` with a size limit, :meth:`Body.text`,
:meth:`Body.json`). Backpressure is natural: a body received by a server
reads from the connection only when the consumer asks for the next chunk, and
:meth:`Body.channel` hands the producer a writer whose ``send`` waits until
the consumer has taken the previous chunk.

In-memory bodies (:meth:`Body.from_bytes`) expose their bytes through
:meth:`Body.bytes_now`, so servers can write them without iterating.
"""

from __future__ import annotations

import json as _json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, TypeAlias

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._errors import BodyAlreadyConsumed, BodyError, BodyTooLarge
from ._headers import Headers

__all__ = ["Body", "BodyInput", "BodyWriter", "close_body_soon"]

_log = logging.getLogger("rama.http.body")

BodyInput: TypeAlias = "Body | bytes | bytearray | memoryview | str | None"
"""What Request/Response constructors accept as a body."""


class Body:
    """A one-shot stream of byte chunks, optionally followed by trailers."""

    __slots__ = (
        "_cache",
        "_consumed",
        "_data",
        "_iter",
        "_length",
        "_on_close",
        "_source",
        "_trailers",
    )

    def __init__(
        self,
        data: bytes | None = None,
        *,
        stream: AsyncIterable[bytes] | None = None,
        length: int | None = None,
        trailers: Headers | None = None,
        on_close: Callable[[], Any] | None = None,
    ) -> None:
        self._data = data
        self._source = stream
        self._length = len(data) if data is not None else length
        self._trailers = trailers
        self._consumed = False
        self._cache: bytes | None = None
        self._on_close = on_close
        self._iter: AsyncIterator[bytes] | None = None

    # -- constructors ----------------------------------------------------------------
    @classmethod
    def empty(cls) -> Body:
        """A body with no bytes."""
        return cls(b"")

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview | str) -> Body:
        """An in-memory body (``str`` is encoded as UTF-8)."""
        if isinstance(data, str):
            return cls(data.encode())
        return cls(bytes(data))

    @classmethod
    def from_iter(
        cls,
        chunks: AsyncIterable[bytes],
        *,
        length: int | None = None,
        trailers: Headers | None = None,
    ) -> Body:
        """A streaming body from an async iterable of chunks.

        ``length``, when given, becomes Content-Length on HTTP/1.1 (the server
        checks the stream produces exactly that many bytes); without it the
        body is sent chunked. ``trailers`` are sent after the last chunk (an
        iterable may also set a ``trailers`` attribute on itself by the end).
        """
        return cls(stream=chunks, length=length, trailers=trailers)

    @classmethod
    def channel(cls, buffer: int = 0, *, length: int | None = None) -> tuple[BodyWriter, Body]:
        """A body fed by a :class:`BodyWriter`; ``send`` waits while ``buffer`` chunks wait."""
        send, recv = anyio.create_memory_object_stream[object](buffer)
        writer = BodyWriter(send)
        return writer, cls(stream=_ChannelSource(recv), length=length)

    @classmethod
    def coerce(cls, value: Body | bytes | bytearray | memoryview | str | None) -> Body:
        """Turn the usual body inputs into a Body (``None`` is empty)."""
        if isinstance(value, Body):
            return value
        if value is None:
            return cls(b"")
        return cls.from_bytes(value)

    # -- facts -----------------------------------------------------------------------
    @property
    def length(self) -> int | None:
        """The total size in bytes when known up front (Content-Length), else None."""
        return self._length

    @property
    def is_empty(self) -> bool:
        """Whether the body is known to have no bytes."""
        return self._length == 0

    @property
    def consumed(self) -> bool:
        """Whether iteration has started (a body can be iterated once)."""
        return self._consumed

    @property
    def trailers(self) -> Headers | None:
        """Trailer fields, known once the body was fully read."""
        if self._trailers is None and self._source is not None:
            t = getattr(self._source, "trailers", None)
            if isinstance(t, Headers):
                return t
        return self._trailers

    def set_trailers(self, trailers: Headers | None) -> None:
        """Set the trailers (for producers that learn them at the end)."""
        self._trailers = trailers

    def bytes_now(self) -> bytes | None:
        """All bytes when the body is in memory and not yet consumed, else None."""
        if self._data is not None and not self._consumed:
            return self._data
        return self._cache

    # -- consumption -----------------------------------------------------------------
    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._consumed:
            if self._cache is not None:
                return _one(self._cache)
            raise BodyAlreadyConsumed("body was already consumed")
        self._consumed = True
        if self._data is not None:
            return _one(self._data)
        assert self._source is not None
        self._iter = aiter(self._source)
        return self._iter

    async def read(self, limit: int | None = None) -> bytes:
        """Read the whole body; raise :class:`BodyTooLarge` past ``limit`` bytes.

        The result is cached: reading again returns the same bytes.
        """
        if self._cache is not None:
            data = self._cache
        elif self._data is not None:
            data = self._data
            self._consumed = True
        else:
            if limit is not None and self._length is not None and self._length > limit:
                raise BodyTooLarge(limit)
            parts: list[bytes] = []
            size = 0
            async for chunk in self:
                size += len(chunk)
                if limit is not None and size > limit:
                    raise BodyTooLarge(limit)
                parts.append(chunk)
            data = b"".join(parts)
        if limit is not None and len(data) > limit:
            raise BodyTooLarge(limit)
        self._cache = data
        return data

    async def text(self, limit: int | None = None, encoding: str = "utf-8") -> str:
        """Read the whole body and decode it (errors raise :class:`BodyError`)."""
        data = await self.read(limit)
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as e:
            raise BodyError(f"body is not valid {encoding}") from e

    async def json(self, limit: int | None = None) -> Any:
        """Read the whole body and parse it as JSON (errors raise :class:`BodyError`)."""
        data = await self.read(limit)
        try:
            return _json.loads(data)
        except ValueError as e:
            raise BodyError(f"body is not valid JSON: {e}") from e

    async def discard(self, limit: int | None = None) -> int:
        """Read and drop the rest of the body; return how many bytes were dropped."""
        if self._consumed and self._cache is not None:
            return 0
        if self._data is not None:
            self._consumed = True
            return len(self._data)
        if self._consumed:
            return 0
        n = 0
        async for chunk in self:
            n += len(chunk)
            if limit is not None and n > limit:
                raise BodyTooLarge(limit)
        return n

    async def aclose(self) -> None:
        """Stop the producer (if it can be stopped); further reads see no data."""
        self._consumed = True
        # The iterator handed out may differ from the iterable it came from:
        # close both (closing twice is harmless for generators and channels).
        for part in (self._iter, self._source):
            close = getattr(part, "aclose", None)
            if close is not None:
                await close()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def __repr__(self) -> str:
        kind = "bytes" if self._data is not None else "stream"
        return f"Body({kind}, length={self._length})"


async def close_body_soon(body: Body, timeout: float = 1.0) -> None:
    """Close ``body`` now, even inside a cancelled scope, for at most ``timeout`` seconds.

    Servers call this when they stop sending a response body, so a producer's
    ``finally`` runs at once rather than whenever the garbage collector (on
    trio, possibly never while serving) finalizes an abandoned generator.
    A producer that fails while it stops is logged, not raised.
    """
    with anyio.move_on_after(timeout, shield=True):
        try:
            await body.aclose()
        except Exception as e:
            _log.debug("body producer failed while closing: %s", e)


async def _one_gen(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


def _one(data: bytes) -> AsyncIterator[bytes]:
    return _one_gen(data)


class BodyWriter:
    """The producing end of :meth:`Body.channel`."""

    __slots__ = ("_send",)

    def __init__(self, send: MemoryObjectSendStream[object]) -> None:
        self._send = send

    async def send(self, chunk: bytes) -> None:
        """Send one chunk; waits while the consumer is behind (backpressure)."""
        if chunk:
            await self._send.send(bytes(chunk))

    async def send_trailers(self, trailers: Headers) -> None:
        """Send trailer fields; call at most once, after the last chunk."""
        await self._send.send(trailers)

    async def abort(self, error: BaseException) -> None:
        """End the body with an error the consumer sees as :class:`BodyError`."""
        try:
            await self._send.send(error)
        finally:
            await self._send.aclose()

    async def aclose(self) -> None:
        """End the body normally."""
        await self._send.aclose()

    async def __aenter__(self) -> BodyWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _ChannelSource:
    """Adapts the receiving end of a memory stream to chunks plus trailers."""

    def __init__(self, recv: MemoryObjectReceiveStream[object]) -> None:
        self._recv = recv
        self.trailers: Headers | None = None

    def __aiter__(self) -> _ChannelSource:
        return self

    async def __anext__(self) -> bytes:
        while True:
            try:
                item = await self._recv.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                raise StopAsyncIteration from None
            if isinstance(item, bytes):
                return item
            if isinstance(item, Headers):
                self.trailers = item
                continue
            if isinstance(item, BaseException):
                raise BodyError(f"body producer failed: {item}") from item

    async def aclose(self) -> None:
        await self._recv.aclose()
