"""The h2 server side of one connection: the connection driver.

:class:`H2Connection` drives one connection over a sans-IO h2 engine, reached
only through the small engine-facing interface
(:class:`~._h2_backend.H2ServerEngine`): rama's own engine
(``H2Config(engine="fast")``, the default, :mod:`._h2_fast`) or the ``h2``
library as the strict reference (``"h2"``, :mod:`._h2_ref`). The work above
the engine is in small units: this driver (reading, events, shutdown,
idleness), stream dispatch (:mod:`._h2_dispatch`: no task and no cancel scope
per stream while the handler does not wait), the response writer
(:mod:`._h2_response`), the output queue (:mod:`._h2_output`) and tunnels
(:mod:`._h2_tunnel`).

Responses respect the peer's flow-control windows; request bodies return
window only as the handler reads them. A failing handler is answered by the
policy HTTP/1.1 uses too (:func:`~rama_http.server.handler_failure`: 500, 504,
503 with Retry-After, or the peer's 4xx, with the reason phrase as body) while
its response head is unsent, and its stream is reset
(RST_STREAM(INTERNAL_ERROR)) after; never the connection. On graceful
shutdown, or when the client sends GOAWAY, the connection sends GOAWAY,
finishes the streams it already accepted (within ``ServerConfig.shutdown_grace``)
and closes. What the client sent before its first request (SETTINGS,
WINDOW_UPDATE, PRIORITY, pseudo-header order) is recorded into the Context for
fingerprinting.

Against misbehaving peers (limits in :class:`~rama_http.H2Config`):
every frame passes the sans-IO flood accounting
(:mod:`rama_http._h2._flood`) inside the engine: PING and SETTINGS floods,
rapid resets, frames that carry nothing (empty DATA, WINDOW_UPDATE +1, unknown
frames, frames on closed streams) and PRIORITY past its budget end the
connection with GOAWAY(ENHANCE_YOUR_CALM); reading pauses while unsent output
exceeds ``max_write_buffer``; the read loop yields to other connections at a
bounded cost; a stream over the concurrency limit is refused (REFUSED_STREAM);
a body over ``max_body_size`` gets 413 while the response has not started; an
answer the peer's flow-control window stalls for ``write_timeout`` is
cancelled (RST_STREAM(CANCEL)), sooner past ``max_queued_response_bytes``;
tunnels have no body read timeout.

Entry points: :func:`serve_h2` for one connection, :class:`H2Server` as the
h2-only stream service (the counterpart of ``Http1Server``), both usually
reached through :class:`rama_http.server.HttpServer`; :class:`H2Connection`
drives one connection (as ``Http1Connection`` does for HTTP/1.1).
"""

from __future__ import annotations

import logging

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream, TaskGroup

from rama_core import Context, Service
from rama_net import ProtocolStream

from .._h2._events import (
    ConnectionFailed,
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamRefused,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from .._h2._flood import H2Flood, H2FloodGuard
from .._h2._inbound import StreamResetError
from .._h2._record import H2PrefaceRecord, H2PrefaceRecorder
from .._message import Request, Response
from ._config import ServerConfig
from ._h2_backend import new_server_engine
from ._h2_dispatch import H2Dispatch, Suspended, resume
from ._h2_output import LOST, H2Output
from ._h2_response import H2ResponseWriter
from ._h2_stream import H2ServerStream, to_headers
from ._h2_tunnel import ExtendedConnectProtocol

__all__ = ["ExtendedConnectProtocol", "H2Connection", "H2Server", "serve_h2"]

_log = logging.getLogger("rama.http.h2")

# Input is fed to the engine in slices of _FEED_SLICE bytes. A slice dense with frames
# (on average under _DENSE_FRAME bytes each: a flood's, not DATA's) makes the read loop
# yield to other connections and take the rest of the read in _DENSE_FEED_SLICE pieces.
_FEED_SLICE = 16 * 1024
_DENSE_FEED_SLICE = 2048
_DENSE_FRAME = 256
# Handlers run inline by the reader before it yields to other connections.
_INLINE_SLICE = 16
_NO_ERROR = 0x0
_CANCEL = 0x8
_STREAM_CLOSED = 0x5
_ENHANCE_YOUR_CALM = 0xB


class H2Connection:
    """Drives one server-side h2 connection over a ByteStream.

    ``ServerConfig.h2.engine`` picks the engine below: ``"fast"`` (rama's own,
    the default) or ``"h2"`` (the ``h2`` library, the strict reference).
    """

    def __init__(
        self,
        ctx: Context,
        stream: ByteStream,
        service: Service[Request, Response],
        config: ServerConfig | None = None,
    ) -> None:
        self._config = config = config or ServerConfig()
        self._h2c = h2c = config.h2
        self._ctx = ctx.fork()
        self._stream = stream
        self._service = service
        self.recorder = H2PrefaceRecorder()
        self._ctx.insert(self.recorder.record, key=H2PrefaceRecord)

        self._flood = H2FloodGuard(
            window=h2c.flood_window,
            max_pings=h2c.max_pings,
            max_settings=h2c.max_settings,
            max_resets=h2c.max_resets,
            max_idle_frames=h2c.max_idle_frames,
            max_concurrent_streams=h2c.max_concurrent_streams,
            clock=anyio.current_time,
        )
        self._engine = new_server_engine(h2c, self._flood)
        self._output = H2Output(
            self._engine, stream, bound=h2c.max_write_buffer, write_timeout=config.write_timeout
        )
        self._streams: dict[int, H2ServerStream] = {}
        self._writer = H2ResponseWriter(self)
        self._dispatch = H2Dispatch(self)

        self._tg: TaskGroup | None = None
        self._draining = False
        self._last_stream_id = 0
        self._stopping = False
        self._read_scope = anyio.CancelScope()  # the current reader's
        self._read_done = anyio.Event()
        self._leftover: bytes | memoryview = b""  # input a reader left to the next one
        self._idle_since: float | None = 0.0  # idle from the start (set in run())
        self._idle_changed = anyio.Event()
        self._closed = False
        self._write_failed = False

    @property
    def context(self) -> Context:
        """The connection's Context (holds the :class:`H2PrefaceRecord`)."""
        return self._ctx

    @property
    def write_backlog(self) -> int:
        """Bytes waiting to be written to the peer (queued or not yet taken by the socket).

        Reading from the peer pauses while this exceeds ``H2Config.max_write_buffer``.
        """
        return self._output.backlog

    @property
    def _holders(self) -> dict[int, int]:
        # Stream id -> response bytes waiting for window (read by tests).
        return self._writer.holders

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self, initial: bytes = b"") -> None:
        """Serve the connection until it closes; never raises for peer misbehaviour."""
        # One clock, the event loop's (anyio.current_time): trio's test clocks move it.
        if self._idle_since is not None:
            self._idle_since = anyio.current_time()
        self._engine.start()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                # As on HTTP/1.1: helpers a handler spawns through ctx.executor (an ASGI
                # app's task, a body producer) run in this connection's task group.
                self._ctx.executor = self._ctx.executor.with_task_group(tg)
                tg.start_soon(self._writer_loop)
                tg.start_soon(self._watch_shutdown)
                tg.start_soon(self._watch_idle)
                self._output.want.set()
                self._leftover = initial
                self._new_reader()
                await self._read_done.wait()
                self._closed = True
                self._dispatch.drop_ready()
                for st in list(self._streams.values()):
                    st.body.fail(StreamResetError(st.id, _CANCEL))
                    st.cancel()
                if not self._write_failed:
                    with anyio.move_on_after(1.0):
                        await self._output.flush()
                tg.cancel_scope.cancel()
        except* LOST as group:
            _log.debug("h2 connection lost: %r", group.exceptions)
        finally:
            self._closed = True
            if self._write_failed and isinstance(self._stream, ProtocolStream):
                # The peer took nothing for write_timeout: flushing to it on close
                # would only hold the socket; reset it.
                self._stream.abort()
            with anyio.CancelScope(shield=True):
                await _close_quietly(self._stream)

    def _stop_reading(self) -> None:
        """No more input: the connection closes once the reader stopped."""
        self._stopping = True
        self._read_scope.cancel()

    # -- reading --------------------------------------------------------------------------
    def _new_reader(self) -> None:
        scope = self._read_scope = anyio.CancelScope()
        assert self._tg is not None
        self._tg.start_soon(self._reader, scope, name="h2 reader")

    async def _reader(self, scope: anyio.CancelScope) -> None:
        """Read until the connection stops, or until a handler run inline suspends.

        Then the handler keeps this task (and ``scope``, which it started in, as its
        stream's scope), and reading goes on in a new reader.
        """
        suspended: Suspended | None = None
        try:
            with scope:
                if not self._stopping:
                    suspended = await self._read_loop()
                if suspended is not None:
                    _st, coro, value, cctx = suspended
                    await resume(coro, value, cctx)
        finally:
            if suspended is None:
                self._read_done.set()

    def _hand_over(self, suspended: Suspended, rest: bytes | memoryview) -> Suspended:
        """A handler suspended: it keeps this reader's task and scope; a new reader reads."""
        st = suspended[0]
        st.scope = self._read_scope
        if st.cancelled:
            st.scope.cancel()
        if self._stopping:
            self._read_done.set()
        else:
            self._leftover = rest
            self._new_reader()
        return suspended

    async def _read_loop(self) -> Suspended | None:
        """Read and process input, yielding to other connections at a bounded cost.

        A stream may return buffered bytes without waiting (rama's Protocol-backed
        streams do), so one busy connection could keep the event loop for as long as
        its peer keeps the buffer full. Here the loop yields at least once per
        ``read_size`` bytes and every ``_INLINE_SLICE`` handlers run inline, and a
        read is fed to the engine in slices with a yield after every slice dense
        with frames (a flood of tiny frames costs far more per byte than DATA): a
        turn of this connection costs about one slice.

        Returns the handler that suspended (see :meth:`_reader`), or None when
        the connection stops reading.
        """
        read_size = self._h2c.read_size
        engine = self._engine
        dispatch = self._dispatch
        receive = self._stream.receive
        wait_for_room = self._output.wait_for_room
        since = 0  # bytes processed since this loop last yielded
        ran = 0  # handlers run inline since this loop last yielded
        suspended = dispatch.step()
        if suspended is not None:
            return self._hand_over(suspended, self._leftover)
        data = self._leftover
        self._leftover = b""
        while True:
            size = len(data)
            if not size:
                pass
            elif size <= _FEED_SLICE:
                if not self._receive(data):
                    return None
                ran += len(dispatch.ready)
                suspended = dispatch.step()
                if suspended is not None:
                    return self._hand_over(suspended, b"")
            else:
                view = memoryview(data)
                start, step = 0, _FEED_SLICE
                while start < size:
                    before = engine.frames_received
                    end = start + step
                    if not self._receive(view[start:end]):
                        return None
                    start = end
                    ran += len(dispatch.ready)
                    suspended = dispatch.step()
                    if suspended is not None:
                        return self._hand_over(suspended, view[start:])
                    if (engine.frames_received - before) * _DENSE_FRAME >= step:
                        # Tiny frames: yield now, and take the rest in smaller slices.
                        step = _DENSE_FEED_SLICE
                        since = ran = 0
                        await anyio.lowlevel.checkpoint()
            since += size
            if since >= read_size or ran >= _INLINE_SLICE:
                since = ran = 0
                await anyio.lowlevel.checkpoint()
            # A peer that makes us write (PING, SETTINGS, resets, requests) must also
            # read: while our answers pile up, stop taking more from it.
            await wait_for_room()
            try:
                data = await receive(read_size)
            except (anyio.EndOfStream, *LOST):
                return None

    def _receive(self, data: bytes | memoryview) -> bool:
        """Feed bytes to the engine and act on its events; False when the connection must end."""
        self.recorder.feed(data)
        try:
            events = self._engine.receive(data)
        except H2Flood as e:
            # Raised by the per-frame accounting at the frame that spent the allowance:
            # what followed it in this read is never processed.
            self._on_flood(e)
            return False
        if events and type(events[-1]) is ConnectionFailed:
            # The engine queued GOAWAY(code) and closed: nothing of this read is acted on.
            failed = events[-1]
            assert isinstance(failed, ConnectionFailed)
            _log.info("h2 protocol error from peer: %s", failed.reason)
            self._output.want.set()
            return False
        try:
            streams = self._streams
            dispatch = self._dispatch
            for event in events:
                kind = type(event)
                if kind is RequestReceived:
                    assert isinstance(event, RequestReceived)
                    dispatch.on_request(event.stream_id, event.headers, event.end_stream)
                elif kind is DataReceived:
                    assert isinstance(event, DataReceived)
                    # The engine gave padding's credit back itself: only data is owed.
                    dispatch.on_data(event.stream_id, event.data)
                    if event.end_stream:
                        st = streams.get(event.stream_id)
                        if st is not None:
                            st.body.end()
                elif kind is WindowUpdated:
                    assert isinstance(event, WindowUpdated)
                    self._writer.window_opened(event.stream_id)
                elif kind is TrailersReceived:
                    assert isinstance(event, TrailersReceived)
                    st = streams.get(event.stream_id)
                    if st is not None:
                        st.body.end(to_headers(event.headers))
                elif kind is StreamReset:
                    assert isinstance(event, StreamReset)
                    self._on_reset(event)
                elif kind is StreamRefused:
                    self._flood.refused()
                elif kind is RemoteSettingsChanged:
                    self._writer.window_opened(0)
                elif kind is ConnectionTerminated:
                    assert isinstance(event, ConnectionTerminated)
                    # The client is going away: its requests in flight still get their
                    # answers, new ones are refused, and the connection closes once the
                    # last one is done.
                    _log.debug("h2 client sent GOAWAY (%s)", event.error_code)
                    self.goaway()
        except H2Flood as e:
            self._on_flood(e)
            return False
        except self._engine.errors as e:
            _log.info("h2 protocol error: %s", e)
            return False
        self._output.want.set()
        return True

    def _on_flood(self, e: H2Flood) -> None:
        _log.info("h2 peer floods %s: GOAWAY(ENHANCE_YOUR_CALM)", e.what)
        self._draining = True
        self._engine.goaway(_ENHANCE_YOUR_CALM, self._last_stream_id, f"too many {e.what}".encode())
        self._output.want.set()

    def _on_reset(self, event: StreamReset) -> None:
        if event.remote or event.error_code != _STREAM_CLOSED:
            # Reset by the client, or by the engine for a malformed request: either way
            # a stream that cost a handler (or an answer) and yields nothing. (Frames on
            # a stream the peer had closed, STREAM_CLOSED, are the frame accounting's
            # frames without progress, not resets.)
            self._flood.resets()
        st = self._streams.get(event.stream_id)
        if st is not None:
            code = event.error_code
            st.reset_code = code
            st.body.fail(StreamResetError(st.id, code))
            st.wake()
            # Nobody can read the answer any more: stop the handler.
            st.cancel()

    # -- commands on streams (used by the units) ------------------------------------------
    def _ack(self, stream_id: int, n: int) -> None:
        if self._closed:
            return
        try:
            self._engine.ack(stream_id, n)
        except self._engine.errors:
            return
        self._output.want.set()

    def _reset(self, st: H2ServerStream, code: int) -> None:
        if st.reset_code is not None:
            return
        st.reset_code = code
        self._engine.reset(st.id, code)
        st.body.fail(StreamResetError(st.id, code))
        st.wake()
        self._output.want.set()

    # -- writing --------------------------------------------------------------------------
    async def _writer_loop(self) -> None:
        try:
            await self._output.writer_loop()
        except LOST as e:
            _log.debug("h2 connection: writing failed: %r", e)
            self._write_failed = True
            self._stop_reading()

    # -- shutdown and idleness --------------------------------------------------------------
    def goaway(self, error_code: int = _NO_ERROR) -> None:
        """Announce GOAWAY: no new streams; accepted ones finish, then the connection closes."""
        if self._draining:
            return
        self._draining = True
        self._engine.goaway(error_code, self._last_stream_id)
        self._output.want.set()
        if not self._streams:
            self._stop_reading()

    async def _watch_shutdown(self) -> None:
        await self._ctx.executor.wait_shutdown()
        self.goaway()
        await anyio.sleep(self._config.shutdown_grace)
        _log.info("h2 connection: shutdown grace over, cancelling %d streams", len(self._streams))
        self._stop_reading()

    async def _watch_idle(self) -> None:
        timeout = self._h2c.keep_alive_timeout
        if timeout is None:
            return
        while True:
            since = self._idle_since
            if since is None:
                self._idle_changed = ev = anyio.Event()
                await ev.wait()
                continue
            remaining = since + timeout - anyio.current_time()
            if remaining <= 0 and self._idle_since is not None:
                _log.debug("h2 connection idle for %gs: closing", timeout)
                self.goaway()
                self._stop_reading()
                return
            await anyio.sleep(max(remaining, 0.01))


async def _close_quietly(stream: ByteStream) -> None:
    try:
        with anyio.move_on_after(1.0):
            await stream.aclose()
    except LOST:
        pass


async def serve_h2(
    ctx: Context,
    stream: ByteStream,
    service: Service[Request, Response],
    config: ServerConfig | None = None,
    *,
    initial: bytes = b"",
) -> None:
    """Serve one h2 connection (prior knowledge or ALPN ``h2``) until it closes.

    ``initial`` holds bytes already read from ``stream`` (a peeked preface).
    """
    await H2Connection(ctx, stream, service, config).run(initial)


class H2Server:
    """A ``Service[ByteStream, None]`` serving h2 only (prior knowledge or ALPN ``h2``).

    The counterpart of :class:`~rama_http.server.Http1Server`; plug it into any
    listener, behind a TLS acceptor or not. Every connection is served by
    :func:`serve_h2`. :class:`~rama_http.server.HttpServer` serves both versions.
    """

    def __init__(
        self, service: Service[Request, Response], config: ServerConfig | None = None
    ) -> None:
        self.service = service
        self.config = config or ServerConfig()

    async def serve(self, ctx: Context, stream: ByteStream) -> None:
        """Serve one connection until it ends."""
        await serve_h2(ctx, stream, self.service, self.config)
