"""The h2 server side of one connection.

:class:`H2Connection` is the whole server logic over a sans-IO h2 connection,
with its engine calls in a few small primitives: here on the ``h2`` library
(``H2Config(engine="h2")``, the reference); :mod:`._h2_fast` overrides just
those for rama's own engine (``"fast"``, the default).

Each request runs in its own task; responses respect the peer's flow-control
windows; request bodies return window only as the handler reads them. A
failing handler is answered by the policy HTTP/1.1 uses too
(:func:`~rama_http.server.handler_failure`: 500, 504, 503 with Retry-After,
or the peer's 4xx, with the reason phrase as body) while its response head is
unsent, and its stream is reset (RST_STREAM(INTERNAL_ERROR)) after; never the
connection. On graceful shutdown, or when the client sends GOAWAY, the
connection sends GOAWAY, finishes the streams it already accepted (within
``ServerConfig.shutdown_grace``) and closes. What the client sent before its
first request (SETTINGS, WINDOW_UPDATE, PRIORITY, pseudo-header order) is
recorded into the Context for fingerprinting.

Against misbehaving peers (limits in :class:`~rama_http.H2Config`):
every frame passes the sans-IO flood accounting
(:mod:`rama_http._h2._flood`): PING and SETTINGS floods, rapid resets, frames
that carry nothing (empty DATA, WINDOW_UPDATE +1, unknown frames, frames on
closed streams) and PRIORITY past its budget end the connection with
GOAWAY(ENHANCE_YOUR_CALM); reading pauses while unsent output exceeds
``max_write_buffer``; the read loop yields to other connections at a bounded
cost; a stream over the concurrency limit is refused (REFUSED_STREAM); a body
over ``max_body_size`` gets 413 while the response has not started; an answer
the peer's flow-control window stalls for ``write_timeout`` is cancelled
(RST_STREAM(CANCEL)), sooner past ``max_queued_response_bytes``; tunnels have
no body read timeout.

Entry points: :func:`serve_h2` for one connection, :class:`H2Server` as the
h2-only stream service (the counterpart of ``Http1Server``), both usually
reached through :class:`rama_http.server.HttpServer`; :class:`H2Connection`
drives one connection (as ``Http1Connection`` does for HTTP/1.1).
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from anyio.abc import ByteStream, TaskGroup
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import (
    AltSvcFrame,
    DataFrame,
    ExtensionFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from rama_core import Context, Service
from rama_net import ConnectionLost

from .._body import Body, close_body_soon
from .._errors import BodyTooLarge
from .._h2._config import H2Config
from .._h2._flood import H2Flood, H2FloodGuard
from .._h2._inbound import H2InboundData, H2StreamIO, StreamResetError
from .._h2._record import H2PrefaceRecord, H2PrefaceRecorder, PseudoHeaderOrder
from .._headers import Headers
from .._message import Request, Response
from .._status import NO_BODY_STATUSES, reason_phrase
from .._uri import Uri
from .._version import Version
from ._config import ServerConfig
from ._failure import handler_failure, log_handler_failure

__all__ = ["ExtendedConnectProtocol", "H2Connection", "H2Server", "serve_h2"]

_log = logging.getLogger("rama.http.h2")

# Connection-specific fields must not appear in h2 messages (RFC 9113 section 8.2.2).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)
_WRITE_SLICE = 256 * 1024
# A connection that failed under us, the one place naming it: rama streams raise
# ConnectionLost, plain anyio and TLS streams BrokenResourceError (its base); a write the
# peer took nothing of for write_timeout raises TimeoutError (our fail_after).
_LOST = (ConnectionLost, anyio.BrokenResourceError, TimeoutError)
# How long streams past max_queued_response_bytes wait for a peer that opens no window.
_STARVED_GRACE = 1.0
# Input is fed to h2 in slices of _FEED_SLICE bytes. A slice dense with frames (on
# average under _DENSE_FRAME bytes each: a flood's, not DATA's) makes the read loop
# yield to other connections and take the rest of the read in _DENSE_FEED_SLICE pieces.
_FEED_SLICE = 16 * 1024
_DENSE_FEED_SLICE = 2048
_DENSE_FRAME = 256


class ExtendedConnectProtocol(str):
    """The ``:protocol`` of an RFC 8441 extended CONNECT (``websocket``, ...).

    A per-request Context extension.
    """

    __slots__ = ()


class _ServerH2Connection(h2.connection.H2Connection):
    """h2's connection, with the server-side behaviour the library lacks."""

    def __init__(self, config: h2.config.H2Configuration, guard: H2FloodGuard) -> None:
        super().__init__(config=config)
        self._admit_over_limit = False
        self.guard = guard
        self.frames_received = 0
        """Frames processed, all told (the read loop yields after dense slices)."""
        self.refused = 0
        """Streams refused for exceeding SETTINGS_MAX_CONCURRENT_STREAMS, all told."""

    def _stream_open(self, stream_id: int) -> bool:
        st = self.streams.get(stream_id)
        return st is not None and not st.closed

    def _receive_frame(self, frame: Frame) -> list[h2.events.Event]:
        # Every frame passes here, one at a time, before h2 acts on it: the flood
        # accounting is per frame (H2Flood stops the read at the frame that spent an
        # allowance, so a PING past max_pings is never answered).
        self.frames_received += 1
        guard = self.guard
        kind = type(frame)
        if kind is DataFrame:
            assert isinstance(frame, DataFrame)
            guard.data(
                stream_open=self._stream_open(frame.stream_id),
                length=len(frame.data),
                end_stream="END_STREAM" in frame.flags,
            )
        elif kind is HeadersFrame:
            sid = frame.stream_id
            if sid > self.highest_inbound_stream_id:
                guard.headers(opens_stream=True, stream_open=False)
            else:
                guard.headers(opens_stream=False, stream_open=self._stream_open(sid))
        elif kind is WindowUpdateFrame:
            assert isinstance(frame, WindowUpdateFrame)
            guard.window_update(frame.stream_id, frame.window_increment)
        elif kind is PingFrame:
            guard.ping(ack="ACK" in frame.flags)
        elif kind is SettingsFrame:
            guard.settings(ack="ACK" in frame.flags)
        elif kind is PriorityFrame:
            guard.priority()
        elif kind is RstStreamFrame:
            guard.rst_stream(stream_open=self._stream_open(frame.stream_id))
        elif kind is GoAwayFrame:
            guard.goaway()
        elif kind is ExtensionFrame or kind is AltSvcFrame:
            guard.unknown()
        return super()._receive_frame(frame)

    @property
    def open_inbound_streams(self) -> int:
        """Open client streams (reported as 0 while admitting one that gets refused)."""
        if self._admit_over_limit:
            return 0
        return super().open_inbound_streams

    def _receive_headers_frame(
        self, frame: HeadersFrame
    ) -> tuple[list[Frame], list[h2.events.Event]]:
        sid = frame.stream_id
        if (
            sid in self.streams
            or self.open_inbound_streams < self.local_settings.max_concurrent_streams
        ):
            return super()._receive_headers_frame(frame)
        # One stream too many: h2 would end the connection with PROTOCOL_ERROR. RFC 9113
        # section 5.1.2 allows a stream error instead, and REFUSED_STREAM tells the client
        # the request was not processed and may be retried. h2 still takes the header block
        # (HPACK state and stream ids must stay in step), then the stream is reset at once
        # and its events are dropped, so no handler ever sees it.
        self._admit_over_limit = True
        try:
            frames, events = super()._receive_headers_frame(frame)
        finally:
            self._admit_over_limit = False
        frames = [*frames, *self.streams[sid].reset_stream(ErrorCodes.REFUSED_STREAM)]
        self.refused += 1
        return frames, [e for e in events if getattr(e, "stream_id", None) != sid]

    def _receive_goaway_frame(
        self, frame: GoAwayFrame
    ) -> tuple[list[Frame], list[h2.events.Event]]:
        # h2 closes its state machine on a received GOAWAY and drops queued output;
        # after that it refuses to send anything, so the client's in-flight requests
        # would go unanswered. A client's GOAWAY only limits *server-initiated* streams
        # (RFC 9113 section 6.8): report it and keep the connection able to answer.
        event = h2.events.ConnectionTerminated()
        try:
            event.error_code = ErrorCodes(frame.error_code)
        except ValueError:
            event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


class _StreamGone(Exception):
    """The stream can no longer be written (reset by the peer or connection closed)."""


class _Stream:
    __slots__ = ("body", "head", "headers_sent", "id", "reset_code", "scope", "window")

    def __init__(self, stream_id: int, body: H2InboundData, *, head: bool = False) -> None:
        self.id = stream_id
        self.body = body
        self.head = head  # a HEAD request: answers carry no body
        self.scope = anyio.CancelScope()
        self.headers_sent = False
        self.reset_code: int | None = None
        self.window: anyio.Event | None = None

    def wake(self) -> None:
        if self.window is not None:
            self.window.set()
            self.window = None


class _DateCache:
    __slots__ = ("second", "value")

    def __init__(self) -> None:
        self.second = -1
        self.value = b""

    def get(self) -> bytes:
        now = int(time.time())  # wall-clock time, for the Date header
        if now != self.second:
            self.second = now
            self.value = email.utils.formatdate(now, usegmt=True).encode()
        return self.value


_DATE = _DateCache()


class H2Connection:
    """Drives one server-side h2 connection over a ByteStream.

    ``ServerConfig.h2.engine`` picks the implementation: ``"h2"`` (this class, on
    the ``h2`` library) or ``"fast"`` (a subclass on rama's own engine, in
    ``_h2_fast``); constructing ``H2Connection`` returns the one configured.
    """

    def __new__(
        cls,
        ctx: Context,
        stream: ByteStream,
        service: Service[Request, Response],
        config: ServerConfig | None = None,
    ) -> H2Connection:
        if cls is H2Connection and (config or ServerConfig()).h2.engine == "fast":
            from ._h2_fast import H2FastConnection

            return object.__new__(H2FastConnection)
        return object.__new__(cls)

    def __init__(
        self,
        ctx: Context,
        stream: ByteStream,
        service: Service[Request, Response],
        config: ServerConfig | None = None,
    ) -> None:
        self._config = config or ServerConfig()
        self._h2c: H2Config = self._config.h2
        self._ctx = ctx.fork()
        self._stream = stream
        self._service = service
        self.recorder = H2PrefaceRecorder()
        self._ctx.insert(self.recorder.record, key=H2PrefaceRecord)

        self._flood = self._new_flood_guard()
        self._setup_conn()

        self._streams: dict[int, _Stream] = {}
        self._tg: TaskGroup | None = None
        self._want_write = anyio.Event()
        self._send_lock = anyio.Lock()
        self._out = bytearray()  # taken from h2 (or hand-made frames), not yet sent
        self._in_send = 0  # bytes handed to the socket that it has not taken yet
        self._drained = anyio.Event()
        self._refused_seen = 0
        self._holders: dict[int, int] = {}  # stream id -> bytes waiting for window, in order
        self._window_updates = 0
        self._goaway_sent = False
        self._draining = False
        self._last_stream_id = 0
        self._stop = anyio.CancelScope()
        self._idle_since: float | None = 0.0  # idle from the start (set in run())
        self._idle_changed = anyio.Event()
        self._closed = False
        self._write_failed = False

    def _new_flood_guard(self) -> H2FloodGuard:
        h2c = self._h2c
        return H2FloodGuard(
            window=h2c.flood_window,
            max_pings=h2c.max_pings,
            max_settings=h2c.max_settings,
            max_resets=h2c.max_resets,
            max_idle_frames=h2c.max_idle_frames,
            max_concurrent_streams=h2c.max_concurrent_streams,
            clock=anyio.current_time,
        )

    # -- the engine's primitives (the fast engine's connection overrides these) ----------
    _errors: tuple[type[Exception], ...] = (
        h2.exceptions.StreamClosedError,
        h2.exceptions.ProtocolError,
    )
    """What the engine raises for a command on a stream it cannot take."""

    def _setup_conn(self) -> None:
        cfg = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=True,
            normalize_inbound_headers=True,
            # Outbound fields are lowercased and filtered here; h2 need not recheck them.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        conn = _ServerH2Connection(cfg, self._flood)
        settings: dict[SettingCodes, int] = {
            SettingCodes.MAX_CONCURRENT_STREAMS: self._h2c.max_concurrent_streams,
            SettingCodes.INITIAL_WINDOW_SIZE: self._h2c.initial_window_size,
            SettingCodes.MAX_FRAME_SIZE: self._h2c.max_frame_size,
            SettingCodes.MAX_HEADER_LIST_SIZE: self._h2c.max_header_list_size,
        }
        if self._h2c.enable_connect_protocol:
            settings[SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1
        # Replacing local_settings before the preface makes the limits apply from the
        # first frame, instead of only after the client acknowledged them.
        conn.local_settings = h2.settings.Settings(client=False, initial_values=settings)
        conn.decoder.max_header_list_size = self._h2c.max_header_list_size
        self._conn = conn

    def _start(self) -> None:
        """Queue our preface (SETTINGS, the connection window's WINDOW_UPDATE)."""
        conn = self._conn
        conn.initiate_connection()
        extra_window = self._h2c.connection_window_size - 65535
        if extra_window > 0:
            conn.increment_flow_control_window(extra_window)

    def _frame_count(self) -> int:
        return self._conn.frames_received

    def _window(self, stream_id: int) -> int:
        return self._conn.local_flow_control_window(stream_id)

    def _max_frame(self) -> int:
        return self._conn.max_outbound_frame_size

    def _send_headers(
        self, stream_id: int, fields: list[tuple[bytes, bytes]], end: bool = False
    ) -> None:
        self._conn.send_headers(stream_id, fields, end_stream=end)

    def _send_frames(self, stream_id: int, data: bytes | memoryview, end: bool) -> None:
        self._conn.send_data(stream_id, data, end_stream=end)

    def _end_stream(self, stream_id: int) -> None:
        self._conn.end_stream(stream_id)

    def _reset_raw(self, stream_id: int, code: int) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._conn.reset_stream(stream_id, code)

    def _ack_raw(self, stream_id: int, n: int) -> None:
        self._conn.acknowledge_received_data(n, stream_id)

    def _take_output(self) -> bytes:
        return self._conn.data_to_send()

    def _send_goaway(self, error_code: int, additional_data: bytes = b"") -> None:
        # h2's close_connection would stop all further sending; the frame is queued by
        # hand so accepted streams can still finish (RFC 9113 section 6.8).
        self._queue_frame(
            GoAwayFrame(
                0,
                last_stream_id=self._last_stream_id,
                error_code=error_code,
                additional_data=additional_data,
            )
        )

    @property
    def context(self) -> Context:
        """The connection's Context (holds the :class:`H2PrefaceRecord`)."""
        return self._ctx

    @property
    def write_backlog(self) -> int:
        """Bytes waiting to be written to the peer (queued or not yet taken by the socket).

        Reading from the peer pauses while this exceeds ``H2Config.max_write_buffer``.
        """
        self._collect()
        return len(self._out) + self._in_send

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self, initial: bytes = b"") -> None:
        """Serve the connection until it closes; never raises for peer misbehaviour."""
        # One clock, the event loop's (anyio.current_time): trio's test clocks move it.
        if self._idle_since is not None:
            self._idle_since = anyio.current_time()
        self._start()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                # As on HTTP/1.1: helpers a handler spawns through ctx.executor (an ASGI
                # app's task, a body producer) run in this connection's task group.
                self._ctx.executor = self._ctx.executor.with_task_group(tg)
                tg.start_soon(self._writer_loop)
                tg.start_soon(self._watch_shutdown)
                tg.start_soon(self._watch_idle)
                self._want_write.set()
                with self._stop:
                    if initial:
                        self._receive(initial)
                    await self._read_loop()
                self._closed = True
                for st in list(self._streams.values()):
                    st.body.fail(StreamResetError(st.id, ErrorCodes.CANCEL))
                    st.scope.cancel()
                if not self._write_failed:
                    with anyio.move_on_after(1.0):
                        await self._flush()
                tg.cancel_scope.cancel()
        except* _LOST as group:
            _log.debug("h2 connection lost: %r", group.exceptions)
        finally:
            self._closed = True
            with anyio.CancelScope(shield=True):
                await _close_quietly(self._stream)

    async def _read_loop(self) -> None:
        """Read and process input, yielding to other connections at a bounded cost.

        A stream may return buffered bytes without waiting (rama's Protocol-backed
        streams do), so one busy connection could keep the event loop for as long as
        its peer keeps the buffer full. Here the loop yields at least once per
        ``read_size`` bytes, and a read is fed to h2 in slices with a yield after
        every slice dense with frames (a flood of tiny frames costs far more per
        byte than DATA): a turn of this connection costs about one slice.
        """
        read_size = self._h2c.read_size
        frames = self._frame_count
        receive = self._stream.receive
        since = 0  # bytes processed since this loop last yielded
        while True:
            # A peer that makes us write (PING, SETTINGS, resets, requests) must also
            # read: while our answers pile up, stop taking more from it.
            await self._wait_for_room()
            try:
                data = await receive(read_size)
            except (anyio.EndOfStream, *_LOST):
                return
            size = len(data)
            if size <= _FEED_SLICE:
                if not self._receive(data):
                    return
            else:
                view = memoryview(data)
                start, step = 0, _FEED_SLICE
                while start < size:
                    before = frames()
                    end = start + step
                    if not self._receive(view[start:end]):
                        return
                    start = end
                    if (frames() - before) * _DENSE_FRAME >= step:
                        # Tiny frames: yield now, and take the rest in smaller slices.
                        step = _DENSE_FEED_SLICE
                        since = 0
                        await anyio.lowlevel.checkpoint()
            since += size
            if since >= read_size:
                since = 0
                await anyio.lowlevel.checkpoint()

    def _receive(self, data: bytes | memoryview) -> bool:
        """Feed bytes to h2; False when the connection must end."""
        self.recorder.feed(data)
        try:
            events = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            # h2 queues a GOAWAY for most errors; not for a bad preface, which gets one here.
            _log.info("h2 protocol error from peer: %s", e)
            if self._conn.state_machine.state is not ConnectionState.CLOSED:
                code = getattr(e, "error_code", None) or ErrorCodes.PROTOCOL_ERROR
                self._goaway_sent = True
                self._queue_frame(GoAwayFrame(0, last_stream_id=0, error_code=code))
            return False
        except H2Flood as e:
            # Raised by the per-frame accounting at the frame that spent the allowance:
            # what followed it in this read is never processed.
            self._on_flood(e)
            return False
        try:
            refused = self._conn.refused - self._refused_seen
            if refused:
                self._refused_seen += refused
                self._flood.refused(refused)
            for event in events:
                self._on_event(event)
        except h2.exceptions.ProtocolError as e:
            _log.info("h2 protocol error: %s", e)
            return False
        except H2Flood as e:
            self._on_flood(e)
            return False
        self._want_write.set()
        return True

    def _on_flood(self, e: H2Flood) -> None:
        _log.info("h2 peer floods %s: GOAWAY(ENHANCE_YOUR_CALM)", e.what)
        self._draining = self._goaway_sent = True
        self._send_goaway(ErrorCodes.ENHANCE_YOUR_CALM, f"too many {e.what}".encode())

    # -- events ---------------------------------------------------------------------------
    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._on_request(event.stream_id, event.headers or [], event.stream_ended is not None)
        elif isinstance(event, h2.events.DataReceived):
            self._on_data(
                event.stream_id,
                bytes(event.data or b""),
                int(event.flow_controlled_length or 0),
            )
        elif isinstance(event, h2.events.StreamEnded):
            st = self._streams.get(event.stream_id)
            if st is not None:
                st.body.end()
        elif isinstance(event, h2.events.TrailersReceived):
            st = self._streams.get(event.stream_id)
            if st is not None:
                st.body.trailers = _to_headers(event.headers or [])
        elif isinstance(event, h2.events.WindowUpdated):
            self._on_window(event.stream_id)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._on_window(0)
        elif isinstance(event, h2.events.StreamReset):
            # Reset by the client, or by h2 for a malformed request: either way a
            # stream that cost a handler (or an answer) and yields nothing.
            self._flood.resets()
            st = self._streams.get(event.stream_id)
            if st is not None:
                code = int(event.error_code or 0)
                st.reset_code = code
                st.body.fail(StreamResetError(st.id, code))
                st.wake()
                # Nobody can read the answer any more: stop the handler.
                st.scope.cancel()
        elif isinstance(event, h2.events.ConnectionTerminated):
            # The client is going away: its requests in flight still get their answers,
            # new ones are refused, and the connection closes once the last one is done.
            _log.debug("h2 client sent GOAWAY (%s)", event.error_code)
            self.goaway()

    def _on_request(self, sid: int, raw: Any, ended: bool) -> None:
        if self._draining or self._closed:
            self._reset_raw(sid, ErrorCodes.REFUSED_STREAM)
            self._flood.refused()
            return
        self._last_stream_id = max(self._last_stream_id, sid)
        pseudo: dict[bytes, bytes] = {}
        order: list[str] = []
        fields: list[tuple[str, str]] = []
        cookies: list[str] | None = None
        for name, value in raw:
            n, v = bytes(name), bytes(value)
            if n[:1] == b":":
                pseudo[n] = v
                order.append(n.decode("latin-1"))
            elif n == b"cookie":
                # Split cookie fields are joined again (RFC 9113 section 8.2.3), last,
                # as the h2 library's inbound normalization does.
                if cookies is None:
                    cookies = []
                cookies.append(v.decode("latin-1"))
            else:
                fields.append((n.decode("latin-1"), v.decode("latin-1")))
        if cookies is not None:
            fields.append(("cookie", "; ".join(cookies)))
        names = tuple(order)
        self.recorder.set_pseudo_header_order(names)

        limit = self._config.max_body_size
        inbound = H2InboundData(
            functools.partial(self._ack, sid),
            limit=limit,
            timeout=self._config.body_read_timeout,
        )
        method = pseudo.get(b":method", b"GET").decode("latin-1")
        st = _Stream(sid, inbound, head=method == "HEAD")
        headers = Headers.from_trusted(fields)
        content_length = headers.get("content-length")
        length = int(content_length) if content_length and content_length.isdigit() else None
        if limit is not None and length is not None and length > limit:
            # Refused before any handler runs, as HTTP/1.1 does.
            _log.info("h2 stream %d: declared body of %d bytes over the limit", sid, length)
            self._answer_now(st, 413, text=f"request body larger than {limit} bytes")
            if not ended:
                self._reset(st, ErrorCodes.NO_ERROR)
            self._flood.stream_closed(sid)
            return
        self._streams[sid] = st
        self._idle_since = None

        scheme = pseudo.get(b":scheme")
        authority = pseudo.get(b":authority")
        path = pseudo.get(b":path")
        body = Body.from_iter(inbound, length=length)
        target = (
            path.decode("latin-1")
            if path is not None
            else (authority.decode("latin-1") if authority is not None else "")
        )
        req = Request._trusted(method, target, headers, body, Version.HTTP_2)
        try:
            req.uri = Uri.from_parts(
                scheme=scheme.decode("latin-1") if scheme is not None else None,
                authority=authority.decode("latin-1") if authority is not None else None,
                path_and_query=target if path is not None else "",
            )
            req.target = target
        except ValueError:
            # Keep the raw target; Request.uri reports the problem if a handler asks.
            pass

        req_ctx = self._ctx.fork()
        req_ctx.insert(PseudoHeaderOrder(names))
        protocol = pseudo.get(b":protocol")
        if protocol is not None:
            req_ctx.insert(ExtendedConnectProtocol(protocol.decode("latin-1")))
        if ended:
            inbound.end()
        assert self._tg is not None
        self._tg.start_soon(self._run_stream, st, req, req_ctx, name=f"h2 stream {sid}")

    def _on_data(self, sid: int, data: bytes, flow: int) -> None:
        st = self._streams.get(sid)
        if st is None:
            if flow:
                self._ack_raw(sid, flow)
            return
        try:
            st.body.push(data, flow)
        except BodyTooLarge as e:
            self._body_too_large(st, e)

    def _body_too_large(self, st: _Stream, err: BodyTooLarge) -> None:
        """The upload went over max_body_size: 413 if still possible, else reset."""
        if st.headers_sent or not self._open(st):
            # Too late for a status; the handler's next read raises BodyTooLarge.
            self._reset(st, ErrorCodes.CANCEL)
            return
        _log.info("h2 stream %d: %s -> 413", st.id, err)
        # The request is refused whatever the handler would do: stop it, answer in full,
        # then ask the client to stop sending with RST_STREAM(NO_ERROR) (RFC 9113 8.1).
        st.scope.cancel()
        self._answer_now(st, 413, text=f"request body larger than {err.limit} bytes")
        self._reset(st, ErrorCodes.NO_ERROR)

    def _on_window(self, stream_id: int) -> None:
        self._window_updates += 1
        if stream_id == 0:
            for st in self._streams.values():
                st.wake()
        else:
            one = self._streams.get(stream_id)
            if one is not None:
                one.wake()

    def _ack(self, stream_id: int, n: int) -> None:
        if self._closed:
            return
        try:
            self._ack_raw(stream_id, n)
        except self._errors:
            return
        self._want_write.set()

    def _reset(self, st: _Stream, code: int) -> None:
        if st.reset_code is not None:
            return
        st.reset_code = code
        self._reset_raw(st.id, code)
        st.body.fail(StreamResetError(st.id, code))
        st.wake()
        self._want_write.set()

    # -- one request ----------------------------------------------------------------------
    async def _run_stream(self, st: _Stream, req: Request, ctx: Context) -> None:
        try:
            with st.scope:
                try:
                    resp = await self._service.serve(ctx, req)
                    if not isinstance(resp, Response):
                        _log.error("HTTP handler returned %r, not a Response", type(resp).__name__)
                        resp = Response.error(500)
                    await self._send_response(st, req, resp)
                except (_StreamGone, StreamResetError):
                    pass
                except Exception as e:
                    self._on_handler_error(st, req, e)
        finally:
            st.body.close_now()
            if st.reset_code is None and not self._closed:
                if not st.headers_sent:
                    self._reset(st, ErrorCodes.INTERNAL_ERROR)
                elif not st.body.ended:
                    # Answered before the upload finished: tell the client to stop sending.
                    self._reset(st, ErrorCodes.NO_ERROR)
            self._streams.pop(st.id, None)
            self._flood.stream_closed(st.id)
            if not self._streams:
                self._idle_since = anyio.current_time()
                self._idle_changed.set()
                if self._draining:
                    self._stop.cancel()

    def _on_handler_error(self, st: _Stream, req: Request, e: Exception) -> None:
        """One policy with HTTP/1.1 (:func:`handler_failure`): answer if the head is unsent.

        After the head went out the stream can only be reset (INTERNAL_ERROR).
        A stream the peer reset or a connection that closed meanwhile is not the
        handler's fault: nothing is logged above DEBUG.
        """
        if not self._open(st):
            _log.debug("h2 stream %d: handler ended after the stream closed: %r", st.id, e)
            return
        failure = handler_failure(e)
        log_handler_failure(_log, failure, e, req.method, req.target)
        if not st.headers_sent and self._answer_now(st, failure.status, failure.headers):
            return
        self._reset(st, ErrorCodes.INTERNAL_ERROR)

    def _answer_now(
        self,
        st: _Stream,
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
        body = (text if text is not None else reason_phrase(status)).encode() + b"\n"
        fields = [
            (b":status", str(status).encode()),
            (b"content-type", b"text/plain; charset=utf-8"),
        ]
        fields += [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in extra]
        if self._config.date_header:
            fields.append((b"date", _DATE.get()))
        try:
            room = min(self._window(st.id), self._max_frame())
            if st.head or len(body) > room:
                fields.append((b"content-length", b"0" if not st.head else b"%d" % len(body)))
                self._send_headers(st.id, fields, True)
            else:
                fields.append((b"content-length", b"%d" % len(body)))
                self._send_headers(st.id, fields)
                self._send_frames(st.id, body, True)
                self._flood.sent(st.id, len(body))
        except self._errors:
            return False
        st.headers_sent = True
        self._want_write.set()
        return True

    def _open(self, st: _Stream) -> bool:
        return st.reset_code is None and not self._closed

    async def _send_response(self, st: _Stream, req: Request, resp: Response) -> None:
        if not self._open(st):
            raise _StreamGone
        head: list[tuple[bytes, bytes]] = [(b":status", str(resp.status).encode())]
        date = self._config.date_header
        server = self._config.server_header
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
            head.append((b"date", _DATE.get()))
        if server:
            head.append((b"server", server.encode("latin-1")))

        body = resp.body
        tunnel = resp.on_upgrade is not None and req.method == "CONNECT"
        if tunnel and 200 <= resp.status < 300:
            self._send_headers(st.id, head)
            st.headers_sent = True
            await self._write()
            await self._run_tunnel(st, resp)
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
            self._send_headers(st.id, head, True)
            st.headers_sent = True
            await self._write()
            if no_body:
                await close_body_soon(body)
            return
        self._send_headers(st.id, head)
        st.headers_sent = True
        if data is not None and body.trailers is None:
            await self._send_data(st, data, end=True)
            return
        try:
            async for chunk in body:
                if chunk:
                    await self._send_data(st, chunk, end=False)
        finally:
            await close_body_soon(body)
        trailers = body.trailers
        if trailers:
            fields = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in trailers]
            with self._on_stream(st):
                self._send_headers(st.id, fields, True)
        else:
            with self._on_stream(st):
                self._end_stream(st.id)
        await self._write()

    async def _run_tunnel(self, st: _Stream, resp: Response) -> None:
        async def send(data: bytes, end: bool) -> None:
            try:
                await self._send_data(st, data, end=end)
            except _StreamGone as e:
                raise ConnectionLost(f"h2 stream {st.id} is gone") from e

        io = H2StreamIO(st.body, send, lambda: self._reset(st, ErrorCodes.CANCEL))
        assert resp.on_upgrade is not None
        try:
            await resp.on_upgrade(io)
        except (*_LOST, anyio.ClosedResourceError):
            if self._open(st):
                raise
            raise _StreamGone from None  # the stream was reset: not the owner's fault
        finally:
            if not io._eof_sent and self._open(st):
                await io.send_eof()

    @contextlib.contextmanager
    def _on_stream(self, st: _Stream) -> Iterator[None]:
        """Guard an h2 call on a stream that the peer may have reset meanwhile."""
        if not self._open(st):
            raise _StreamGone
        try:
            yield
        except self._errors as e:
            raise _StreamGone from e

    async def _send_data(self, st: _Stream, data: bytes, *, end: bool) -> None:
        """Send ``data`` as DATA frames within the peer's windows; waits for WINDOW_UPDATE."""
        view = memoryview(data)
        while True:
            if not self._open(st):
                raise _StreamGone
            if not view:
                if end:
                    with self._on_stream(st):
                        self._end_stream(st.id)
                    await self._write()
                return
            try:
                window = self._window(st.id)
            except self._errors as e:
                raise _StreamGone from e
            if window <= 0:
                await self._wait_for_window(st, len(view))
                continue
            n = min(window, self._max_frame(), len(view))
            last = n == len(view)
            with self._on_stream(st):
                self._send_frames(st.id, view[:n], end and last)
            self._flood.sent(st.id, n)
            view = view[n:]
            await self._write()
            if last:
                return

    async def _wait_for_window(self, st: _Stream, held: int) -> None:
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
        holders = self._holders
        holders[st.id] = held
        start = anyio.current_time()
        try:
            while True:
                st.window = ev = anyio.Event()
                beyond = self._beyond_cap(st.id)
                left = math.inf if timeout is None else start + timeout - anyio.current_time()
                wait = min(left, _STARVED_GRACE) if beyond else left
                updates = self._window_updates
                with anyio.move_on_after(wait) as waited:
                    await ev.wait()
                if not waited.cancelled_caught:
                    return
                if timeout is not None and anyio.current_time() - start >= timeout:
                    _log.info("h2 stream %d: no flow-control window for %gs", st.id, timeout)
                elif beyond and self._window_updates == updates:
                    _log.info(
                        "h2 stream %d: %d bytes waiting for a window the peer does not open,"
                        " over max_queued_response_bytes: cancelled",
                        st.id,
                        held,
                    )
                else:
                    continue
                self._reset(st, ErrorCodes.CANCEL)
                raise _StreamGone
        finally:
            holders.pop(st.id, None)

    def _beyond_cap(self, stream_id: int) -> bool:
        """Whether ``stream_id``'s held bytes are past the cap (streams before it count first)."""
        cap = self._h2c.max_queued_response_bytes
        before = 0
        for sid, n in self._holders.items():
            if sid == stream_id:
                return before > 0 and before + n > cap
            before += n
        return False

    # -- writing --------------------------------------------------------------------------
    async def _write(self) -> None:
        """Have what h2 queued written soon; wait while too much is queued.

        Only what waits behind the write in progress counts here, so a response
        writer refills the queue while the socket takes the previous slice.
        """
        self._want_write.set()
        bound = self._h2c.max_write_buffer
        while True:
            self._collect()
            if len(self._out) <= bound:
                return
            await self._drained.wait()

    async def _wait_for_room(self) -> None:
        """Wait while the whole backlog (queued or in the socket write) is over the bound."""
        bound = self._h2c.max_write_buffer
        while self.write_backlog > bound:
            drained = self._drained
            self._want_write.set()
            await drained.wait()

    def _collect(self) -> None:
        """Move what h2 queued into our buffer (keeps hand-made frames in order)."""
        data = self._take_output()
        if data:
            self._out += data

    def _queue_frame(self, frame: Frame) -> None:
        self._collect()
        self._out += frame.serialize()
        self._want_write.set()

    async def _writer_loop(self) -> None:
        try:
            while True:
                await self._want_write.wait()
                self._want_write = anyio.Event()
                await self._flush()
        except _LOST as e:
            _log.debug("h2 connection: writing failed: %r", e)
            self._write_failed = True
            self._stop.cancel()

    async def _flush(self) -> None:
        """Write everything queued.

        In slices, each bounded by write_timeout: a slow but steady reader is fine,
        a socket that takes nothing for that long raises TimeoutError (ending the
        connection).
        """
        async with self._send_lock:
            while True:
                self._collect()
                if not self._out:
                    return
                out = self._out
                if len(out) <= _WRITE_SLICE:
                    data = bytes(out)
                    out.clear()
                else:
                    data = bytes(memoryview(out)[:_WRITE_SLICE])
                    del out[:_WRITE_SLICE]
                self._in_send = len(data)
                try:
                    with anyio.fail_after(self._config.write_timeout):
                        await self._stream.send(data)
                finally:
                    self._in_send = 0
                    self._drained.set()
                    self._drained = anyio.Event()

    # -- shutdown and idleness --------------------------------------------------------------
    def goaway(self, error_code: int = ErrorCodes.NO_ERROR) -> None:
        """Announce GOAWAY: no new streams; accepted ones finish, then the connection closes."""
        if self._draining:
            return
        self._draining = self._goaway_sent = True
        self._send_goaway(error_code)
        if not self._streams:
            self._stop.cancel()

    async def _watch_shutdown(self) -> None:
        await self._ctx.executor.wait_shutdown()
        self.goaway()
        await anyio.sleep(self._config.shutdown_grace)
        _log.info("h2 connection: shutdown grace over, cancelling %d streams", len(self._streams))
        self._stop.cancel()

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
                self._stop.cancel()
                return
            await anyio.sleep(max(remaining, 0.01))


def _to_headers(raw: list[tuple[bytes, bytes]] | Any) -> Headers:
    return Headers.from_trusted(
        [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in raw]
    )


async def _close_quietly(stream: ByteStream) -> None:
    try:
        with anyio.move_on_after(1.0):
            await stream.aclose()
    except _LOST:
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
