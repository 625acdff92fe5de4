"""The engine's connection state: flow control, SETTINGS, PING, GOAWAY, trailers, CONNECT."""

from __future__ import annotations

import hpack
import pytest
from rama_http_h2_engine_peer import GET, OK, client, headers_frame, out_frames, server

from rama_http._h2._engine import H2Engine
from rama_http._h2._events import (
    DataReceived,
    FlowControlBlocked,
    H2EngineError,
    PingAckReceived,
    RemoteSettingsChanged,
    RequestReceived,
    SettingsAcknowledged,
    StreamClosedError,
    StreamPriority,
    TooManyStreamsError,
    WindowUpdated,
)
from rama_http._h2._frames import (
    CONNECTION_PREFACE,
    FLAG_PADDED,
    FrameReader,
    data_frame,
    frame,
    parse_settings,
    ping_frame,
    settings_frame,
    window_update_frame,
)


def _open(eng: H2Engine, sid: int = 1, *, end_stream: bool = True) -> None:
    eng.receive_data(headers_frame(sid, GET, end_stream=end_stream))
    eng.send_headers(sid, OK)
    eng.data_to_send()


def test_send_window_blocks_and_window_update_unblocks() -> None:
    eng = server()
    _open(eng)
    assert eng.local_flow_control_window(1) == 65535
    eng.send_data(1, b"x" * 65535)
    assert eng.local_flow_control_window(1) == 0
    with pytest.raises(FlowControlBlocked):
        eng.send_data(1, b"y")
    events = eng.receive_data(window_update_frame(0, 10) + window_update_frame(1, 5))
    assert events == [WindowUpdated(0, 10), WindowUpdated(1, 5)]
    assert eng.local_flow_control_window(1) == 5
    eng.send_data(1, b"y" * 5, end_stream=True)
    assert not eng.stream_is_open(1)


def test_data_is_split_at_the_peer_max_frame_size() -> None:
    eng = server()
    eng.receive_data(settings_frame([(5, 20000)]) + window_update_frame(0, 1 << 20))
    eng.receive_data(settings_frame([(4, 1 << 20)]))
    _open(eng)
    eng.send_data(1, b"z" * 50000, end_stream=True)
    frames = out_frames(eng)
    assert [(f.type, len(f.payload), f.flags) for f in frames] == [
        (0, 20000, 0),
        (0, 20000, 0),
        (0, 10000, 1),
    ]


def test_initial_window_change_applies_to_open_streams_including_negative() -> None:
    eng = server()
    eng.receive_data(window_update_frame(0, 1 << 20))
    _open(eng)
    eng.send_data(1, b"x" * 60000)
    eng.receive_data(settings_frame([(4, 1000)]))
    # 1000 - 60000: the stream window is negative, nothing may be sent.
    assert eng.local_flow_control_window(1) == 0
    with pytest.raises(FlowControlBlocked):
        eng.send_data(1, b"x")
    eng.receive_data(window_update_frame(1, 59500))
    assert eng.local_flow_control_window(1) == 500
    # A stream opened now starts at the new initial window.
    _open(eng, 3)
    assert eng.local_flow_control_window(3) == 1000


def test_auto_window_updates_give_credit_back_at_half_a_window() -> None:
    eng = server()
    eng.receive_data(headers_frame(1, GET, end_stream=False))
    eng.data_to_send()
    eng.receive_data(data_frame(1, b"a" * 16384))
    assert out_frames(eng) == []
    eng.receive_data(data_frame(1, b"a" * 16384))
    updates = [
        (f.stream_id, int.from_bytes(f.payload, "big")) for f in out_frames(eng) if f.type == 8
    ]
    assert updates == [(0, 32768), (1, 32768)]
    assert eng.inbound_window(1) == 65535


def test_manual_window_updates_wait_for_the_application() -> None:
    eng = server(auto_window_update=False)
    eng.receive_data(headers_frame(1, GET, end_stream=False))
    eng.data_to_send()
    padded = frame(0, FLAG_PADDED, 1, bytes([9]) + b"d" * 16000 + bytes(9))
    events = eng.receive_data(padded * 3)
    assert isinstance(events[0], DataReceived)
    assert [e.flow_controlled_length for e in events] == [16010] * 3  # type: ignore[attr-defined]
    # Only the padding (and its length byte) is given back unasked; below half a window.
    assert out_frames(eng) == []
    assert eng.inbound_window(1) == 65535 - 48030
    eng.acknowledge_received_data(1, 48000)
    updates = [
        (f.stream_id, int.from_bytes(f.payload, "big")) for f in out_frames(eng) if f.type == 8
    ]
    assert updates == [(0, 48030), (1, 48030)]


def test_settings_order_kept_as_sent_and_as_received() -> None:
    ours = [(1, 65536), (2, 0), (4, 6291456), (6, 262144), (1, 4096), (0x99, 7)]
    eng = H2Engine(client=True, settings=ours, initial_window_update=15663105)
    eng.initiate_connection()
    data = eng.data_to_send()
    assert data.startswith(CONNECTION_PREFACE)
    frames = FrameReader().feed(data[len(CONNECTION_PREFACE) :])
    assert parse_settings(frames[0].payload) == ours
    assert (frames[1].type, int.from_bytes(frames[1].payload, "big")) == (8, 15663105)
    theirs = [(3, 100), (3, 50), (0x4242, 1), (4, 1 << 20)]
    events = eng.receive_data(settings_frame(theirs))
    assert events == [RemoteSettingsChanged(theirs)]
    assert eng.remote_settings[3] == 50
    assert eng.remote_settings_frames == [theirs]
    assert [f.flags for f in out_frames(eng)] == [1]  # the ACK


def test_local_settings_apply_on_ack() -> None:
    eng = server()
    eng.receive_data(headers_frame(1, GET, end_stream=False))
    eng.update_settings([(4, 100)])
    eng.data_to_send()
    # Until the ACK the larger window still applies.
    assert eng.inbound_window(1) == 65535
    events = eng.receive_data(settings_frame(ack=True) + settings_frame(ack=True))
    assert events == [SettingsAcknowledged([(3, 100)]), SettingsAcknowledged([(4, 100)])]
    assert eng.inbound_window(1) == 100
    assert eng.local_settings[4] == 100


def test_peer_header_table_size_makes_our_next_block_start_with_a_size_update() -> None:
    eng = server()
    dec = hpack.Decoder()
    eng.receive_data(headers_frame(1, GET, end_stream=True))
    eng.send_headers(1, [(b":status", b"200"), (b"x-a", b"1" * 50)], end_stream=True)
    for f in out_frames(eng):
        if f.type == 1:
            dec.decode(f.payload)
    eng.receive_data(settings_frame([(1, 0)]))
    eng.data_to_send()
    eng.receive_data(headers_frame(3, GET, end_stream=True, encoder=hpack.Encoder()))
    eng.send_headers(3, [(b":status", b"200"), (b"x-a", b"1" * 50)], end_stream=True)
    blocks = [f.payload for f in out_frames(eng) if f.type == 1]
    assert blocks[0][0] == 0x20  # size update to 0
    assert dec.decode(blocks[0], raw=True) == [(b":status", b"200"), (b"x-a", b"1" * 50)]
    assert dec.header_table_size == 0


def test_ping_and_its_ack() -> None:
    eng = client()
    eng.ping(b"pingpong")
    assert [(f.type, f.flags, f.payload) for f in out_frames(eng)] == [(6, 0, b"pingpong")]
    assert eng.receive_data(ping_frame(b"pingpong", ack=True)) == [PingAckReceived(b"pingpong")]


def test_trailers_both_ways() -> None:
    eng = server()
    eng.receive_data(headers_frame(1, GET, end_stream=False))
    events = eng.receive_data(headers_frame(1, [(b"x-sum", b"1")], end_stream=True))
    assert events[0].headers == [(b"x-sum", b"1")]  # type: ignore[attr-defined]
    eng.send_headers(1, OK)
    eng.send_data(1, b"body")
    with pytest.raises(H2EngineError):
        eng.send_headers(1, [(b"x-t", b"1")])  # trailers must end the stream
    eng.send_headers(1, [(b"x-t", b"1")], end_stream=True)
    assert not eng.stream_is_open(1)
    types = [(f.type, f.flags & 1) for f in out_frames(eng)]
    assert types == [(1, 0), (0, 0), (1, 1)]


def test_informational_then_final_response() -> None:
    eng = server()
    eng.receive_data(headers_frame(1, GET, end_stream=True))
    eng.send_headers(1, [(b":status", b"103"), (b"link", b"</s.css>")])
    eng.send_headers(1, OK, end_stream=True)
    c = client()
    c.send_headers(1, GET, end_stream=True)
    c.data_to_send()
    c._decoder = type(c._decoder)()  # a fresh pair of HPACK contexts for this test
    events = c.receive_data(eng.data_to_send())
    assert [type(e).__name__ for e in events] == [
        "InformationalResponseReceived",
        "ResponseReceived",
    ]


def test_extended_connect() -> None:
    eng = server(settings=[(8, 1)])
    req = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"https"),
        (b":path", b"/chat"),
        (b":authority", b"x"),
        (b"sec-websocket-version", b"13"),
    ]
    events = eng.receive_data(headers_frame(1, req, end_stream=False))
    assert isinstance(events[0], RequestReceived)
    assert events[0].headers == req
    # A plain CONNECT to an authority.
    events = eng.receive_data(
        headers_frame(3, [(b":method", b"CONNECT"), (b":authority", b"h:443")], end_stream=False)
    )
    assert isinstance(events[0], RequestReceived)


def test_reset_stream_then_late_data_is_ignored_but_credited() -> None:
    eng = server(auto_window_update=False)
    eng.receive_data(headers_frame(1, GET, end_stream=False))
    eng.reset_stream(1)
    assert [(f.type, f.payload) for f in out_frames(eng)] == [(3, b"\x00\x00\x00\x08")]
    eng.reset_stream(1)  # a no-op now
    events = eng.receive_data(data_frame(1, b"x" * 16000) * 3)
    assert events == []
    sent = out_frames(eng)
    assert [(f.type, f.stream_id) for f in sent] == [(8, 0)]  # credit back, no RST
    with pytest.raises(StreamClosedError):
        eng.send_data(1, b"x")


def test_client_priority_frames_and_headers_priority() -> None:
    eng = H2Engine(client=True)
    eng.initiate_connection()
    eng.data_to_send()
    eng.send_priority(3, 0, 201)
    eng.send_priority(5, 0, 101, exclusive=True)
    eng.send_headers(1, GET, end_stream=True, priority=StreamPriority(0, 256, True))
    frames = out_frames(eng)
    assert [(f.type, f.stream_id) for f in frames] == [(2, 3), (2, 5), (1, 1)]
    assert frames[1].payload == bytes.fromhex("80000000") + bytes([100])
    assert frames[2].flags & 0x20
    assert frames[2].payload[:5] == bytes.fromhex("80000000ff")
    with pytest.raises(ValueError, match="itself"):
        eng.send_priority(7, 7)


def test_large_header_block_is_sent_with_continuation() -> None:
    eng = server()
    eng.receive_data(headers_frame(1, GET))
    eng.send_headers(1, [*OK, (b"x-big", b"v" * 40000)], end_stream=True)
    frames = out_frames(eng)
    assert [f.type for f in frames] == [1, 9, 9]
    assert [f.flags & 4 for f in frames] == [0, 0, 4]
    assert frames[0].flags & 1
    blk = b"".join(f.payload for f in frames)
    assert hpack.Decoder().decode(blk, raw=True)[1] == (b"x-big", b"v" * 40000)


def test_client_stream_ids_and_limits() -> None:
    eng = client()
    eng.receive_data(settings_frame([(3, 1)]))
    eng.send_headers(1, GET)
    with pytest.raises(TooManyStreamsError):
        eng.send_headers(3, GET)
    with pytest.raises(StreamClosedError):
        eng.send_headers(2, GET)
    srv = server()
    with pytest.raises(StreamClosedError):
        srv.send_headers(1, OK)  # a server cannot open streams


def test_counters_for_flood_accounting() -> None:
    eng = server()
    eng.receive_data(headers_frame(1, GET, end_stream=False) + data_frame(1, b"abc"))
    assert eng.headers_delivered == 1
    assert eng.data_delivered == 3
    assert eng.frames_received == 3  # SETTINGS, HEADERS, DATA


def test_closed_stream_memory_is_bounded() -> None:
    eng = server(max_closed_streams=10)
    enc = hpack.Encoder()
    for sid in range(1, 200, 2):
        eng.receive_data(headers_frame(sid, GET, encoder=enc))
        eng.send_headers(sid, OK, end_stream=True)
    assert len(eng._closed) <= 10
    assert eng.open_inbound_streams == 0


def test_our_goaway_last_stream_id() -> None:
    eng = server()
    eng.receive_data(headers_frame(1, GET) + headers_frame(3, GET, encoder=hpack.Encoder()))
    eng.goaway()
    f = out_frames(eng)[-1]
    assert (f.type, int.from_bytes(f.payload[:4], "big")) == (7, 3)
    assert eng.goaway_sent == 3


def test_header_list_limit_follows_our_setting() -> None:
    big = [*GET, (b"x-big", b"v" * 3000)]
    eng = server(settings=[(6, 2000)])
    eng.receive_data(headers_frame(1, big))
    assert eng.error_code == 11  # ENHANCE_YOUR_CALM
    eng = server()
    eng.update_settings([(6, 2000)])
    eng.receive_data(headers_frame(1, big))
    assert eng.error_code == 11
    eng = server(max_header_list_size=10000)
    eng.update_settings([(6, 2000)])  # an explicit limit wins
    eng.receive_data(headers_frame(1, big))
    assert not eng.closed


def test_client_extended_connect_needs_the_peer_setting() -> None:
    ws = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"https"),
        (b":path", b"/chat"),
        (b":authority", b"x"),
    ]
    eng = client()
    with pytest.raises(H2EngineError, match="ENABLE_CONNECT_PROTOCOL"):
        eng.send_headers(1, ws)
    assert eng.open_outbound_streams == 0
    eng.receive_data(settings_frame([(8, 1)]))
    eng.send_headers(3, ws)
    assert eng.stream_is_open(3)
