"""The h2 server engine on the ``h2`` library, the strict reference (``H2Config(engine="h2")``).

:class:`H2LibraryServerEngine` puts ``h2``'s connection behind
:class:`~._h2_backend.H2ServerEngine` and translates its events into rama's
(:mod:`rama_http._h2._events`). It uses only the library's public API: the
input is cut into frames here (by their 9-byte headers) and handed to
``H2Connection.receive_data`` one frame at a time, which is how the server
gets what the library does not do on its own:

- every frame passes the flood accounting before h2 acts on it (and the read
  stops at the frame that spent an allowance);
- a stream over SETTINGS_MAX_CONCURRENT_STREAMS is refused (REFUSED_STREAM,
  RFC 9113 section 5.1.2) instead of ending the connection: h2 takes its header
  block under a limit raised by one for that frame (HPACK state and stream ids
  stay in step), then the stream is reset and its events dropped;
- the client's GOAWAY is not handed to h2 (which would close its state machine
  and refuse to answer the streams in flight): it is reported here, and the
  connection still answers what it accepted (RFC 9113 section 6.8).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import (
    Frame,
    GoAwayFrame,
)

from .._h2._config import H2Config
from .._h2._events import (
    ConnectionFailed,
    ConnectionTerminated,
    DataReceived,
    Event,
    RemoteSettingsChanged,
    RequestReceived,
    StreamRefused,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from .._h2._flood import H2FloodGuard

__all__ = ["H2LibraryServerEngine"]

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class H2LibraryServerEngine:
    """The ``h2`` library as an :class:`~._h2_backend.H2ServerEngine`."""

    errors: tuple[type[Exception], ...] = (
        h2.exceptions.StreamClosedError,
        h2.exceptions.ProtocolError,
    )

    def __init__(self, config: H2Config, guard: H2FloodGuard) -> None:
        cfg = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=True,
            normalize_inbound_headers=True,
            # Outbound fields are lowercased and filtered by the caller.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        conn = h2.connection.H2Connection(config=cfg)
        settings: dict[SettingCodes, int] = {
            SettingCodes.MAX_CONCURRENT_STREAMS: config.max_concurrent_streams,
            SettingCodes.INITIAL_WINDOW_SIZE: config.initial_window_size,
            SettingCodes.MAX_FRAME_SIZE: config.max_frame_size,
            SettingCodes.MAX_HEADER_LIST_SIZE: config.max_header_list_size,
        }
        if config.enable_connect_protocol:
            settings[SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1
        # Replacing local_settings before the preface makes the limits apply from the
        # first frame, instead of only after the client acknowledged them.
        conn.local_settings = h2.settings.Settings(client=False, initial_values=settings)
        conn.decoder.max_header_list_size = config.max_header_list_size
        self.conn = conn
        """The ``h2`` connection."""
        self._settings = settings
        self._guard = guard
        self._in = bytearray()  # input not yet a whole frame
        self._preface_left = len(_PREFACE)
        self._opening = 0  # a stream whose opening header block waits for CONTINUATION
        self.frames_received = 0
        """Frames processed, all told."""
        self._extra_window = config.connection_window_size - 65535
        self._out = bytearray()  # h2's output and our hand-made frames, in order

    @property
    def max_frame(self) -> int:
        """The largest DATA payload the peer accepts in one frame."""
        return int(self.conn.max_outbound_frame_size)

    @property
    def max_data(self) -> int:
        """h2 takes one frame's worth per ``send_data``."""
        return int(self.conn.max_outbound_frame_size)

    def start(self) -> None:
        """Queue our preface."""
        self.conn.initiate_connection()
        if self._extra_window > 0:
            self.conn.increment_flow_control_window(self._extra_window)

    def window(self, stream_id: int) -> int:
        """What may be sent on ``stream_id`` now."""
        return int(self.conn.local_flow_control_window(stream_id))

    def send_headers(
        self, stream_id: int, fields: Sequence[tuple[bytes, bytes]], end: bool = False
    ) -> None:
        """Queue a header block."""
        self.conn.send_headers(stream_id, list(fields), end_stream=end)

    def send_data(self, stream_id: int, data: bytes | memoryview, end: bool) -> None:
        """Queue DATA."""
        self.conn.send_data(stream_id, data, end_stream=end)

    def end_stream(self, stream_id: int) -> None:
        """End our side of the stream."""
        self.conn.end_stream(stream_id)

    def reset(self, stream_id: int, code: int) -> None:
        """Queue RST_STREAM; a closed stream is left alone."""
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.reset_stream(stream_id, code)

    def ack(self, stream_id: int, n: int) -> None:
        """Give back flow-control credit."""
        self.conn.acknowledge_received_data(n, stream_id)

    def goaway(self, code: int, last_stream_id: int, additional_data: bytes = b"") -> None:
        """Queue GOAWAY by hand: h2's ``close_connection`` would stop all further sending."""
        self._queue(
            GoAwayFrame(
                0,
                last_stream_id=last_stream_id,
                error_code=code,
                additional_data=additional_data,
            )
        )

    def _queue(self, frame: Frame) -> None:
        self._out += self.conn.data_to_send()
        self._out += frame.serialize()

    def data_to_send(self) -> bytes:
        """Everything queued since the last call."""
        data = self.conn.data_to_send()
        if self._out:
            data = bytes(self._out + data)
            self._out.clear()
        return data

    def receive(self, data: bytes | memoryview) -> list[Event]:
        """Feed the peer's bytes to h2, a frame at a time; its events as rama's."""
        conn = self.conn
        buf = self._in
        buf += data
        raw: list[h2.events.Event | Event] = []
        pos = 0
        try:
            if self._preface_left:
                n = min(self._preface_left, len(buf))
                raw += conn.receive_data(bytes(buf[:n]))
                self._preface_left -= n
                pos = n
            size = len(buf)
            while size - pos >= 9:
                length = int.from_bytes(buf[pos : pos + 3], "big")
                if length > conn.max_inbound_frame_size:
                    # h2 ends the connection with FRAME_SIZE_ERROR from the header alone.
                    raw += conn.receive_data(bytes(buf[pos:]))
                    pos = size
                    break
                end = pos + 9 + length
                if end > size:
                    break
                frame = bytes(buf[pos:end])
                pos = end
                self._frame(frame, raw)
        except h2.exceptions.ProtocolError as e:
            # h2 queues a GOAWAY for most errors; not for a bad preface, which gets one here.
            code = int(getattr(e, "error_code", None) or ErrorCodes.PROTOCOL_ERROR)
            if conn.state_machine.state is not ConnectionState.CLOSED:
                self._queue(GoAwayFrame(0, last_stream_id=0, error_code=code))
            return [ConnectionFailed(code, str(e))]
        finally:
            del buf[:pos]
        return self._translate(raw)

    def _frame(self, frame: bytes, raw: list[h2.events.Event | Event]) -> None:
        """One whole frame: flood accounting, then h2 (or the GOAWAY/refusal paths)."""
        conn = self.conn
        guard = self._guard
        ftype, flags = frame[3], frame[4]
        sid = int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF
        payload = memoryview(frame)[9:]
        self.frames_received += 1
        opens = False
        if ftype == 0:
            pad = payload[0] + 1 if flags & 0x8 and len(payload) else 0
            guard.data(
                stream_open=self._stream_open(sid),
                length=len(payload) - pad,
                end_stream=bool(flags & 1),
            )
        elif ftype == 1:
            opens = sid > conn.highest_inbound_stream_id and sid not in conn.streams
            if opens:
                guard.headers(opens_stream=True, stream_open=False)
            else:
                guard.headers(opens_stream=False, stream_open=self._stream_open(sid))
            if opens and not flags & 0x4:  # the block goes on in CONTINUATION frames
                self._opening, opens = sid, False
        elif ftype == 9:
            if sid == self._opening and flags & 0x4:
                self._opening, opens = 0, True
        elif ftype == 8:
            guard.window_update(sid, int.from_bytes(payload[:4], "big") & 0x7FFFFFFF)
        elif ftype == 6:
            guard.ping(ack=bool(flags & 1))
        elif ftype == 4:
            guard.settings(ack=bool(flags & 1))
        elif ftype == 2:
            guard.priority()
        elif ftype == 3:
            guard.rst_stream(stream_open=self._stream_open(sid))
        elif ftype == 7:
            guard.goaway()
            if sid == 0 and len(payload) >= 8:
                last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                code = int.from_bytes(payload[4:8], "big")
                raw.append(ConnectionTerminated(code, last, bytes(payload[8:])))
                return
            # Malformed: h2 answers it with the connection error.
        elif ftype > 9:
            guard.unknown()
        if (
            opens
            and conn.open_inbound_streams >= self._settings[SettingCodes.MAX_CONCURRENT_STREAMS]
        ):
            raw += self._refuse(sid, frame)
            return
        raw += conn.receive_data(frame)

    def _stream_open(self, stream_id: int) -> bool:
        st = self.conn.streams.get(stream_id)
        return st is not None and not st.closed

    def _refuse(self, sid: int, frame: bytes) -> list[h2.events.Event | Event]:
        """Take the header block of a stream over the limit, then refuse the stream."""
        conn = self.conn
        limits = conn.local_settings
        raised = dict(self._settings)
        raised[SettingCodes.MAX_CONCURRENT_STREAMS] = conn.open_inbound_streams + 1
        conn.local_settings = h2.settings.Settings(client=False, initial_values=raised)
        try:
            events = conn.receive_data(frame)
        finally:
            conn.local_settings = limits
        conn.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
        kept: list[h2.events.Event | Event] = [
            e for e in events if getattr(e, "stream_id", None) != sid
        ]
        kept.append(StreamRefused(sid, "max_concurrent_streams"))
        return kept

    def _translate(self, raw: list[h2.events.Event | Event]) -> list[Event]:
        conn = self.conn
        events: list[Event] = []
        for ev in raw:
            kind = type(ev)
            if isinstance(ev, Event):
                events.append(ev)
            elif kind is h2.events.RequestReceived:
                assert isinstance(ev, h2.events.RequestReceived)
                events.append(
                    RequestReceived(
                        ev.stream_id,
                        list(ev.headers or ()),
                        ev.stream_ended is not None,
                    )
                )
            elif kind is h2.events.DataReceived:
                assert isinstance(ev, h2.events.DataReceived)
                payload = bytes(ev.data or b"")
                sid = int(ev.stream_id or 0)
                padding = int(ev.flow_controlled_length or 0) - len(payload)
                if padding > 0:
                    # As the fast engine does: padding's credit goes back at once.
                    conn.acknowledge_received_data(padding, sid)
                events.append(DataReceived(sid, payload, len(payload), ev.stream_ended is not None))
            elif kind is h2.events.TrailersReceived:
                assert isinstance(ev, h2.events.TrailersReceived)
                events.append(TrailersReceived(int(ev.stream_id or 0), list(ev.headers or ())))
            elif kind is h2.events.WindowUpdated:
                assert isinstance(ev, h2.events.WindowUpdated)
                events.append(WindowUpdated(int(ev.stream_id or 0), int(ev.delta or 0)))
            elif kind is h2.events.RemoteSettingsChanged:
                events.append(RemoteSettingsChanged([]))
            elif kind is h2.events.StreamReset:
                assert isinstance(ev, h2.events.StreamReset)
                events.append(
                    StreamReset(
                        int(ev.stream_id or 0), int(ev.error_code or 0), bool(ev.remote_reset)
                    )
                )
        return events
