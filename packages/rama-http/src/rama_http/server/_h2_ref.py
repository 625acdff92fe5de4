"""The h2 server engine on the ``h2`` library, the strict reference (``H2Config(engine="h2")``).

:class:`H2LibraryServerEngine` puts ``h2``'s connection behind
:class:`~._h2_backend.H2ServerEngine` and translates its events into rama's
(:mod:`rama_http._h2._events`). What the server needs that the library does not
do on its own (every frame through the flood accounting first, REFUSED_STREAM
over the concurrency limit instead of a connection error, answering accepted
streams after the client's GOAWAY) is in :class:`_ServerH2Connection`.
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


class _ServerH2Connection(h2.connection.H2Connection):
    """h2's connection, with the server-side behaviour the library lacks."""

    def __init__(self, config: h2.config.H2Configuration, guard: H2FloodGuard) -> None:
        super().__init__(config=config)
        self._admit_over_limit = False
        self.guard = guard
        self.frames_received = 0
        """Frames processed, all told (the read loop yields after dense slices)."""
        self.refused: list[int] = []
        """Streams refused for exceeding SETTINGS_MAX_CONCURRENT_STREAMS, not yet reported."""

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
        self.refused.append(sid)
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
        conn = _ServerH2Connection(cfg, guard)
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
        self._extra_window = config.connection_window_size - 65535
        self._out = bytearray()  # h2's output and our hand-made frames, in order

    @property
    def frames_received(self) -> int:
        """Frames processed, all told."""
        return self.conn.frames_received

    @property
    def max_frame(self) -> int:
        """The largest DATA payload the peer accepts in one frame."""
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
        """Feed the peer's bytes to h2; its events as rama's."""
        conn = self.conn
        try:
            raw = conn.receive_data(bytes(data))
        except h2.exceptions.ProtocolError as e:
            # h2 queues a GOAWAY for most errors; not for a bad preface, which gets one here.
            code = int(getattr(e, "error_code", None) or ErrorCodes.PROTOCOL_ERROR)
            if conn.state_machine.state is not ConnectionState.CLOSED:
                self._queue(GoAwayFrame(0, last_stream_id=0, error_code=code))
            return [ConnectionFailed(code, str(e))]
        events: list[Event] = []
        if conn.refused:
            events += [StreamRefused(sid, "max_concurrent_streams") for sid in conn.refused]
            conn.refused.clear()
        for ev in raw:
            kind = type(ev)
            if kind is h2.events.RequestReceived:
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
            elif kind is h2.events.ConnectionTerminated:
                assert isinstance(ev, h2.events.ConnectionTerminated)
                events.append(
                    ConnectionTerminated(
                        int(ev.error_code or 0),
                        int(ev.last_stream_id or 0),
                        bytes(ev.additional_data or b""),
                    )
                )
        return events
