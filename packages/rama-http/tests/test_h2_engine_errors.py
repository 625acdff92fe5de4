"""RFC 9113 error cases: each gets the right GOAWAY or RST_STREAM code from the engine."""

from __future__ import annotations

import struct
from collections.abc import Callable

import hpack
import pytest
from rama_http_h2_engine_peer import GET, OK, client, headers_frame, out_frames, outcome, server

from rama_http._h2._engine import H2Engine
from rama_http._h2._events import ConnectionFailed, StreamRefused, StreamReset
from rama_http._h2._frames import (
    CONNECTION_PREFACE,
    FLAG_END_HEADERS,
    FLAG_PADDED,
    ErrorCode,
    data_frame,
    frame,
    goaway_frame,
    ping_frame,
    priority_frame,
    rst_stream_frame,
    settings_frame,
    window_update_frame,
)

E = ErrorCode
P, FS, FC, SC = E.PROTOCOL_ERROR, E.FRAME_SIZE_ERROR, E.FLOW_CONTROL_ERROR, E.STREAM_CLOSED


def _s(pairs: list[tuple[int, int]]) -> bytes:
    return settings_frame(pairs)


def _req(extra: list[tuple[bytes, bytes]] | None = None, **kw: bool) -> bytes:
    return headers_frame(1, GET + (extra or []), **kw)


def _malformed(headers: list[tuple[bytes, bytes]], end_stream: bool = True) -> bytes:
    return headers_frame(1, headers, end_stream=end_stream)


def _split_block(headers: list[tuple[bytes, bytes]]) -> bytes:
    blk = hpack.Encoder().encode(headers)
    parts = [blk[i : i + 16000] for i in range(0, len(blk), 16000)]
    out = headers_frame(1, parts[0], end_headers=False)
    for i, part in enumerate(parts[1:], 2):
        out += frame(9, FLAG_END_HEADERS if i == len(parts) else 0, 1, part)
    return out


# (id, bytes the client sends after the preface, expected outcome)
SERVER_CASES: list[tuple[str, bytes, tuple[str, int]]] = [
    ("data-on-stream-0", data_frame(0, b"x"), ("goaway", P)),
    ("headers-on-stream-0", headers_frame(0, GET), ("goaway", P)),
    ("frame-over-max-size", frame(0, 0, 1, b"x" * 16385), ("goaway", FS)),
    ("settings-length-not-6n", frame(4, 0, 0, b"\x00" * 5), ("goaway", FS)),
    ("settings-ack-with-payload", frame(4, 1, 0, b"\x00" * 6), ("goaway", FS)),
    ("settings-on-stream", frame(4, 0, 1, b""), ("goaway", P)),
    ("initial-window-too-big", _s([(4, 2**31)]), ("goaway", FC)),
    ("max-frame-size-too-small", _s([(5, 16383)]), ("goaway", P)),
    ("max-frame-size-too-big", _s([(5, 2**24)]), ("goaway", P)),
    ("enable-push-2", _s([(2, 2)]), ("goaway", P)),
    ("enable-connect-protocol-2", _s([(8, 2)]), ("goaway", P)),
    ("connect-protocol-1-then-0", _s([(8, 1)]) + _s([(8, 0)]), ("goaway", P)),
    ("ping-length-7", frame(6, 0, 0, b"\x00" * 7), ("goaway", FS)),
    ("ping-on-stream", frame(6, 0, 1, b"\x00" * 8), ("goaway", P)),
    ("window-update-length-3", frame(8, 0, 0, b"\x00" * 3), ("goaway", FS)),
    ("window-update-0-connection", window_update_frame(0, 0), ("goaway", P)),
    ("window-update-0-stream", _req(end_stream=False) + window_update_frame(1, 0), ("rst", P)),
    ("window-update-overflow-connection", window_update_frame(0, 2**31 - 1), ("goaway", FC)),
    (
        "window-update-overflow-stream",
        _req(end_stream=False) + window_update_frame(1, 2**31 - 1),
        ("rst", FC),
    ),
    ("window-update-idle-stream", window_update_frame(5, 1), ("goaway", P)),
    ("rst-on-stream-0", frame(3, 0, 0, b"\x00" * 4), ("goaway", P)),
    ("rst-length-3", frame(3, 0, 1, b"\x00" * 3), ("goaway", FS)),
    ("rst-idle-stream", rst_stream_frame(1, 0), ("goaway", P)),
    ("priority-length-4", frame(2, 0, 1, b"\x00" * 4), ("rst", FS)),
    ("priority-on-stream-0", frame(2, 0, 0, b"\x00" * 5), ("goaway", P)),
    ("priority-self-dependency", frame(2, 0, 3, struct.pack(">LB", 3, 15)), ("rst", P)),
    ("goaway-on-stream", frame(7, 0, 1, b"\x00" * 8), ("goaway", P)),
    ("goaway-short", frame(7, 0, 0, b"\x00" * 7), ("goaway", FS)),
    ("push-promise-from-client", frame(5, 4, 1, b"\x00\x00\x00\x02"), ("goaway", P)),
    ("continuation-without-headers", frame(9, 4, 1, b""), ("goaway", P)),
    (
        "frame-inside-header-block",
        _req(end_headers=False) + ping_frame(b"\x00" * 8),
        ("goaway", P),
    ),
    (
        "continuation-on-other-stream",
        _req(end_headers=False) + frame(9, FLAG_END_HEADERS, 3, b""),
        ("goaway", P),
    ),
    ("data-on-idle-stream", data_frame(1, b"x"), ("goaway", P)),
    ("headers-even-stream", headers_frame(2, GET), ("goaway", P)),
    ("headers-on-half-closed-stream", _req() + _req(), ("rst", SC)),
    ("headers-on-skipped-stream", headers_frame(3, GET) + headers_frame(1, GET), ("goaway", P)),
    ("data-after-end-stream", _req() + data_frame(1, b"x"), ("rst", SC)),
    (
        "data-over-stream-window",
        _s([]) + _req(end_stream=False) + data_frame(1, b"x" * 16384) * 4 + data_frame(1, b"x"),
        ("rst", FC),
    ),
    (
        "padding-too-long",
        _req(end_stream=False) + frame(0, FLAG_PADDED, 1, b"\x05abc"),
        ("goaway", P),
    ),
    ("headers-padding-too-long", frame(1, FLAG_PADDED | 4, 1, b"\x09abc"), ("goaway", P)),
    ("bad-hpack-index", headers_frame(1, b"\xbe"), ("goaway", E.COMPRESSION_ERROR)),
    ("bad-hpack-huffman", headers_frame(1, b"\x82\x41\x81\x00"), ("goaway", E.COMPRESSION_ERROR)),
    (
        "header-list-too-large",
        _split_block(GET + [(b"x-big", b"v" * 15000)] * 5),
        ("goaway", E.ENHANCE_YOUR_CALM),
    ),
    (
        "continuation-flood-empty",
        _req(end_headers=False) + frame(9, 0, 1, b"") * 200,
        ("goaway", E.ENHANCE_YOUR_CALM),
    ),
    (
        "continuation-flood-size",
        _req(end_headers=False) + frame(9, 0, 1, b"\x00" * 16384) * 20,
        ("goaway", E.ENHANCE_YOUR_CALM),
    ),
    # Malformed messages (RFC 9113 section 8.1.1): stream errors.
    ("uppercase-name", _req([(b"X-Up", b"1")]), ("rst", P)),
    ("connection-header", _req([(b"connection", b"close")]), ("rst", P)),
    ("transfer-encoding", _req([(b"transfer-encoding", b"chunked")]), ("rst", P)),
    ("upgrade-header", _req([(b"upgrade", b"h2c")]), ("rst", P)),
    ("keep-alive-header", _req([(b"keep-alive", b"5")]), ("rst", P)),
    ("te-not-trailers", _req([(b"te", b"gzip")]), ("rst", P)),
    ("host-differs-from-authority", _req([(b"host", b"y")]), ("rst", P)),
    ("value-with-crlf", _req([(b"x-a", b"a\r\nb")]), ("rst", P)),
    ("value-with-nul", _req([(b"x-a", b"a\x00b")]), ("rst", P)),
    ("value-leading-space", _req([(b"x-a", b" a")]), ("rst", P)),
    ("name-with-space", _req([(b"x a", b"1")]), ("rst", P)),
    ("empty-name", _req([(b"", b"1")]), ("rst", P)),
    ("missing-method", _malformed(GET[1:]), ("rst", P)),
    ("missing-scheme", _malformed([GET[0], GET[2], GET[3]]), ("rst", P)),
    ("missing-path", _malformed(GET[:3]), ("rst", P)),
    ("empty-path", _malformed([*GET[:3], (b":path", b"")]), ("rst", P)),
    ("pseudo-after-regular", _malformed([GET[0], (b"x", b"1"), *GET[1:]]), ("rst", P)),
    ("duplicate-pseudo", _malformed([*GET, (b":path", b"/b")]), ("rst", P)),
    ("unknown-pseudo", _malformed([*GET, (b":foo", b"1")]), ("rst", P)),
    ("status-in-request", _malformed([*GET, (b":status", b"200")]), ("rst", P)),
    (
        "connect-with-path",
        _malformed([(b":method", b"CONNECT"), (b":authority", b"x:1"), (b":path", b"/")]),
        ("rst", P),
    ),
    ("connect-without-authority", _malformed([(b":method", b"CONNECT")]), ("rst", P)),
    ("protocol-without-setting", _malformed([*GET, (b":protocol", b"websocket")]), ("rst", P)),
    ("content-length-not-a-number", _req([(b"content-length", b"x")]), ("rst", P)),
    ("content-length-two-values", _req([(b"content-length", b"1, 2")]), ("rst", P)),
    ("content-length-but-end-stream", _req([(b"content-length", b"3")]), ("rst", P)),
    (
        "content-length-data-longer",
        _req([(b"content-length", b"3")], end_stream=False) + data_frame(1, b"abcd"),
        ("rst", P),
    ),
    (
        "content-length-data-shorter",
        _req([(b"content-length", b"3")], end_stream=False) + data_frame(1, b"ab", end_stream=True),
        ("rst", P),
    ),
    (
        "trailers-without-end-stream",
        _req(end_stream=False) + headers_frame(1, [(b"x-t", b"1")], end_stream=False),
        ("rst", P),
    ),
    (
        "pseudo-in-trailers",
        _req(end_stream=False) + headers_frame(1, [(b":path", b"/")], end_stream=True),
        ("rst", P),
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in SERVER_CASES], ids=[c[0] for c in SERVER_CASES]
)
def test_server_error_cases(data: bytes, expected: tuple[str, int]) -> None:
    eng = server(auto_window_update=False, initial_window_update=1 << 20)
    events = eng.receive_data(data)
    assert outcome(eng) == (expected[0], int(expected[1]))
    if expected[0] == "goaway":
        assert isinstance(events[-1], ConnectionFailed)
        assert events[-1].error_code == expected[1]
        assert eng.closed
        assert eng.receive_data(_req()) == []  # nothing more is read
    else:
        assert not eng.closed
        assert any(isinstance(e, StreamReset) and not e.remote for e in events)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", P),
        (CONNECTION_PREFACE + ping_frame(b"\x00" * 8), P),
        (CONNECTION_PREFACE + settings_frame([], ack=True), P),
    ],
    ids=["http1", "first-frame-not-settings", "first-frame-settings-ack"],
)
def test_server_preface_errors(data: bytes, code: int) -> None:
    eng = H2Engine(client=False)
    eng.initiate_connection()
    eng.data_to_send()
    eng.receive_data(data)
    assert outcome(eng) == ("goaway", code)


def _response_block(headers: list[tuple[bytes, bytes]]) -> bytes:
    return hpack.Encoder().encode(headers)


CLIENT_CASES: list[tuple[str, Callable[[H2Engine], bytes], tuple[str, int]]] = [
    ("server-enables-push", lambda c: _s([(2, 1)]), ("goaway", P)),
    (
        "push-promise-push-disabled",
        lambda c: (
            settings_frame([], ack=True)
            + frame(5, FLAG_END_HEADERS, 1, b"\x00\x00\x00\x02" + _response_block(GET))
        ),
        ("goaway", P),
    ),
    ("headers-idle-stream", lambda c: headers_frame(3, OK), ("goaway", P)),
    ("headers-even-stream", lambda c: headers_frame(2, OK), ("goaway", P)),
    ("data-before-response", lambda c: data_frame(1, b"x"), ("rst", P)),
    ("method-in-response", lambda c: headers_frame(1, [*OK, (b":method", b"GET")]), ("rst", P)),
    ("no-status", lambda c: headers_frame(1, [(b"x", b"1")]), ("rst", P)),
    ("status-not-3-digits", lambda c: headers_frame(1, [(b":status", b"20")]), ("rst", P)),
    ("status-101", lambda c: headers_frame(1, [(b":status", b"101")]), ("rst", P)),
    ("1xx-with-end-stream", lambda c: headers_frame(1, [(b":status", b"103")]), ("rst", P)),
    ("uppercase-in-response", lambda c: headers_frame(1, [*OK, (b"Server", b"x")]), ("rst", P)),
    (
        "content-length-mismatch",
        lambda c: (
            headers_frame(1, [*OK, (b"content-length", b"2")], end_stream=False)
            + data_frame(1, b"abc")
        ),
        ("rst", P),
    ),
]


@pytest.mark.parametrize(
    ("make", "expected"), [c[1:] for c in CLIENT_CASES], ids=[c[0] for c in CLIENT_CASES]
)
def test_client_error_cases(make: Callable[[H2Engine], bytes], expected: tuple[str, int]) -> None:
    eng = client()
    eng.send_headers(1, GET, end_stream=True)
    eng.data_to_send()
    eng.receive_data(make(eng))
    assert outcome(eng) == (expected[0], int(expected[1]))


def test_client_first_frame_must_be_settings() -> None:
    eng = H2Engine(client=True)
    eng.initiate_connection()
    eng.data_to_send()
    eng.receive_data(ping_frame(b"\x00" * 8))
    assert outcome(eng) == ("goaway", P)


def test_too_many_streams_are_refused_and_the_connection_goes_on() -> None:
    eng = server(settings=[(3, 2)])
    enc = hpack.Encoder()
    data = b"".join(headers_frame(s, GET, end_stream=False, encoder=enc) for s in (1, 3, 5))
    events = eng.receive_data(data)
    assert [type(e).__name__ for e in events][-1] == "StreamRefused"
    assert outcome(eng) == ("rst", E.REFUSED_STREAM)
    assert not eng.closed
    # HPACK stayed in step: a later request (indexed fields) decodes.
    eng.receive_data(data_frame(1, b"", end_stream=True))
    eng.send_headers(1, OK, end_stream=True)
    events = eng.receive_data(headers_frame(7, GET, encoder=enc))
    assert events[0].headers == GET  # type: ignore[attr-defined]


def test_streams_above_our_goaway_are_refused() -> None:
    eng = server()
    enc = hpack.Encoder()
    eng.receive_data(headers_frame(1, GET, encoder=enc))
    eng.goaway(last_stream_id=1)
    eng.data_to_send()
    events = eng.receive_data(headers_frame(3, GET, encoder=enc))
    assert events == [StreamRefused(3, "goaway")]
    assert outcome(eng) == ("rst", E.REFUSED_STREAM)


def test_frame_hook_can_end_the_connection() -> None:
    seen: list[tuple[int, int, int, bytes]] = []

    def hook(ftype: int, flags: int, sid: int, payload: memoryview) -> int | None:
        seen.append((ftype, flags, sid, bytes(payload)))
        pings = sum(1 for f in seen if f[0] == 6)
        return E.ENHANCE_YOUR_CALM if pings > 3 else None

    eng = server(on_frame=hook)
    eng.receive_data(ping_frame(b"12345678") * 5)
    sent = out_frames(eng)
    assert [(f.type, f.flags) for f in sent] == [(6, 1)] * 3 + [(7, 0)]
    assert int.from_bytes(sent[-1].payload[4:8], "big") == E.ENHANCE_YOUR_CALM
    assert eng.error_code == E.ENHANCE_YOUR_CALM
    assert seen == [(4, 0, 0, b"")] + [(6, 0, 0, b"12345678")] * 4


def test_frame_hook_sees_the_state_before_the_frame() -> None:
    states: list[tuple[int, bool, int]] = []
    eng: H2Engine

    def hook(ftype: int, flags: int, sid: int, payload: memoryview) -> int | None:
        states.append((ftype, eng.stream_is_open(sid), eng.highest_inbound_stream_id))
        return None

    eng = H2Engine(client=False, on_frame=hook)
    eng.initiate_connection()
    eng.receive_data(CONNECTION_PREFACE + settings_frame([]))
    eng.receive_data(_req(end_stream=False) + data_frame(1, b"x", end_stream=True))
    eng.send_headers(1, OK, end_stream=True)
    eng.receive_data(data_frame(1, b"late"))
    assert states == [(4, False, 0), (1, False, 0), (0, True, 1), (0, False, 1)]


def test_goaway_received_refuses_our_streams_above_last_id() -> None:
    eng = client()
    for sid in (1, 3, 5):
        eng.send_headers(sid, GET, end_stream=True)
    eng.data_to_send()
    events = eng.receive_data(goaway_frame(1, 0))
    resets = [e for e in events if isinstance(e, StreamReset)]
    assert [(e.stream_id, e.error_code, e.retryable) for e in resets] == [
        (3, E.REFUSED_STREAM, True),
        (5, E.REFUSED_STREAM, True),
    ]
    assert eng.goaway_received == 1
    assert eng.stream_is_open(1)
    with pytest.raises(Exception, match="GOAWAY"):
        eng.send_headers(7, GET)


def test_priority_on_idle_stream_is_fine() -> None:
    eng = server()
    events = eng.receive_data(priority_frame(11, 0, 201))
    assert not eng.closed
    assert eng.priorities[0].stream_id == 11
    assert events[0].priority.weight == 201  # type: ignore[attr-defined]


def test_headers_on_a_closed_stream_is_a_connection_error() -> None:
    eng = server()
    eng.receive_data(_req())
    eng.send_headers(1, OK, end_stream=True)
    eng.data_to_send()
    eng.receive_data(_req())
    assert outcome(eng) == ("goaway", SC)


def test_an_oversized_frame_is_refused_before_it_arrives() -> None:
    eng = server()
    header = frame(0, 0, 1, b"x" * (1 << 20))[:9]
    eng.receive_data(header[:5])  # not even a whole frame header yet
    eng.receive_data(header[5:] + b"x" * 100)
    assert outcome(eng) == ("goaway", FS)


def test_a_repeated_block_is_checked_again_once_the_table_changed() -> None:
    eng = server()
    first = bytes.fromhex("828684410178") + b"\x40\x03x-a\x011"  # adds :authority x, x-a: 1
    again = bytes.fromhex("828684bfbe")  # :authority x, x-a: 1 (by index)
    bad = bytes.fromhex("828684bf") + b"\x40\x0aconnection\x05close"  # malformed, and indexed
    events = eng.receive_data(headers_frame(1, first) + headers_frame(3, again))
    assert [type(e).__name__ for e in events] == ["RequestReceived", "RequestReceived"]
    events = eng.receive_data(headers_frame(5, bad))
    assert events == [StreamReset(5, P, remote=False)]
    # The same bytes as stream 3's now index "connection: close".
    events = eng.receive_data(headers_frame(7, again))
    assert events == [StreamReset(7, P, remote=False)]
