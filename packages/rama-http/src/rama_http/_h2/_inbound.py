"""What a client sends on one h2 stream, handed to the handler as a body or a byte stream.

Received DATA is acknowledged to the peer (returning flow-control window)
only when the handler consumes it, so a slow handler stops a fast uploader
at the stream window instead of buffering without bound.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from anyio.abc import ByteStream

from rama_net import ConnectionLost

from .._errors import BodyError, BodyTooLarge
from .._headers import Headers

__all__ = ["H2InboundData", "H2StreamIO", "StreamResetError"]


class StreamResetError(BodyError):
    """The h2 stream was reset (by the peer or by the server) before it ended."""

    def __init__(self, stream_id: int, error_code: int) -> None:
        super().__init__(f"h2 stream {stream_id} was reset (error code {error_code})")
        self.stream_id = stream_id
        self.error_code = error_code


class H2InboundData:
    """Chunks received on one stream, as an async iterator of bytes plus trailers.

    The connection pushes with :meth:`push`/:meth:`end`/:meth:`fail`; the
    consumer iterates. ``ack(n)`` is called with each chunk's flow-controlled
    length once the consumer took it.
    """

    __slots__ = (
        "_ack",
        "_chunks",
        "_closed",
        "_ended",
        "_error",
        "_limit",
        "_received",
        "_timeout",
        "_waiter",
        "trailers",
    )

    def __init__(
        self,
        ack: Callable[[int], None],
        *,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> None:
        self._ack = ack
        self._chunks: deque[tuple[bytes, int]] = deque()
        self._ended = False
        self._closed = False
        self._error: BaseException | None = None
        self._waiter: anyio.Event | None = None
        self._limit = limit
        self._received = 0
        self._timeout = timeout
        self.trailers: Headers | None = None

    # -- producer side (the connection) ---------------------------------------------------
    def push(self, data: bytes, flow_controlled_length: int) -> None:
        """A DATA frame arrived; raises :class:`BodyTooLarge` past the limit.

        An empty frame (padding at most) is acknowledged at once and never queued:
        a peer sending empty DATA to a handler that does not read would otherwise
        grow the queue without bound, with no flow-control window to stop it.
        """
        if self._closed or self._ended or not data:
            if flow_controlled_length:
                self._ack(flow_controlled_length)
            return
        self._received += len(data)
        if self._limit is not None and self._received > self._limit:
            self._ack(flow_controlled_length)
            err = BodyTooLarge(self._limit)
            self.fail(err)
            raise err
        self._chunks.append((data, flow_controlled_length))
        self._wake()

    def end(self, trailers: Headers | None = None) -> None:
        """The peer ended the stream (optionally with trailers)."""
        if trailers is not None:
            self.trailers = trailers
        self._ended = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        """The stream broke: the consumer's next read raises ``error``."""
        if not self._ended and self._error is None:
            self._error = error
        self._wake()

    @property
    def ended(self) -> bool:
        """Whether the peer finished sending (END_STREAM seen)."""
        return self._ended

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    # -- consumer side ---------------------------------------------------------------------
    def __aiter__(self) -> H2InboundData:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.next_chunk()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def next_chunk(self, *, timed: bool = True) -> bytes | None:
        """The next chunk, or None once the peer ended the stream.

        With ``timed`` (a request body), waiting longer than the body read timeout
        raises :class:`BodyError`; a tunnel reads with ``timed=False`` and may idle.
        """
        timeout = self._timeout if timed else None
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._ended or self._closed:
                return None
            self._waiter = waiter = anyio.Event()
            with anyio.move_on_after(timeout) as scope:
                await waiter.wait()
            if scope.cancelled_caught:
                raise BodyError(f"no request body data for {timeout:g}s")
        data, flow = self._chunks.popleft()
        if flow:
            self._ack(flow)
        return data

    async def aclose(self) -> None:
        """Drop what is buffered (returning its window) and ignore what follows."""
        self.close_now()

    def close_now(self) -> None:
        """Synchronous :meth:`aclose` for the connection's cleanup path."""
        self._closed = True
        pending = sum(flow for _, flow in self._chunks)
        self._chunks.clear()
        if pending:
            self._ack(pending)


class H2StreamIO(ByteStream):
    """One h2 stream as an anyio ByteStream (a CONNECT or RFC 8441 tunnel).

    Receiving has no read timeout: a tunnel may stay silent for as long as its
    owner (or the connection's idle handling) allows.
    """

    def __init__(
        self,
        inbound: H2InboundData,
        send: Callable[[bytes, bool], Any],
        reset: Callable[[], None],
        extra: Mapping[Any, Callable[[], Any]] | None = None,
    ) -> None:
        self._inbound = inbound
        self._send = send
        self._reset = reset
        self._extra = dict(extra or {})
        self._eof_sent = False
        self._closed = False
        self._pending = b""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """The next bytes from the peer; :class:`anyio.EndOfStream` after END_STREAM.

        A reset stream raises :class:`rama_net.ConnectionLost`, as any rama stream
        whose connection failed does.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        if not self._pending:
            try:
                chunk = await self._inbound.next_chunk(timed=False)
            except StreamResetError as e:
                raise ConnectionLost(f"h2 stream {e.stream_id} was reset") from e
            if chunk is None:
                raise anyio.EndOfStream
            self._pending = chunk
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    async def send(self, item: bytes) -> None:
        """Send DATA, waiting for the peer's flow-control window."""
        if self._closed:
            raise anyio.ClosedResourceError
        if self._eof_sent:
            raise anyio.BrokenResourceError("already sent END_STREAM")
        if item:
            await self._send(item, False)

    async def send_eof(self) -> None:
        """End our side of the stream (END_STREAM); receiving continues."""
        if not self._eof_sent and not self._closed:
            self._eof_sent = True
            await self._send(b"", True)

    async def aclose(self) -> None:
        """Close both directions: END_STREAM if both sides finished, else RST_STREAM."""
        if self._closed:
            return
        self._closed = True
        self._inbound.close_now()
        if not self._eof_sent:
            self._eof_sent = True
            self._reset()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._extra
