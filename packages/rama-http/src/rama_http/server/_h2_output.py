"""The h2 server connection's output: one byte queue and its writer loop.

What the engine queued is collected into one buffer (hand-made frames keep
their order because the engines queue them too) and written by one task, in
slices each bounded by ``ServerConfig.write_timeout``. A response writer that
queues faster than the socket takes waits while more than
``H2Config.max_write_buffer`` is queued behind the write in progress.
"""

from __future__ import annotations

import anyio
from anyio.abc import ByteStream

from rama_net import ConnectionLost

from ._h2_backend import H2ServerEngine

__all__ = ["LOST", "H2Output"]

# A connection that failed under us, the one place naming it: rama streams raise
# ConnectionLost, plain anyio and TLS streams BrokenResourceError (its base); a TLS write
# that meets the peer's close_notify raises EndOfStream (seen at the end of h2load's timed
# runs, logged as "service failed" with a traceback before); a write the peer took nothing
# of for write_timeout raises TimeoutError (our fail_after).
LOST = (ConnectionLost, anyio.BrokenResourceError, anyio.EndOfStream, TimeoutError)
_WRITE_SLICE = 256 * 1024
# A slice takes up to this much more rather than leave a small tail for a write of its own.
_WRITE_SLACK = 64 * 1024


class H2Output:
    """The output queue of one connection over ``engine``, written to ``stream``."""

    __slots__ = (
        "_drained",
        "_engine",
        "_in_send",
        "_lock",
        "_out",
        "_size",
        "_stream",
        "_timeout",
        "bound",
        "want",
    )

    def __init__(
        self,
        engine: H2ServerEngine,
        stream: ByteStream,
        *,
        bound: int,
        write_timeout: float | None,
    ) -> None:
        self._engine = engine
        self._stream = stream
        self.bound = bound
        """``H2Config.max_write_buffer``: how much may wait behind the write in progress."""
        self._timeout = write_timeout
        self.want = anyio.Event()
        """Set when something is queued (the writer loop wakes up)."""
        self._lock = anyio.Lock()
        # Taken from the engine, not yet sent: the engine's buffers as they come (no copy).
        self._out: list[bytes | bytearray] = []
        self._size = 0
        self._in_send = 0  # bytes handed to the socket that it has not taken yet
        self._drained = anyio.Event()

    def wake(self) -> None:
        """Have what the engine queued written soon."""
        self.want.set()

    @property
    def backlog(self) -> int:
        """Bytes waiting to be written (queued or not yet taken by the socket)."""
        self.collect()
        return self._size + self._in_send

    def collect(self) -> None:
        """Move what the engine queued into our queue."""
        data = self._engine.data_to_send()
        if data:
            self._out.append(data)
            self._size += len(data)

    async def write(self) -> None:
        """Have what the engine queued written soon; wait while too much is queued.

        Only what waits behind the write in progress counts here, so a response
        writer refills the queue while the socket takes the previous slice.
        """
        self.want.set()
        while True:
            self.collect()
            if self._size <= self.bound:
                return
            await self._drained.wait()

    async def wait_for_room(self) -> None:
        """Wait while the whole backlog (queued or in the socket write) is over the bound."""
        while self.backlog > self.bound:
            drained = self._drained
            self.want.set()
            await drained.wait()

    async def writer_loop(self) -> None:
        """Write whatever gets queued, until cancelled; raises LOST when writing fails."""
        while True:
            await self.want.wait()
            self.want = anyio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Write everything queued.

        In slices, each bounded by write_timeout: a slow but steady reader is fine,
        a socket that takes nothing for that long raises TimeoutError (ending the
        connection).
        """
        async with self._lock:
            while True:
                self.collect()
                if not self._out:
                    return
                data = self._take()
                self._in_send = len(data)
                try:
                    with anyio.fail_after(self._timeout):
                        await self._stream.send(data)
                finally:
                    self._in_send = 0
                    self._drained.set()
                    self._drained = anyio.Event()

    def _take(self) -> bytes:
        """The next slice to write: whole queued buffers up to the slice size.

        As bytes (what ``ByteStream.send`` takes): one copy of an engine buffer.
        """
        out = self._out
        if self._size <= _WRITE_SLICE + _WRITE_SLACK:
            data = bytes(out[0]) if len(out) == 1 else b"".join(out)
            out.clear()
            self._size = 0
            return data
        first = out[0]
        if len(first) > _WRITE_SLICE + _WRITE_SLACK:
            out[0] = first[_WRITE_SLICE:]
            data = bytes(first[:_WRITE_SLICE])
        else:
            n = total = 0
            while n < len(out) and total + len(out[n]) <= _WRITE_SLICE + _WRITE_SLACK:
                total += len(out[n])
                n += 1
            data = b"".join(out[:n])
            del out[:n]
        self._size -= len(data)
        return data
