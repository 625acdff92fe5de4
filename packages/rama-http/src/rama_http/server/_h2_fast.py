"""The h2 server connection on rama's own sans-IO engine (``H2Config(engine="fast")``).

Everything above the engine (stream dispatch, the response writer, flow-control
waits, the queued-bytes cap, tunnels, shutdown, idleness, the handler_failure
policy) is :class:`~rama_http.server._h2.H2Connection`'s, shared as is: this
subclass only swaps the engine primitives (:class:`~rama_http._h2._engine.H2Engine`
instead of the ``h2`` library) and maps the engine's events. The flood guard
(:class:`~rama_http._h2._flood.H2FloodGuard`) sees every frame through the
engine's ``on_frame`` hook, before the engine acts on it, as it does in
``h2``'s ``_receive_frame`` for the reference engine.
"""

from __future__ import annotations

import contextlib
import logging

from .._h2._engine import H2Engine
from .._h2._events import (
    ConnectionFailed,
    ConnectionTerminated,
    DataReceived,
    H2EngineError,
    RemoteSettingsChanged,
    RequestReceived,
    StreamRefused,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from .._h2._flood import H2Flood, H2FloodGuard
from .._h2._frames import FLAG_PADDED
from .._h2._inbound import StreamResetError
from ._h2 import H2Connection, _to_headers

__all__ = ["H2FastConnection"]

_log = logging.getLogger("rama.http.h2")

_STREAM_CLOSED = 5


def _flood_hook(engine_of: list[H2Engine], guard: H2FloodGuard) -> object:
    """The engine's ``on_frame`` hook: every received frame passes the flood accounting.

    :class:`H2Flood` propagates out of ``receive_data`` at the frame that spent
    the allowance, so what follows it is never processed (as with the reference).
    """

    def hook(ftype: int, flags: int, sid: int, payload: memoryview) -> int | None:
        eng = engine_of[0]
        if ftype == 0:
            pad = payload[0] + 1 if flags & FLAG_PADDED and len(payload) else 0
            guard.data(
                stream_open=eng.stream_is_open(sid),
                length=len(payload) - pad,
                end_stream=bool(flags & 1),
            )
        elif ftype == 1:
            if sid > eng.highest_inbound_stream_id:
                guard.headers(opens_stream=True, stream_open=False)
            else:
                guard.headers(opens_stream=False, stream_open=eng.stream_is_open(sid))
        elif ftype == 8:
            guard.window_update(sid, int.from_bytes(payload[:4], "big") & 0x7FFFFFFF)
        elif ftype == 6:
            guard.ping(ack=bool(flags & 1))
        elif ftype == 4:
            guard.settings(ack=bool(flags & 1))
        elif ftype == 2:
            guard.priority()
        elif ftype == 3:
            guard.rst_stream(stream_open=eng.stream_is_open(sid))
        elif ftype == 7:
            guard.goaway()
        elif ftype > 9:
            guard.unknown()
        return None

    return hook


class H2FastConnection(H2Connection):
    """One server-side h2 connection on :class:`~rama_http._h2._engine.H2Engine`."""

    _errors = (H2EngineError,)

    def _setup_conn(self) -> None:
        h2c = self._h2c
        settings = [
            (3, h2c.max_concurrent_streams),
            (4, h2c.initial_window_size),
            (5, h2c.max_frame_size),
            (6, h2c.max_header_list_size),
        ]
        if h2c.enable_connect_protocol:
            settings.append((8, 1))
        holder: list[H2Engine] = []
        engine = H2Engine(
            client=False,
            settings=settings,
            initial_window_update=max(0, h2c.connection_window_size - 65535),
            max_header_list_size=h2c.max_header_list_size,
            max_continuation_frames=64,  # as the h2 library
            auto_window_update=False,
            on_frame=_flood_hook(holder, self._flood),  # type: ignore[arg-type]
        )
        holder.append(engine)
        self._engine = engine

    # -- primitives -----------------------------------------------------------------------
    def _start(self) -> None:
        self._engine.initiate_connection()

    def _frame_count(self) -> int:
        return self._engine.frames_received

    def _window(self, stream_id: int) -> int:
        return self._engine.local_flow_control_window(stream_id)

    def _max_frame(self) -> int:
        return self._engine.max_outbound_frame_size

    def _send_headers(
        self, stream_id: int, fields: list[tuple[bytes, bytes]], end: bool = False
    ) -> None:
        self._engine.send_headers(stream_id, fields, end_stream=end)

    def _send_frames(self, stream_id: int, data: bytes | memoryview, end: bool) -> None:
        self._engine.send_data(stream_id, data, end_stream=end)  # type: ignore[arg-type]

    def _end_stream(self, stream_id: int) -> None:
        self._engine.send_data(stream_id, b"", end_stream=True)

    def _reset_raw(self, stream_id: int, code: int) -> None:
        with contextlib.suppress(H2EngineError):
            self._engine.reset_stream(stream_id, code)

    def _ack_raw(self, stream_id: int, n: int) -> None:
        self._engine.acknowledge_received_data(stream_id, n)

    def _take_output(self) -> bytes:
        return self._engine.data_to_send()

    def _send_goaway(self, error_code: int, additional_data: bytes = b"") -> None:
        self._engine.goaway(
            int(error_code),
            last_stream_id=self._last_stream_id,
            additional_data=additional_data,
        )
        self._want_write.set()

    # -- input ----------------------------------------------------------------------------
    def _receive(self, data: bytes | memoryview) -> bool:
        """Feed bytes to the engine; False when the connection must end."""
        self.recorder.feed(data)
        try:
            events = self._engine.receive_data(data)  # type: ignore[arg-type]
        except H2Flood as e:
            # Raised by the per-frame hook at the frame that spent the allowance:
            # what followed it in this read is never processed.
            self._on_flood(e)
            return False
        if events and type(events[-1]) is ConnectionFailed:
            # The engine queued GOAWAY(code) and closed; as with the reference, nothing
            # of this read is acted on.
            failed = events[-1]
            assert isinstance(failed, ConnectionFailed)
            _log.info("h2 protocol error from peer: %s", failed.reason)
            self._goaway_sent = True
            self._want_write.set()
            return False
        try:
            streams = self._streams
            for event in events:
                kind = type(event)
                if kind is RequestReceived:
                    assert isinstance(event, RequestReceived)
                    self._on_request(event.stream_id, event.headers, event.end_stream)
                elif kind is DataReceived:
                    assert isinstance(event, DataReceived)
                    # The engine gave padding's credit back itself: only data is owed.
                    self._on_data(event.stream_id, event.data, len(event.data))
                    if event.end_stream:
                        st = streams.get(event.stream_id)
                        if st is not None:
                            st.body.end()
                elif kind is WindowUpdated:
                    assert isinstance(event, WindowUpdated)
                    self._on_window(event.stream_id)
                elif kind is TrailersReceived:
                    assert isinstance(event, TrailersReceived)
                    st = streams.get(event.stream_id)
                    if st is not None:
                        st.body.end(_to_headers(event.headers))
                elif kind is StreamReset:
                    assert isinstance(event, StreamReset)
                    self._on_reset(event)
                elif kind is StreamRefused:
                    self._flood.refused()
                elif kind is RemoteSettingsChanged:
                    self._on_window(0)
                elif kind is ConnectionTerminated:
                    assert isinstance(event, ConnectionTerminated)
                    _log.debug("h2 client sent GOAWAY (%s)", event.error_code)
                    self.goaway()
        except H2Flood as e:
            self._on_flood(e)
            return False
        self._want_write.set()
        return True

    def _on_reset(self, event: StreamReset) -> None:
        st = self._streams.get(event.stream_id)
        if event.remote or event.error_code != _STREAM_CLOSED:
            # Reset by the client, or by the engine for a malformed request: either way
            # a stream that cost a handler (or an answer) and yields nothing. (Frames on
            # a stream the peer had closed, STREAM_CLOSED, are the frame hook's count of
            # frames without progress, not resets.)
            self._flood.resets()
        if st is not None:
            code = event.error_code
            st.reset_code = code
            st.body.fail(StreamResetError(st.id, code))
            st.wake()
            # Nobody can read the answer any more: stop the handler.
            st.scope.cancel()
