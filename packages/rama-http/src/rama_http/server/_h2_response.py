"""The h2 response writer: heads, bodies and trailers within the peer's windows.

One :class:`H2ResponseWriter` per connection writes every stream's answer
through the engine (:class:`~._h2_backend.H2ServerEngine`) into the output
queue (:class:`~._h2_output.H2Output`). Bodies go out as DATA within the
peer's flow-control windows; a stream waits for WINDOW_UPDATE for at most
``write_timeout`` and is cancelled (RST_STREAM(CANCEL)) after, sooner past
``H2Config.max_queued_response_bytes``. Tunnels (CONNECT answered 2xx with an
``on_upgrade``) continue in :mod:`._h2_tunnel`.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import anyio

from .._body import close_body_soon
from .._message import Request, Response
from .._status import NO_BODY_STATUSES, reason_phrase
from ._h2_stream import DATE, H2ServerStream, StreamGone

if TYPE_CHECKING:
    from ._h2 import H2Connection

__all__ = ["H2ResponseWriter"]

_log = logging.getLogger("rama.http.h2")

# Connection-specific fields must not appear in h2 messages (RFC 9113 section 8.2.2).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)
# How long streams past max_queued_response_bytes wait for a peer that opens no window.
_STARVED_GRACE = 1.0
_CANCEL = 0x8


class H2ResponseWriter:
    """Writes the answers of one connection's streams."""

    __slots__ = ("_c", "_config", "holders", "window_updates")

    def __init__(self, conn: H2Connection) -> None:
        self._c = conn
        self._config = conn._config
        self.holders: dict[int, int] = {}
        """Stream id -> bytes waiting for window, in the order streams started waiting."""
        self.window_updates = 0
        """Window openings seen, all told (a stalled stream checks for progress)."""

    def window_opened(self, stream_id: int) -> None:
        """The peer opened a window (``stream_id`` 0: the connection's): wake the writers."""
        self.window_updates += 1
        streams = self._c._streams
        if stream_id == 0:
            for st in streams.values():
                st.wake()
        else:
            one = streams.get(stream_id)
            if one is not None:
                one.wake()

    def open(self, st: H2ServerStream) -> bool:
        """Whether ``st`` can still be written."""
        return st.reset_code is None and not self._c._closed

    @contextlib.contextmanager
    def on_stream(self, st: H2ServerStream) -> Iterator[None]:
        """Guard an engine call on a stream that the peer may have reset meanwhile."""
        if not self.open(st):
            raise StreamGone
        try:
            yield
        except self._c._engine.errors as e:
            raise StreamGone from e

    def answer_now(
        self,
        st: H2ServerStream,
        status: int,
        extra: tuple[tuple[str, str], ...] = (),
        text: str | None = None,
    ) -> bool:
        """Queue a complete plain-text answer; False when the stream cannot take it.

        ``text`` is the server's own words (default: the reason phrase), never an
        exception's message.

        The text goes along only when the peer's windows have room for it, so
        this never waits (a stalled peer gets the status alone).
        """
        c = self._c
        engine = c._engine
        body = (text if text is not None else reason_phrase(status)).encode() + b"\n"
        fields = [
            (b":status", str(status).encode()),
            (b"content-type", b"text/plain; charset=utf-8"),
        ]
        fields += [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in extra]
        if self._config.date_header:
            fields.append((b"date", DATE.get()))
        try:
            room = min(engine.window(st.id), engine.max_frame)
            if st.head or len(body) > room:
                fields.append((b"content-length", b"0" if not st.head else b"%d" % len(body)))
                engine.send_headers(st.id, fields, True)
            else:
                fields.append((b"content-length", b"%d" % len(body)))
                engine.send_headers(st.id, fields)
                engine.send_data(st.id, body, True)
                c._flood.sent(st.id, len(body))
        except engine.errors:
            return False
        st.headers_sent = True
        c._output.want.set()
        return True

    async def send_response(self, st: H2ServerStream, req: Request, resp: Response) -> None:
        """Write ``resp`` on ``st``: head, body (or tunnel), trailers."""
        if not self.open(st):
            raise StreamGone
        c = self._c
        engine = c._engine
        output = c._output
        config = self._config
        head: list[tuple[bytes, bytes]] = [(b":status", str(resp.status).encode())]
        date = config.date_header
        server = config.server_header
        for name, value in resp.headers:
            lname = name.lower()
            if lname in _HOP_BY_HOP:
                continue
            if lname == "date":
                date = False
            elif lname == "server":
                server = None
            head.append((lname.encode("latin-1"), value.encode("latin-1")))
        if date:
            head.append((b"date", DATE.get()))
        if server:
            head.append((b"server", server.encode("latin-1")))

        body = resp.body
        if resp.on_upgrade is not None and req.method == "CONNECT" and 200 <= resp.status < 300:
            from ._h2_tunnel import run_tunnel

            engine.send_headers(st.id, head)
            st.headers_sent = True
            await output.write()
            await run_tunnel(self, st, resp)
            return
        if (
            body.length is not None
            and resp.status >= 200
            and resp.status not in NO_BODY_STATUSES
            and "content-length" not in resp.headers
        ):
            head.append((b"content-length", str(body.length).encode()))
        no_body = req.method == "HEAD" or resp.status in NO_BODY_STATUSES or resp.status < 200
        data = body.bytes_now()
        if no_body or (data is not None and not data and body.trailers is None):
            engine.send_headers(st.id, head, True)
            st.headers_sent = True
            await output.write()
            if no_body:
                await close_body_soon(body)
            return
        engine.send_headers(st.id, head)
        st.headers_sent = True
        if data is not None and body.trailers is None:
            await self.send_data(st, data, end=True)
            return
        try:
            async for chunk in body:
                if chunk:
                    await self.send_data(st, chunk, end=False)
        finally:
            await close_body_soon(body)
        trailers = body.trailers
        if trailers:
            fields = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in trailers]
            with self.on_stream(st):
                engine.send_headers(st.id, fields, True)
        else:
            with self.on_stream(st):
                engine.end_stream(st.id)
        await output.write()

    async def send_data(self, st: H2ServerStream, data: bytes, *, end: bool) -> None:
        """Send ``data`` as DATA frames within the peer's windows; waits for WINDOW_UPDATE."""
        c = self._c
        engine = c._engine
        errors = engine.errors
        view = memoryview(data)
        while True:
            if not self.open(st):
                raise StreamGone
            if not view:
                if end:
                    with self.on_stream(st):
                        engine.end_stream(st.id)
                    await c._output.write()
                return
            try:
                window = engine.window(st.id)
            except errors as e:
                raise StreamGone from e
            if window <= 0:
                await self._wait_for_window(st, len(view))
                continue
            n = min(window, engine.max_data, len(view))
            last = n == len(view)
            with self.on_stream(st):
                engine.send_data(st.id, view[:n], end and last)
            c._flood.sent(st.id, n)
            view = view[n:]
            await c._output.write()
            if last:
                return

    async def _wait_for_window(self, st: H2ServerStream, held: int) -> None:
        """Wait for the peer to open the window this stream's ``held`` bytes need.

        A peer that never opens its window would keep this answer (and its handler)
        forever: the write timeout bounds each wait, then the stream is cancelled.
        CANCEL, not FLOW_CONTROL_ERROR: withholding window is the peer's right, not a
        protocol violation. Other streams go on. The bytes waiting streams hold are
        capped per connection (``H2Config.max_queued_response_bytes``): a stream
        whose bytes go beyond the cap (counted in the order streams started
        waiting; the first one is always allowed) is cancelled as soon as the peer
        opened no window at all for a second, so a zero-window client cannot pin
        ``max_concurrent_streams`` answers for the whole write timeout.
        """
        timeout = self._config.write_timeout
        holders = self.holders
        holders[st.id] = held
        start = anyio.current_time()
        try:
            while True:
                st.window = ev = anyio.Event()
                beyond = self._beyond_cap(st.id)
                left = math.inf if timeout is None else start + timeout - anyio.current_time()
                wait = min(left, _STARVED_GRACE) if beyond else left
                updates = self.window_updates
                with anyio.move_on_after(wait) as waited:
                    await ev.wait()
                if not waited.cancelled_caught:
                    return
                if timeout is not None and anyio.current_time() - start >= timeout:
                    _log.info("h2 stream %d: no flow-control window for %gs", st.id, timeout)
                elif beyond and self.window_updates == updates:
                    _log.info(
                        "h2 stream %d: %d bytes waiting for a window the peer does not open,"
                        " over max_queued_response_bytes: cancelled",
                        st.id,
                        held,
                    )
                else:
                    continue
                self._c._reset(st, _CANCEL)
                raise StreamGone
        finally:
            holders.pop(st.id, None)

    def _beyond_cap(self, stream_id: int) -> bool:
        """Whether ``stream_id``'s held bytes are past the cap (streams before it count first)."""
        cap = self._c._h2c.max_queued_response_bytes
        before = 0
        for sid, n in self.holders.items():
            if sid == stream_id:
                return before > 0 and before + n > cap
            before += n
        return False
