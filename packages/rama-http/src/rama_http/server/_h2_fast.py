"""The h2 server engine on rama's own sans-IO engine (``H2Config(engine="fast")``).

:class:`FastServerEngine` is :class:`~rama_http._h2._engine.H2Engine` in the
server role behind :class:`~._h2_backend.H2ServerEngine`. The flood guard
(:class:`~rama_http._h2._flood.H2FloodGuard`) sees every frame through the
engine's ``on_frame`` hook, before the engine acts on it. The engine's events
are the interface's vocabulary, so :meth:`FastServerEngine.receive` hands them
on as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from .._h2._config import H2Config
from .._h2._engine import H2Engine
from .._h2._events import Event, H2EngineError
from .._h2._flood import H2FloodGuard
from .._h2._frames import FLAG_PADDED

__all__ = ["FastServerEngine"]

_MAX_DATA = 256 * 1024


def _flood_hook(
    engine_of: list[H2Engine], guard: H2FloodGuard
) -> Callable[[int, int, int, memoryview], None]:
    """The engine's ``on_frame`` hook: every received frame passes the flood accounting.

    :class:`~rama_http._h2._flood.H2Flood` propagates out of ``receive_data`` at
    the frame that spent the allowance, so what follows it is never processed (as
    with the reference).
    """

    def hook(ftype: int, flags: int, sid: int, payload: memoryview) -> None:
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

    return hook


class FastServerEngine:
    """:class:`~rama_http._h2._engine.H2Engine` as an :class:`~._h2_backend.H2ServerEngine`."""

    errors: tuple[type[Exception], ...] = (H2EngineError,)

    def __init__(self, config: H2Config, guard: H2FloodGuard) -> None:
        settings = [
            (3, config.max_concurrent_streams),
            (4, config.initial_window_size),
            (5, config.max_frame_size),
            (6, config.max_header_list_size),
        ]
        if config.enable_connect_protocol:
            settings.append((8, 1))
        holder: list[H2Engine] = []
        engine = H2Engine(
            client=False,
            settings=settings,
            initial_window_update=max(0, config.connection_window_size - 65535),
            max_header_list_size=config.max_header_list_size,
            max_continuation_frames=64,  # as the h2 library
            auto_window_update=False,
            on_frame=_flood_hook(holder, guard),
        )
        holder.append(engine)
        self.engine = engine
        """The engine itself (its records: remote settings, priorities, counters)."""

    @property
    def frames_received(self) -> int:
        """Frames processed, all told."""
        return self.engine.frames_received

    @property
    def max_frame(self) -> int:
        """The largest DATA payload the peer accepts in one frame."""
        return self.engine.max_outbound_frame_size

    @property
    def max_data(self) -> int:
        """The engine splits DATA into frames itself: a write slice at a time."""
        return _MAX_DATA

    def start(self) -> None:
        """Queue our preface."""
        self.engine.initiate_connection()

    def window(self, stream_id: int) -> int:
        """What may be sent on ``stream_id`` now."""
        return self.engine.local_flow_control_window(stream_id)

    def send_headers(
        self, stream_id: int, fields: Sequence[tuple[bytes, bytes]], end: bool = False
    ) -> None:
        """Queue a header block."""
        self.engine.send_headers(stream_id, fields, end_stream=end)

    def send_data(self, stream_id: int, data: bytes | memoryview, end: bool) -> None:
        """Queue DATA."""
        self.engine.send_data(stream_id, data, end_stream=end)  # type: ignore[arg-type]

    def end_stream(self, stream_id: int) -> None:
        """End our side of the stream."""
        self.engine.send_data(stream_id, b"", end_stream=True)

    def reset(self, stream_id: int, code: int) -> None:
        """Queue RST_STREAM; a closed stream is left alone."""
        with contextlib.suppress(H2EngineError):
            self.engine.reset_stream(stream_id, code)

    def ack(self, stream_id: int, n: int) -> None:
        """Give back flow-control credit."""
        self.engine.acknowledge_received_data(stream_id, n)

    def goaway(self, code: int, last_stream_id: int, additional_data: bytes = b"") -> None:
        """Queue GOAWAY."""
        self.engine.goaway(
            int(code), last_stream_id=last_stream_id, additional_data=additional_data
        )

    def data_to_send(self) -> bytes | bytearray:
        """Everything queued since the last call: the engine's buffer itself, no copy."""
        return self.engine.take_output()

    def receive(self, data: bytes | memoryview) -> list[Event]:
        """Feed the peer's bytes to the engine."""
        return self.engine.receive_data(data)  # type: ignore[arg-type]
