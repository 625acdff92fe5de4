"""A fast sans-IO HTTP/2 connection (RFC 9113) for both roles.

Bytes in, events out (:meth:`H2Engine.receive_data`); commands in, bytes out
(:meth:`H2Engine.send_headers`, ..., :meth:`H2Engine.data_to_send`). No I/O,
no clocks, no tasks: an adapter reads the socket, feeds the engine, acts on
the events and writes what the engine queued.

What the caller fixes (for the client role, an h2 fingerprint is exactly what
was configured): the SETTINGS pairs and their order, the connection
WINDOW_UPDATE sent with the preface, PRIORITY frames (:meth:`send_priority`)
and the header order of every block, pseudo-headers included (sent as given,
not reordered nor validated).

What the engine enforces on the peer: the preface and SETTINGS first, frame
sizes, stream states (RFC 9113 section 5.1) with the right stream or
connection error, flow control both ways (connection and stream windows,
SETTINGS_INITIAL_WINDOW_SIZE changes applied to open streams, negative
windows included), SETTINGS_MAX_CONCURRENT_STREAMS (REFUSED_STREAM), header
field validation (RFC 9113 sections 8.2, 8.3; a malformed message is a
PROTOCOL_ERROR stream error), content-length against DATA, a bound on header
block size and CONTINUATION frames. Connection errors queue GOAWAY and close
the engine (a :class:`~._events.ConnectionFailed` event); stream errors queue
RST_STREAM (a :class:`~._events.StreamReset` event with ``remote=False``).

For flood accounting (rapid reset, PING/SETTINGS floods, no-progress
allowances), ``on_frame(type, flags, stream_id, payload)`` is called for every
received frame before the engine acts on it (``payload`` is a memoryview of the
frame's payload, padding included, valid during the call; the engine's state,
e.g. :meth:`H2Engine.stream_is_open`, is still what it was before the frame);
returning an error code (e.g. ENHANCE_YOUR_CALM) ends the connection with it,
so a flood guard that raises can be wrapped in a few lines. :attr:`H2Engine.data_delivered` and
:attr:`H2Engine.headers_delivered` count what the peer sent that reached the
application.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ._events import (
    ConnectionFailed,
    ConnectionTerminated,
    DataReceived,
    Event,
    FlowControlBlocked,
    H2EngineError,
    Header,
    InformationalResponseReceived,
    PingAckReceived,
    PingReceived,
    PriorityReceived,
    PushPromiseReceived,
    RemoteSettingsChanged,
    RequestReceived,
    ResponseReceived,
    SettingsAcknowledged,
    StreamClosedError,
    StreamPriority,
    StreamRefused,
    StreamReset,
    TooManyStreamsError,
    TrailersReceived,
    UnknownFrameReceived,
    WindowUpdated,
)
from ._frames import (
    _U32,
    CONNECTION_PREFACE,
    DEFAULT_MAX_FRAME_SIZE,
    FLAG_ACK,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FLAG_PADDED,
    FLAG_PRIORITY,
    FRAME_HEADER,
    MAX_FRAME_SIZE_LIMIT,
    MAX_WINDOW,
    ErrorCode,
    FrameError,
    SettingCode,
    check_frame,
    data_frame,
    goaway_frame,
    header_block_frames,
    parse_goaway,
    parse_priority,
    parse_settings,
    ping_frame,
    priority_frame,
    rst_stream_frame,
    settings_frame,
    strip_padding,
    window_update_frame,
)
from ._hpack import Decoder, Encoder, HeaderListTooLarge, HPACKError

__all__ = ["FrameHook", "H2Engine"]

FrameHook = Callable[[int, int, int, memoryview], "int | None"]
"""``(type, flags, stream_id, payload) -> error code or None``, called per received frame."""

_ENDED, _RESET_BY_US, _RESET_BY_PEER = 0, 1, 2

_PROTOCOL_ERROR = int(ErrorCode.PROTOCOL_ERROR)
_FLOW_CONTROL_ERROR = int(ErrorCode.FLOW_CONTROL_ERROR)
_STREAM_CLOSED = int(ErrorCode.STREAM_CLOSED)
_FRAME_SIZE_ERROR = int(ErrorCode.FRAME_SIZE_ERROR)
_REFUSED_STREAM = int(ErrorCode.REFUSED_STREAM)
_CANCEL = int(ErrorCode.CANCEL)
_COMPRESSION_ERROR = int(ErrorCode.COMPRESSION_ERROR)
_ENHANCE_YOUR_CALM = int(ErrorCode.ENHANCE_YOUR_CALM)

_CONNECTION_HEADERS = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
_REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))

_DEFAULTS = {1: 4096, 2: 1, 3: 2**31 - 1, 4: 65535, 5: 16384, 6: 2**31 - 1, 8: 0}

_unpack_header = FRAME_HEADER.unpack_from
_pack_header = FRAME_HEADER.pack
_unpack_u32 = _U32.unpack_from


class _Stream:
    __slots__ = (
        "content_length",
        "data_in",
        "final_in",
        "head",
        "headers_out",
        "in_pending",
        "in_window",
        "local",
        "local_closed",
        "out_window",
        "remote_closed",
        "sid",
    )

    def __init__(self, sid: int, out_window: int, in_window: int, local: bool) -> None:
        self.sid = sid
        self.out_window = out_window
        self.in_window = in_window
        self.in_pending = 0
        self.local = local
        self.local_closed = False
        self.remote_closed = False
        self.headers_out = False
        self.final_in = False
        self.content_length = -1
        self.data_in = 0
        self.head = False


class _ConnError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _content_length(value: bytes, previous: int) -> int:
    """The parsed value, or -2 when invalid or disagreeing with a previous one."""
    if not value.isdigit():
        # "a, a" lists of one value are allowed by RFC 9110; anything else is not.
        parts = {p.strip() for p in value.split(b",")}
        if len(parts) != 1:
            return -2
        value = parts.pop()
        if not value.isdigit():
            return -2
    n = int(value)
    if previous >= 0 and previous != n:
        return -2
    return n


class H2Engine:
    """One HTTP/2 connection, client or server side, without I/O.

    ``settings``: our SETTINGS pairs in the order to send them (repeats and
    unknown identifiers allowed); the defaults are ``[(MAX_CONCURRENT_STREAMS,
    100)]`` for a server and ``[(ENABLE_PUSH, 0)]`` for a client.
    ``initial_window_update``: the connection-level WINDOW_UPDATE increment sent
    right after them (0: none). ``max_header_list_size``: the decoded size
    (RFC 9113 accounting) above which a header block ends the connection with
    ENHANCE_YOUR_CALM (default: our SETTINGS_MAX_HEADER_LIST_SIZE, else 64 KiB);
    ``max_header_block_size`` bounds the compressed block across CONTINUATION
    frames and ``max_continuation_frames`` their number (a CONTINUATION flood
    ends the connection with ENHANCE_YOUR_CALM). With ``auto_window_update``
    the engine gives back flow-control credit as DATA arrives (a WINDOW_UPDATE
    once half a window was used); without it, call
    :meth:`acknowledge_received_data` as the application consumes data.
    """

    def __init__(
        self,
        *,
        client: bool,
        settings: Sequence[tuple[int, int]] | None = None,
        initial_window_update: int = 0,
        max_header_list_size: int | None = None,
        max_header_block_size: int = 256 * 1024,
        max_continuation_frames: int = 128,
        auto_window_update: bool = True,
        huffman: bool = False,
        validate_headers: bool = True,
        max_closed_streams: int = 4096,
        on_frame: FrameHook | None = None,
    ) -> None:
        self.client = client
        if settings is None:
            settings = [(int(SettingCode.ENABLE_PUSH), 0)] if client else [(3, 100)]
        self._initial_settings = [(int(k), int(v)) for k, v in settings]
        if not 0 <= initial_window_update <= MAX_WINDOW - 65535:
            raise ValueError("initial_window_update out of range")
        self._initial_window_update = initial_window_update
        self.auto_window_update = auto_window_update
        self.validate_headers = validate_headers
        self.on_frame = on_frame
        self.max_header_block_size = max_header_block_size
        self.max_continuation_frames = max_continuation_frames
        self.max_closed_streams = max_closed_streams

        self._in = bytearray()
        self._out = bytearray()
        self._preface_left = 0 if client else len(CONNECTION_PREFACE)
        self._need_settings = True
        self._initiated = False

        self._streams: dict[int, _Stream] = {}
        self._closed: dict[int, int] = {}
        self._highest_peer = 0
        self._highest_local = 0
        self._peer_open = 0
        self._local_open = 0

        # Our settings: what the peer acknowledged, and what is in flight.
        self.local_settings: dict[int, int] = dict(_DEFAULTS)
        """Our settings the peer acknowledged (RFC defaults before that)."""
        self._pending_settings: list[list[tuple[int, int]]] = []
        self.remote_settings: dict[int, int] = dict(_DEFAULTS)
        """The peer's settings in force."""
        self.remote_settings_frames: list[list[tuple[int, int]]] = []
        """Each SETTINGS frame the peer sent, pairs in wire order (the first few kept)."""
        self._max_recv_frame = DEFAULT_MAX_FRAME_SIZE
        self._max_send_frame = DEFAULT_MAX_FRAME_SIZE
        self._in_initial = 65535
        self._out_initial = 65535
        self._max_concurrent_in = 2**31 - 1
        self._local_push = 1
        self._local_connect_protocol = False

        self._conn_out = 65535
        self._conn_in = 65535
        self._conn_in_target = 65535
        self._conn_pending = 0

        self._hb_sid = 0
        self._hb_parts: list[bytes] = []
        self._hb_size = 0
        self._hb_frames = 0
        self._hb_end_stream = False
        self._hb_priority: tuple[int, int, bool] | None = None
        self._hb_promised = 0

        self.goaway_sent: int | None = None
        """The last-stream-id of the GOAWAY we sent (None: not sent)."""
        self.goaway_received: int | None = None
        """The last-stream-id of the GOAWAY the peer sent (None: not received)."""
        self.closed = False
        """True after a connection error (GOAWAY queued): nothing more is read."""
        self.error_code: int | None = None
        self.priorities: list[PriorityReceived] = []
        """PRIORITY frames received (the first 1000), for fingerprints; not acted on."""
        self.frames_received = 0
        self.data_delivered = 0
        """DATA payload bytes handed to the application (padding not counted)."""
        self.headers_delivered = 0
        """Header blocks handed to the application."""

        self._follow_list_setting = max_header_list_size is None
        explicit_limit = max_header_list_size
        if explicit_limit is None:
            explicit_limit = dict(self._initial_settings).get(6, 64 * 1024)
        self._decoder = Decoder(max_header_list_size=explicit_limit, validate=validate_headers)
        self._verdicts: dict[bytes, tuple[int, int, bool]] = {}
        self._encoder = Encoder(huffman=huffman)

    # --- properties -------------------------------------------------------

    @property
    def encoder(self) -> Encoder:
        """The HPACK encoder of what we send (its ``never_index``/``no_index`` may be tuned)."""
        return self._encoder

    @property
    def decoder(self) -> Decoder:
        """The HPACK decoder of what the peer sends."""
        return self._decoder

    @property
    def highest_inbound_stream_id(self) -> int:
        """The highest stream id the peer opened."""
        return self._highest_peer

    @property
    def open_inbound_streams(self) -> int:
        """Streams the peer opened that are not closed."""
        return self._peer_open

    @property
    def open_outbound_streams(self) -> int:
        """Streams we opened that are not closed."""
        return self._local_open

    @property
    def max_outbound_frame_size(self) -> int:
        """The peer's SETTINGS_MAX_FRAME_SIZE."""
        return self._max_send_frame

    @property
    def outbound_connection_window(self) -> int:
        """How much DATA the connection window lets us send."""
        return self._conn_out

    def local_flow_control_window(self, stream_id: int) -> int:
        """How much DATA we may send on a stream now (connection and stream windows)."""
        st = self._streams.get(stream_id)
        if st is None:
            raise StreamClosedError(stream_id)
        return max(0, min(self._conn_out, st.out_window))

    def inbound_window(self, stream_id: int = 0) -> int:
        """What the peer may still send us on a stream (0: the connection)."""
        if not stream_id:
            return self._conn_in
        st = self._streams.get(stream_id)
        if st is None:
            raise StreamClosedError(stream_id)
        return st.in_window

    def stream_is_open(self, stream_id: int) -> bool:
        """Whether the stream exists and is not closed (it may be half-closed)."""
        return stream_id in self._streams

    # --- commands ---------------------------------------------------------

    def initiate_connection(self) -> None:
        """Queue our preface: (client) the magic, SETTINGS, the optional WINDOW_UPDATE."""
        if self._initiated:
            return
        self._initiated = True
        if self.client:
            self._out += CONNECTION_PREFACE
        self.update_settings(self._initial_settings)
        if self._initial_window_update:
            self.increment_flow_control_window(self._initial_window_update)

    def update_settings(self, settings: Sequence[tuple[int, int]]) -> None:
        """Send a SETTINGS frame with these pairs in this order.

        Values that loosen what the peer may send apply at once; those that
        tighten it (smaller windows, frame size, header table) once acknowledged.
        """
        pairs = [(int(k), int(v)) for k, v in settings]
        for k, v in pairs:
            if k == 4 and v > MAX_WINDOW:
                raise ValueError("SETTINGS_INITIAL_WINDOW_SIZE above 2**31-1")
            if k == 5 and not DEFAULT_MAX_FRAME_SIZE <= v <= MAX_FRAME_SIZE_LIMIT:
                raise ValueError("SETTINGS_MAX_FRAME_SIZE out of range")
        self._out += settings_frame(pairs)
        self._pending_settings.append(pairs)
        for k, v in pairs:
            if k == 3:
                self._max_concurrent_in = v
            elif k == 4 and v > self._in_initial:
                self._set_in_initial(v)
            elif k == 5 and v > self._max_recv_frame:
                self._max_recv_frame = v
            elif k == 1 and v > self._decoder.max_table_size:
                self._decoder.max_table_size = v
            elif k == 8 and v:
                self._local_connect_protocol = True
            elif k == 6 and self._follow_list_setting:
                self._decoder.max_header_list_size = v
            elif k == 2 and v:
                self._local_push = 1

    def _set_in_initial(self, value: int) -> None:
        delta = value - self._in_initial
        self._in_initial = value
        if delta:
            for st in self._streams.values():
                st.in_window += delta

    def _apply_acked(self, pairs: list[tuple[int, int]]) -> None:
        for k, v in pairs:
            self.local_settings[k] = v
            if k == 4:
                if v != self._in_initial:
                    self._set_in_initial(v)
            elif k == 5:
                self._max_recv_frame = v
            elif k == 1:
                self._decoder.set_max_table_size(v)
            elif k == 8:
                self._local_connect_protocol = bool(v)
            elif k == 2:
                self._local_push = v

    def send_headers(
        self,
        stream_id: int,
        headers: Sequence[tuple[bytes, bytes]] | Sequence[tuple[str, str]],
        *,
        end_stream: bool = False,
        priority: StreamPriority | None = None,
        pad: int = 0,
    ) -> None:
        """Send a header block (request, response, 1xx or trailers) as given.

        A client opens a new stream with an odd id above every id it used.
        ``priority`` sets the HEADERS frame's PRIORITY flag (weight 1..256).
        """
        if self.closed:
            raise H2EngineError("the connection is closed")
        hdrs = _as_bytes(headers)
        st = self._streams.get(stream_id)
        if st is None:
            if not self.client or stream_id % 2 == 0 or stream_id <= self._highest_local:
                raise StreamClosedError(stream_id, f"cannot open stream {stream_id}")
            if self.goaway_received is not None:
                raise TooManyStreamsError("the peer sent GOAWAY; open a new connection")
            if self._local_open >= self.remote_settings[3]:
                raise TooManyStreamsError("the peer's SETTINGS_MAX_CONCURRENT_STREAMS is reached")
            st = _Stream(stream_id, self._out_initial, self._in_initial, True)
            self._streams[stream_id] = st
            self._local_open += 1
            self._highest_local = stream_id
            for name, value in hdrs:
                if name[:1] != b":":
                    break
                if name == b":method":
                    st.head = value == b"HEAD"
                elif name == b":protocol" and self.remote_settings[8] != 1:
                    self._close(st, _RESET_BY_US)
                    raise H2EngineError(
                        ":protocol needs the peer's SETTINGS_ENABLE_CONNECT_PROTOCOL"
                    )
            informational = False
        else:
            if st.local_closed:
                raise StreamClosedError(stream_id)
            informational = (
                not self.client
                and not st.headers_out
                and bool(hdrs)
                and hdrs[0][0] == b":status"
                and hdrs[0][1][:1] == b"1"
            )
            if st.headers_out and not end_stream:
                raise H2EngineError("trailers must end the stream")
        block = self._encoder.encode(hdrs)
        n = len(block)
        if priority is None and not pad and n <= self._max_send_frame:
            out = self._out
            out += _pack_header(n >> 16, n & 0xFFFF, 1, 5 if end_stream else 4, stream_id)
            out += block
        else:
            prio = None
            if priority is not None:
                prio = (priority.depends_on, priority.weight, priority.exclusive)
            self._out += header_block_frames(
                stream_id,
                block,
                self._max_send_frame,
                end_stream=end_stream,
                priority=prio,
                pad=pad,
            )
        if not informational:
            st.headers_out = True
        if end_stream:
            st.local_closed = True
            if st.remote_closed:
                self._close(st, _ENDED)

    def send_data(
        self, stream_id: int, data: bytes, *, end_stream: bool = False, pad: int = 0
    ) -> None:
        """Send DATA; it must fit the send windows (:meth:`local_flow_control_window`).

        Split into frames of the peer's SETTINGS_MAX_FRAME_SIZE. ``pad`` adds
        padding to each frame (counted against the windows).
        """
        st = self._streams.get(stream_id)
        if st is None or st.local_closed:
            raise StreamClosedError(stream_id)
        if not st.headers_out:
            raise H2EngineError("DATA before the header block")
        n = len(data)
        max_frame = self._max_send_frame
        if pad:
            if not 0 < pad < 256:
                raise ValueError("pad must be in 0..255")
            max_frame -= pad + 1
            frames = max(1, -(-n // max_frame))
            cost = n + frames * (pad + 1)
        else:
            cost = n
        if cost > self._conn_out or cost > st.out_window:
            raise FlowControlBlocked(
                f"{cost} bytes exceed the send window ({min(self._conn_out, st.out_window)})"
            )
        self._conn_out -= cost
        st.out_window -= cost
        if n <= max_frame:
            if pad:
                self._out += data_frame(stream_id, data, end_stream=end_stream, pad=pad)
            else:
                out = self._out
                out += _pack_header(n >> 16, n & 0xFFFF, 0, 1 if end_stream else 0, stream_id)
                out += data
        else:
            out = self._out
            view = memoryview(data)
            for pos in range(0, n, max_frame):
                last = pos + max_frame >= n
                if pad:
                    out += data_frame(
                        stream_id,
                        bytes(view[pos : pos + max_frame]),
                        end_stream=end_stream and last,
                        pad=pad,
                    )
                else:
                    size = min(max_frame, n - pos)
                    flags = 1 if end_stream and last else 0
                    out += _pack_header(size >> 16, size & 0xFFFF, 0, flags, stream_id)
                    out += view[pos : pos + size]
        if end_stream:
            st.local_closed = True
            if st.remote_closed:
                self._close(st, _ENDED)

    def end_stream(self, stream_id: int) -> None:
        """End our side of a stream with an empty DATA frame."""
        self.send_data(stream_id, b"", end_stream=True)

    def reset_stream(self, stream_id: int, error_code: int = _CANCEL) -> None:
        """Send RST_STREAM and forget the stream (a no-op if it is already closed)."""
        st = self._streams.get(stream_id)
        if st is None:
            if stream_id in self._closed:
                return
            raise StreamClosedError(stream_id, f"stream {stream_id} was never opened")
        self._out += rst_stream_frame(stream_id, error_code)
        self._close(st, _RESET_BY_US)

    def ping(self, data: bytes = b"\x00" * 8) -> None:
        """Send a PING (8 bytes)."""
        self._out += ping_frame(data)

    def send_priority(
        self, stream_id: int, depends_on: int = 0, weight: int = 16, exclusive: bool = False
    ) -> None:
        """Send a PRIORITY frame (any stream, idle ones included, as browsers did)."""
        if stream_id == depends_on:
            raise ValueError("a stream cannot depend on itself")
        self._out += priority_frame(stream_id, depends_on, weight, exclusive)

    def goaway(
        self,
        error_code: int = 0,
        *,
        last_stream_id: int | None = None,
        additional_data: bytes = b"",
    ) -> None:
        """Send GOAWAY; streams the peer opens above ``last_stream_id`` are refused."""
        last = self._highest_peer if last_stream_id is None else last_stream_id
        if self.goaway_sent is not None:
            last = min(last, self.goaway_sent)
        self.goaway_sent = last
        self._out += goaway_frame(last, error_code, additional_data)

    def increment_flow_control_window(self, increment: int, stream_id: int | None = None) -> None:
        """Widen what the peer may send (a WINDOW_UPDATE; ``stream_id`` None: the connection)."""
        if not 1 <= increment <= MAX_WINDOW:
            raise ValueError("increment must be in 1..2**31-1")
        if not stream_id:
            if self._conn_in + increment > MAX_WINDOW:
                raise ValueError("the connection window would exceed 2**31-1")
            self._conn_in += increment
            self._conn_in_target += increment
            self._out += window_update_frame(0, increment)
            return
        st = self._streams.get(stream_id)
        if st is None:
            raise StreamClosedError(stream_id)
        if st.in_window + increment > MAX_WINDOW:
            raise ValueError("the stream window would exceed 2**31-1")
        st.in_window += increment
        self._out += window_update_frame(stream_id, increment)

    def acknowledge_received_data(self, stream_id: int, size: int) -> None:
        """Give back credit for ``size`` flow-controlled bytes the application consumed.

        A WINDOW_UPDATE goes out once half of a window is waiting to be given back.
        """
        if size <= 0:
            return
        pending = self._conn_pending + size
        if pending >= self._conn_in_target >> 1:
            self._conn_in += pending
            self._out += window_update_frame(0, pending)
            pending = 0
        self._conn_pending = pending
        st = self._streams.get(stream_id)
        if st is not None and not st.remote_closed:
            sp = st.in_pending + size
            if sp >= self._in_initial >> 1:
                st.in_window += sp
                self._out += window_update_frame(stream_id, sp)
                sp = 0
            st.in_pending = sp

    def data_to_send(self) -> bytes:
        """Everything queued since the last call, as one bytes object."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    def take_output(self) -> bytearray:
        """What :meth:`data_to_send` returns, without its copy: the buffer itself.

        The engine starts a new buffer, so the caller owns the returned one
        (an empty bytearray when nothing is queued).
        """
        out = self._out
        if not out:
            return out
        self._out = bytearray()
        return out

    @property
    def pending_output(self) -> int:
        """Bytes queued and not yet taken by :meth:`data_to_send`."""
        return len(self._out)

    # --- receiving --------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; return the events they complete."""
        if self.closed:
            return []
        events: list[Event] = []
        if type(data) is not bytes:
            data = bytes(data)
        if self._in:
            self._in += data
            inbuf = self._in
            if not self._preface_left:
                # Still inside one frame: wait without copying (an oversized frame
                # is refused at once, not buffered).
                if len(inbuf) < 9:
                    return events
                length = inbuf[0] << 16 | inbuf[1] << 8 | inbuf[2]
                if length + 9 > len(inbuf) and length <= self._max_recv_frame:
                    return events
            buf = bytes(inbuf)
            inbuf.clear()
        else:
            buf = data
        pos = 0
        end = len(buf)
        if self._preface_left:
            want = self._preface_left
            got = buf[:want]
            off = len(CONNECTION_PREFACE) - want
            if got != CONNECTION_PREFACE[off : off + len(got)]:
                self._fail(_PROTOCOL_ERROR, "invalid connection preface", events)
                return events
            self._preface_left -= len(got)
            pos = len(got)
            if self._preface_left:
                return events
        try:
            while end - pos >= 9:
                hi, lo, ftype, flags, sid = _unpack_header(buf, pos)
                length = hi << 16 | lo
                if length > self._max_recv_frame:
                    raise _ConnError(_FRAME_SIZE_ERROR, f"frame of {length} bytes is too large")
                start = pos + 9
                if end - start < length:
                    break
                pos = start + length
                sid &= 0x7FFFFFFF
                self.frames_received += 1
                if self.on_frame is not None:
                    code = self.on_frame(ftype, flags, sid, memoryview(buf)[start:pos])
                    if code:
                        raise _ConnError(code, "frame accounting limit")
                if self._hb_sid and ftype != 9:
                    raise _ConnError(_PROTOCOL_ERROR, "expected CONTINUATION")
                if self._need_settings:
                    if ftype != 4 or flags & FLAG_ACK:
                        raise _ConnError(_PROTOCOL_ERROR, "the first frame must be SETTINGS")
                    self._need_settings = False
                if ftype == 1:
                    if sid == 0:
                        raise _ConnError(_PROTOCOL_ERROR, "HEADERS on stream 0")
                    if flags & (FLAG_PADDED | FLAG_PRIORITY):
                        prio_len = 5 if flags & FLAG_PRIORITY else 0
                        s, e = strip_padding(buf[start:pos], flags, extra=prio_len)
                        prio = None
                        if prio_len:
                            prio = parse_priority(buf, start + s - 5)
                        block = buf[start + s : start + e]
                    else:
                        prio = None
                        block = buf[start:pos]
                    if flags & FLAG_END_HEADERS:
                        self._header_block(sid, block, flags & FLAG_END_STREAM, prio, 0, events)
                    else:
                        self._start_block(sid, block, flags & FLAG_END_STREAM, prio, 0)
                elif ftype == 0:
                    if sid == 0:
                        raise _ConnError(_PROTOCOL_ERROR, "DATA on stream 0")
                    self._on_data(flags, sid, buf, start, pos, events)
                elif ftype == 9:
                    if sid == 0:
                        raise _ConnError(_PROTOCOL_ERROR, "CONTINUATION on stream 0")
                    self._on_continuation(flags, sid, buf[start:pos], events)
                else:
                    bad = check_frame(ftype, flags, sid, length)
                    if bad is not None:
                        if bad[2]:
                            raise _ConnError(bad[0], bad[1])
                        self._stream_error(sid, bad[0], events)
                        continue
                    self._on_other(ftype, flags, sid, buf[start:pos], events)
        except _ConnError as e:
            self._fail(e.code, e.reason, events)
            return events
        except FrameError as e:
            self._fail(e.code, str(e), events)
            return events
        if pos < end:
            self._in += buf[pos:] if pos else buf
        return events

    def _fail(self, code: int, reason: str, events: list[Event]) -> None:
        last = self._highest_peer
        if self.goaway_sent is not None:
            last = min(last, self.goaway_sent)
        self._out += goaway_frame(last, code)
        self.goaway_sent = last
        self.closed = True
        self.error_code = code
        self._in.clear()
        events.append(ConnectionFailed(code, reason, last))

    def _stream_error(self, sid: int, code: int, events: list[Event]) -> None:
        self._out += rst_stream_frame(sid, code)
        st = self._streams.get(sid)
        if st is not None:
            self._close(st, _RESET_BY_US)
        elif sid not in self._closed:
            self._remember_closed(sid, _RESET_BY_US)
        events.append(StreamReset(sid, code, remote=False))

    def _remember_closed(self, sid: int, how: int) -> None:
        closed = self._closed
        closed[sid] = how
        if len(closed) > self.max_closed_streams:
            self._trim_closed()

    def _trim_closed(self) -> None:
        # Keep the newer half (deleting one at a time from the front of a dict
        # makes the next lookup of its first key scan the deleted slots).
        keep = self.max_closed_streams // 2
        self._closed = dict(list(self._closed.items())[-keep:]) if keep else {}

    def _close(self, st: _Stream, how: int) -> None:
        sid = st.sid
        if self._streams.pop(sid, None) is None:
            return
        if st.local:
            self._local_open -= 1
        else:
            self._peer_open -= 1
        closed = self._closed
        closed[sid] = how
        if len(closed) > self.max_closed_streams:
            self._trim_closed()

    def _is_idle(self, sid: int) -> bool:
        if (sid & 1) == (1 if self.client else 0):
            return sid > self._highest_local
        return sid > self._highest_peer

    # header blocks

    def _start_block(
        self,
        sid: int,
        block: bytes,
        end_stream: int,
        prio: tuple[int, int, bool] | None,
        promised: int,
    ) -> None:
        self._hb_sid = sid
        self._hb_parts = [block]
        self._hb_size = len(block)
        self._hb_frames = 0
        self._hb_end_stream = bool(end_stream)
        self._hb_priority = prio
        self._hb_promised = promised
        if self._hb_size > self.max_header_block_size:
            raise _ConnError(_ENHANCE_YOUR_CALM, "header block too large")

    def _on_continuation(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if not self._hb_sid or sid != self._hb_sid:
            raise _ConnError(_PROTOCOL_ERROR, "unexpected CONTINUATION")
        self._hb_size += len(payload)
        self._hb_frames += 1
        if self._hb_size > self.max_header_block_size:
            raise _ConnError(_ENHANCE_YOUR_CALM, "header block too large")
        if self._hb_frames > self.max_continuation_frames:
            raise _ConnError(_ENHANCE_YOUR_CALM, "too many CONTINUATION frames")
        self._hb_parts.append(payload)
        if flags & FLAG_END_HEADERS:
            block = b"".join(self._hb_parts)
            self._hb_sid = 0
            self._hb_parts = []
            self._header_block(
                sid, block, self._hb_end_stream, self._hb_priority, self._hb_promised, events
            )

    def _decode(self, block: bytes) -> list[Header]:
        try:
            return self._decoder.decode(block)
        except HeaderListTooLarge as e:
            raise _ConnError(_ENHANCE_YOUR_CALM, str(e)) from None
        except HPACKError as e:
            raise _ConnError(_COMPRESSION_ERROR, str(e)) from None

    def _header_block(
        self,
        sid: int,
        block: bytes,
        end_stream: int,
        prio: tuple[int, int, bool] | None,
        promised: int,
        events: list[Event],
    ) -> None:
        if promised:
            self._push_promise(sid, promised, block, events)
            return
        st = self._streams.get(sid)
        if st is None:
            if self.client or sid % 2 == 0:
                if self._is_idle(sid):
                    raise _ConnError(_PROTOCOL_ERROR, f"HEADERS on idle stream {sid}")
                self._closed_stream_headers(sid, block)
                return
            if sid <= self._highest_peer:
                self._closed_stream_headers(sid, block)
                return
            self._new_request(sid, block, end_stream, prio, events)
            return
        headers = self._decode(block)
        if st.remote_closed:
            self._stream_error(sid, _STREAM_CLOSED, events)
            return
        if self.client and not st.final_in:
            self._response(st, headers, end_stream, events)
            return
        # Trailers.
        if not end_stream:
            self._stream_error(sid, _PROTOCOL_ERROR, events)
            return
        if self.validate_headers:
            if self._decoder.problem is not None or not _trailers_ok(headers):
                self._stream_error(sid, _PROTOCOL_ERROR, events)
                return
            if st.content_length >= 0 and st.data_in != st.content_length:
                self._stream_error(sid, _PROTOCOL_ERROR, events)
                return
        st.remote_closed = True
        self.headers_delivered += 1
        events.append(TrailersReceived(sid, headers))
        if st.local_closed:
            self._close(st, _ENDED)

    def _closed_stream_headers(self, sid: int, block: bytes) -> None:
        self._decode(block)  # keeps HPACK in step
        how = self._closed.get(sid)
        if how == _RESET_BY_US:
            return  # RFC 9113 section 5.4.2: frames already in flight
        if how is None:
            # Never opened, implicitly closed by a higher id (RFC 9113 section 5.1.1).
            raise _ConnError(_PROTOCOL_ERROR, f"HEADERS on stream {sid} below the highest id")
        raise _ConnError(_STREAM_CLOSED, f"HEADERS on closed stream {sid}")

    def _new_request(
        self,
        sid: int,
        block: bytes,
        end_stream: int,
        prio: tuple[int, int, bool] | None,
        events: list[Event],
    ) -> None:
        self._highest_peer = sid
        headers = self._decode(block)
        if self.goaway_sent is not None and sid > self.goaway_sent:
            self._out += rst_stream_frame(sid, _REFUSED_STREAM)
            self._remember_closed(sid, _RESET_BY_US)
            events.append(StreamRefused(sid, "goaway"))
            return
        if self._peer_open >= self._max_concurrent_in:
            self._out += rst_stream_frame(sid, _REFUSED_STREAM)
            self._remember_closed(sid, _RESET_BY_US)
            events.append(StreamRefused(sid, "max_concurrent_streams"))
            return
        priority = None
        if prio is not None:
            if prio[0] == sid:
                self._stream_error(sid, _PROTOCOL_ERROR, events)
                return
            priority = StreamPriority(prio[0], prio[1], prio[2])
        cl = -1
        if self.validate_headers:
            # The same block in the same HPACK table state is the same request:
            # its verdict is remembered (a repeated request is checked once).
            gen = self._decoder.generation
            hit = self._verdicts.get(block)
            if hit is not None and hit[0] == gen and hit[2] == self._local_connect_protocol:
                cl = hit[1]
            else:
                cl = self._check_request(headers)
                if len(self._verdicts) >= 64:
                    self._verdicts.clear()
                self._verdicts[block] = (gen, cl, self._local_connect_protocol)
            if cl == -2 or (end_stream and cl > 0):
                self._stream_error(sid, _PROTOCOL_ERROR, events)
                return
        st = _Stream(sid, self._out_initial, self._in_initial, False)
        st.content_length = cl
        st.final_in = True
        self._streams[sid] = st
        self._peer_open += 1
        self.headers_delivered += 1
        if end_stream:
            st.remote_closed = True
            events.append(RequestReceived(sid, headers, True, priority))
        else:
            events.append(RequestReceived(sid, headers, False, priority))

    def _check_request(self, headers: list[Header]) -> int:
        """The request's content-length (-1: none), or -2 when the request is malformed."""
        if self._decoder.problem is not None:
            return -2
        method = scheme = path = authority = protocol = host = None
        regular = False
        cl = -1
        for name, value in headers:
            if name[:1] == b":":
                if regular:
                    return -2
                if name == b":method":
                    if method is not None:
                        return -2
                    method = value
                elif name == b":path":
                    if path is not None:
                        return -2
                    path = value
                elif name == b":scheme":
                    if scheme is not None:
                        return -2
                    scheme = value
                elif name == b":authority":
                    if authority is not None:
                        return -2
                    authority = value
                elif name == b":protocol":
                    if protocol is not None:
                        return -2
                    protocol = value
                else:
                    return -2
            else:
                regular = True
                if name in _CONNECTION_HEADERS:
                    return -2
                if name == b"te":
                    if value != b"trailers":
                        return -2
                elif name == b"content-length":
                    cl = _content_length(value, cl)
                    if cl == -2:
                        return -2
                elif name == b"host":
                    host = value
        if method is None:
            return -2
        if host is not None and authority is not None and host != authority:
            return -2  # RFC 9113 section 8.3.1
        if method == b"CONNECT":
            if protocol is not None:
                if not self._local_connect_protocol:
                    return -2
                if scheme is None or not path or authority is None:
                    return -2
            elif scheme is not None or path is not None or authority is None:
                return -2
        else:
            if protocol is not None or scheme is None or not path:
                return -2
        return cl

    def _response(
        self, st: _Stream, headers: list[Header], end_stream: int, events: list[Event]
    ) -> None:
        sid = st.sid
        status = b""
        cl = -1
        if self.validate_headers:
            if self._decoder.problem is not None:
                self._stream_error(sid, _PROTOCOL_ERROR, events)
                return
            regular = False
            for name, value in headers:
                if name[:1] == b":":
                    if regular or name != b":status" or status:
                        self._stream_error(sid, _PROTOCOL_ERROR, events)
                        return
                    status = value
                else:
                    regular = True
                    if name in _CONNECTION_HEADERS or (name == b"te" and value != b"trailers"):
                        self._stream_error(sid, _PROTOCOL_ERROR, events)
                        return
                    if name == b"content-length":
                        cl = _content_length(value, cl)
                        if cl == -2:
                            self._stream_error(sid, _PROTOCOL_ERROR, events)
                            return
            if len(status) != 3 or not status.isdigit() or status == b"101":
                self._stream_error(sid, _PROTOCOL_ERROR, events)
                return
        else:
            for name, value in headers:
                if name == b":status":
                    status = value
                    break
        self.headers_delivered += 1
        if status[:1] == b"1":
            if end_stream:
                self._stream_error(sid, _PROTOCOL_ERROR, events)
                return
            events.append(InformationalResponseReceived(sid, headers))
            return
        st.final_in = True
        if not (st.head or status == b"304" or status == b"204"):
            st.content_length = cl
            if end_stream and cl > 0:
                self._stream_error(sid, _PROTOCOL_ERROR, events)
                return
        if end_stream:
            st.remote_closed = True
            events.append(ResponseReceived(sid, headers, True))
            if st.local_closed:
                self._close(st, _ENDED)
        else:
            events.append(ResponseReceived(sid, headers, False))

    def _push_promise(self, sid: int, promised: int, block: bytes, events: list[Event]) -> None:
        headers = self._decode(block)
        if promised % 2 or promised <= self._highest_peer:
            raise _ConnError(_PROTOCOL_ERROR, "invalid promised stream id")
        self._highest_peer = promised
        self._out += rst_stream_frame(promised, _REFUSED_STREAM)
        self._remember_closed(promised, _RESET_BY_US)
        events.append(PushPromiseReceived(sid, promised, headers))

    # DATA

    def _on_data(
        self, flags: int, sid: int, buf: bytes, start: int, stop: int, events: list[Event]
    ) -> None:
        length = stop - start
        if flags & FLAG_PADDED:
            s, e = strip_padding(buf[start:stop], flags)
            dstart, dstop = start + s, start + e
        else:
            dstart, dstop = start, stop
        if length > self._conn_in:
            raise _ConnError(_FLOW_CONTROL_ERROR, "DATA exceeds the connection window")
        self._conn_in -= length
        st = self._streams.get(sid)
        if st is None or st.remote_closed or not st.final_in:
            # Not delivered: give the connection credit back at once.
            self._credit_connection(length)
            if st is None:
                if self._is_idle(sid):
                    raise _ConnError(_PROTOCOL_ERROR, f"DATA on idle stream {sid}")
                if self._closed.get(sid) != _RESET_BY_US:
                    self._out += rst_stream_frame(sid, _STREAM_CLOSED)
                    events.append(StreamReset(sid, _STREAM_CLOSED, remote=False))
            elif st.remote_closed:
                self._stream_error(sid, _STREAM_CLOSED, events)
            else:
                self._stream_error(sid, _PROTOCOL_ERROR, events)
            return
        if length > st.in_window:
            self._credit_connection(length)
            self._stream_error(sid, _FLOW_CONTROL_ERROR, events)
            return
        st.in_window -= length
        data = buf[dstart:dstop]
        n = dstop - dstart
        st.data_in += n
        end_stream = flags & FLAG_END_STREAM
        cl = st.content_length
        if cl >= 0 and (st.data_in > cl or (end_stream and st.data_in != cl)):
            self._credit_connection(length)
            self._stream_error(sid, _PROTOCOL_ERROR, events)
            return
        self.data_delivered += n
        if end_stream:
            st.remote_closed = True
            events.append(DataReceived(sid, data, length, True))
            if st.local_closed:
                self._close(st, _ENDED)
        else:
            events.append(DataReceived(sid, data, length, False))
        if self.auto_window_update:
            self.acknowledge_received_data(sid, length)
        elif length != n:
            self.acknowledge_received_data(sid, length - n)

    def _credit_connection(self, size: int) -> None:
        if size <= 0:
            return
        pending = self._conn_pending + size
        if pending >= self._conn_in_target >> 1:
            self._conn_in += pending
            self._out += window_update_frame(0, pending)
            pending = 0
        self._conn_pending = pending

    # everything else

    def _on_other(
        self, ftype: int, flags: int, sid: int, payload: bytes, events: list[Event]
    ) -> None:
        if ftype == 8:  # WINDOW_UPDATE
            inc = _unpack_u32(payload, 0)[0] & 0x7FFFFFFF
            if sid == 0:
                if inc == 0:
                    raise _ConnError(_PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
                self._conn_out += inc
                if self._conn_out > MAX_WINDOW:
                    raise _ConnError(_FLOW_CONTROL_ERROR, "connection window above 2**31-1")
                events.append(WindowUpdated(0, inc))
                return
            st = self._streams.get(sid)
            if st is None:
                if self._is_idle(sid):
                    raise _ConnError(_PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {sid}")
                return
            if inc == 0:
                self._stream_error(sid, _PROTOCOL_ERROR, events)
                return
            st.out_window += inc
            if st.out_window > MAX_WINDOW:
                self._stream_error(sid, _FLOW_CONTROL_ERROR, events)
                return
            events.append(WindowUpdated(sid, inc))
        elif ftype == 3:  # RST_STREAM
            code = _unpack_u32(payload, 0)[0]
            st = self._streams.get(sid)
            if st is None:
                if self._is_idle(sid):
                    raise _ConnError(_PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")
                return
            self._close(st, _RESET_BY_PEER)
            events.append(StreamReset(sid, code, remote=True, retryable=code == _REFUSED_STREAM))
        elif ftype == 4:  # SETTINGS
            if flags & FLAG_ACK:
                if self._pending_settings:
                    pairs = self._pending_settings.pop(0)
                    self._apply_acked(pairs)
                    events.append(SettingsAcknowledged(pairs))
                return
            self._on_settings(parse_settings(payload), events)
        elif ftype == 6:  # PING
            data = bytes(payload)
            if flags & FLAG_ACK:
                events.append(PingAckReceived(data))
            else:
                self._out += ping_frame(data, ack=True)
                events.append(PingReceived(data))
        elif ftype == 7:  # GOAWAY
            last, code, extra = parse_goaway(payload)
            if self.goaway_received is None or last < self.goaway_received:
                self.goaway_received = last
            events.append(ConnectionTerminated(code, last, extra))
            for st in [s for s in self._streams.values() if s.local and s.sid > last]:
                self._close(st, _RESET_BY_PEER)
                events.append(StreamReset(st.sid, _REFUSED_STREAM, remote=True, retryable=True))
        elif ftype == 2:  # PRIORITY
            dep, weight, excl = parse_priority(payload)
            if dep == sid:
                self._stream_error(sid, _PROTOCOL_ERROR, events)
                return
            ev = PriorityReceived(sid, StreamPriority(dep, weight, excl))
            if len(self.priorities) < 1000:
                self.priorities.append(ev)
            events.append(ev)
        elif ftype == 5:  # PUSH_PROMISE
            if not self.client:
                raise _ConnError(_PROTOCOL_ERROR, "PUSH_PROMISE from a client")
            if not self._local_push:
                raise _ConnError(_PROTOCOL_ERROR, "PUSH_PROMISE with push disabled")
            st = self._streams.get(sid)
            if st is None or st.remote_closed:
                raise _ConnError(_PROTOCOL_ERROR, "PUSH_PROMISE on a stream that is not open")
            s, e = strip_padding(payload, flags, extra=4)
            promised = _unpack_u32(payload, s - 4)[0] & 0x7FFFFFFF
            if not promised:
                raise _ConnError(_PROTOCOL_ERROR, "PUSH_PROMISE for stream 0")
            block = bytes(payload[s:e])
            if flags & FLAG_END_HEADERS:
                self._push_promise(sid, promised, block, events)
            else:
                self._start_block(sid, block, 0, None, promised)
        else:
            events.append(UnknownFrameReceived(ftype, flags, sid, bytes(payload)))

    def _on_settings(self, pairs: list[tuple[int, int]], events: list[Event]) -> None:
        remote = self.remote_settings
        for k, v in pairs:
            if k == 4:
                if v > MAX_WINDOW:
                    raise _ConnError(
                        _FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE above 2**31-1"
                    )
                delta = v - self._out_initial
                self._out_initial = v
                if delta:
                    for st in self._streams.values():
                        st.out_window += delta
                        if st.out_window > MAX_WINDOW:
                            raise _ConnError(_FLOW_CONTROL_ERROR, "a stream window above 2**31-1")
            elif k == 5:
                if not DEFAULT_MAX_FRAME_SIZE <= v <= MAX_FRAME_SIZE_LIMIT:
                    raise _ConnError(_PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
                self._max_send_frame = v
            elif k == 2:
                if v > 1 or (self.client and v == 1):
                    raise _ConnError(_PROTOCOL_ERROR, "invalid SETTINGS_ENABLE_PUSH")
            elif k == 1:
                self._encoder.set_max_table_size(v)
            elif k == 8 and (v > 1 or (v == 0 and remote[8] == 1)):
                raise _ConnError(_PROTOCOL_ERROR, "invalid SETTINGS_ENABLE_CONNECT_PROTOCOL")
            remote[k] = v
        self._out += settings_frame(ack=True)
        if len(self.remote_settings_frames) < 16:
            self.remote_settings_frames.append(pairs)
        events.append(RemoteSettingsChanged(pairs))


def _trailers_ok(headers: list[Header]) -> bool:
    for name, value in headers:
        if name[:1] == b":" or name in _CONNECTION_HEADERS:
            return False
        if name == b"te" and value != b"trailers":
            return False
    return True


def _as_bytes(headers: Sequence[tuple[bytes, bytes]] | Sequence[tuple[str, str]]) -> list[Header]:
    if not headers or type(headers[0][0]) is bytes:
        return headers  # type: ignore[return-value]
    return [
        (
            n.encode("latin-1") if isinstance(n, str) else n,
            v.encode("latin-1") if isinstance(v, str) else v,
        )
        for n, v in headers
    ]
