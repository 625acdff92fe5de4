"""The engine's per-frame hook carries the h2 flood guard (sans-IO, no sockets).

``H2FloodGuard`` (rama_http._h2._flood) is being written on main by the h2
hardening work; until this branch is merged with it the module is absent and
these tests are skipped. They show the few lines an adapter needs: the hook
sees each frame (payload included) and the engine's state before the frame,
and turns the guard's ``H2Flood`` into GOAWAY(ENHANCE_YOUR_CALM).
"""

from __future__ import annotations

from typing import Any

import hpack
import pytest
from rama_http_h2_engine_peer import GET, headers_frame, outcome

from rama_http._h2._engine import H2Engine
from rama_http._h2._events import StreamReset
from rama_http._h2._frames import (
    CONNECTION_PREFACE,
    FLAG_PADDED,
    ErrorCode,
    data_frame,
    frame,
    ping_frame,
    rst_stream_frame,
    settings_frame,
)

flood = pytest.importorskip(
    "rama_http._h2._flood", reason="H2FloodGuard is on main; runs once merged"
)


def guarded_server(**limits: Any) -> tuple[H2Engine, Any]:
    """A server engine whose frames are accounted by an ``H2FloodGuard``."""
    kw = {"max_pings": 10, "max_settings": 10, "max_resets": 10, "max_idle_frames": 10}
    kw.update(limits)
    guard = flood.H2FloodGuard(window=10.0, max_concurrent_streams=100, clock=lambda: 0.0, **kw)
    holder: list[H2Engine] = []

    def hook(ftype: int, flags: int, sid: int, payload: memoryview) -> int | None:
        eng = holder[0]
        try:
            if ftype == 0:
                pad = payload[0] + 1 if flags & FLAG_PADDED and len(payload) else 0
                guard.data(
                    stream_open=eng.stream_is_open(sid),
                    length=len(payload) - pad,
                    end_stream=bool(flags & 1),
                )
            elif ftype == 1:
                guard.headers(
                    opens_stream=sid > eng.highest_inbound_stream_id,
                    stream_open=eng.stream_is_open(sid),
                )
            elif ftype == 2:
                guard.priority()
            elif ftype == 3:
                is_open = eng.stream_is_open(sid)
                guard.rst_stream(stream_open=is_open)
                if is_open:
                    guard.resets()
            elif ftype == 4:
                guard.settings(ack=bool(flags & 1))
            elif ftype == 6:
                guard.ping(ack=bool(flags & 1))
            elif ftype == 7:
                guard.goaway()
            elif ftype == 8:
                guard.window_update(sid, int.from_bytes(payload, "big") & 0x7FFFFFFF)
            elif ftype > 9:
                guard.unknown()
        except flood.H2Flood:
            return int(ErrorCode.ENHANCE_YOUR_CALM)
        return None

    eng = H2Engine(client=False, on_frame=hook)
    holder.append(eng)
    eng.initiate_connection()
    eng.receive_data(CONNECTION_PREFACE + settings_frame([]))
    eng.data_to_send()
    return eng, guard


def _calm(eng: H2Engine) -> bool:
    return eng.closed and eng.error_code == ErrorCode.ENHANCE_YOUR_CALM


def test_ping_flood() -> None:
    eng, _ = guarded_server()
    eng.receive_data(ping_frame(b"12345678") * 10)
    assert not eng.closed
    eng.receive_data(ping_frame(b"12345678"))
    assert _calm(eng)


def test_rapid_reset() -> None:
    eng, _ = guarded_server()
    enc = hpack.Encoder()
    data = b""
    for sid in range(1, 25, 2):
        data += headers_frame(sid, GET, end_stream=False, encoder=enc) + rst_stream_frame(sid, 8)
    events = eng.receive_data(data)
    assert sum(isinstance(e, StreamReset) for e in events) == 10
    assert _calm(eng)
    assert outcome(eng) == ("goaway", ErrorCode.ENHANCE_YOUR_CALM)


def test_empty_data_flood_padding_does_not_hide_it() -> None:
    eng, guard = guarded_server()
    eng.receive_data(headers_frame(1, GET, end_stream=False))
    padded_empty = frame(0, FLAG_PADDED, 1, bytes([20]) + bytes(20))
    eng.receive_data(padded_empty * 10)
    assert guard.idle_frames == 10
    assert not eng.closed
    eng.receive_data(data_frame(1, b""))
    assert _calm(eng)


def test_ordinary_traffic_is_not_a_flood() -> None:
    eng, guard = guarded_server()
    enc = hpack.Encoder()
    for sid in range(1, 400, 2):
        eng.receive_data(headers_frame(sid, GET, end_stream=False, encoder=enc))
        eng.receive_data(data_frame(sid, b"body", end_stream=True))
        eng.send_headers(sid, [(b":status", b"200")], end_stream=True)
    assert not eng.closed
    assert guard.idle_frames == 0
