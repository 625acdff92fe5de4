"""Frame parsing and serialization (RFC 9113 sections 4, 6) against hyperframe."""

from __future__ import annotations

import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hyperframe.frame import (
    Frame as HFrame,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from rama_http._h2._frames import (
    CONNECTION_PREFACE,
    ErrorCode,
    Frame,
    FrameError,
    FrameReader,
    check_frame,
    continuation_frame,
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


def _hf(f: HFrame, *flags: str) -> bytes:
    for flag in flags:
        f.flags.add(flag)
    return f.serialize()


def test_serializers_match_hyperframe() -> None:
    assert data_frame(1, b"abc", end_stream=True) == _hf(DataFrame(1, b"abc"), "END_STREAM")
    assert data_frame(3, b"abc", pad=4) == _hf(DataFrame(3, b"abc", pad_length=4), "PADDED")
    assert window_update_frame(0, 12345) == WindowUpdateFrame(0, 12345).serialize()
    assert ping_frame(b"abcdefgh") == PingFrame(0, b"abcdefgh").serialize()
    assert ping_frame(b"abcdefgh", ack=True) == _hf(PingFrame(0, b"abcdefgh"), "ACK")
    assert rst_stream_frame(5, 8) == RstStreamFrame(5, 8).serialize()
    assert goaway_frame(7, 2, b"dbg") == GoAwayFrame(0, 7, 2, b"dbg").serialize()
    assert priority_frame(3, 1, 201, True) == (
        PriorityFrame(3, depends_on=1, stream_weight=200, exclusive=True).serialize()
    )
    assert settings_frame(ack=True) == _hf(SettingsFrame(0), "ACK")
    assert (
        settings_frame([(1, 4096), (4, 65535)]) == SettingsFrame(0, {1: 4096, 4: 65535}).serialize()
    )
    assert continuation_frame(1, b"xy", end_headers=True) == _hf(
        ContinuationFrame(1, b"xy"), "END_HEADERS"
    )
    assert header_block_frames(1, b"blk", 16384, end_stream=True) == _hf(
        HeadersFrame(1, b"blk"), "END_HEADERS", "END_STREAM"
    )
    assert header_block_frames(1, b"blk", 16384, priority=(0, 256, True), pad=2) == _hf(
        HeadersFrame(1, b"blk", pad_length=2, depends_on=0, stream_weight=255, exclusive=True),
        "END_HEADERS",
        "PRIORITY",
        "PADDED",
    )


def test_settings_keep_order_and_repeats() -> None:
    pairs = [(4, 1), (1, 2), (4, 3), (0x1234, 9)]
    frame_bytes = settings_frame(pairs)
    (f,) = FrameReader().feed(frame_bytes)
    assert parse_settings(f.payload) == pairs
    assert parse_settings(memoryview(f.payload)) == pairs


def test_header_block_split_into_continuation() -> None:
    blk = bytes(range(256)) * 130
    frames = FrameReader().feed(header_block_frames(9, blk, 16384, priority=(0, 16, False)))
    assert [(f.type, f.flags) for f in frames] == [(1, 0x20), (9, 0), (9, 4)]
    assert frames[0].payload[5:] + frames[1].payload + frames[2].payload == blk
    assert all(f.length <= 16384 for f in frames)


def test_parsers() -> None:
    assert parse_priority(bytes.fromhex("80000003c8")) == (3, 201, True)
    assert parse_goaway(GoAwayFrame(0, 5, 11, b"x").serialize()[9:]) == (5, 11, b"x")
    assert strip_padding(b"\x02abcxx", 0x8) == (1, 4)
    assert strip_padding(b"abc", 0) == (0, 3)
    assert strip_padding(b"\x00" + b"P" * 5 + b"blk", 0x8 | 0x20, extra=5) == (6, 9)
    with pytest.raises(FrameError) as e:
        strip_padding(b"\x05abc", 0x8)
    assert e.value.code == ErrorCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    ("ftype", "flags", "sid", "length", "expected"),
    [
        (0, 0, 0, 1, (1, True)),
        (1, 4, 0, 1, (1, True)),
        (9, 4, 0, 0, (1, True)),
        (2, 0, 0, 5, (1, True)),
        (2, 0, 1, 4, (6, False)),
        (3, 0, 0, 4, (1, True)),
        (3, 0, 1, 5, (6, True)),
        (4, 0, 1, 0, (1, True)),
        (4, 1, 0, 6, (6, True)),
        (4, 0, 0, 7, (6, True)),
        (5, 4, 0, 4, (1, True)),
        (5, 8, 1, 4, (6, True)),
        (6, 0, 1, 8, (1, True)),
        (6, 0, 0, 9, (6, True)),
        (7, 0, 1, 8, (1, True)),
        (7, 0, 0, 7, (6, True)),
        (8, 0, 0, 5, (6, True)),
        (0, 0, 1, 10, None),
        (4, 0, 0, 12, None),
        (8, 0, 7, 4, None),
        (0xAB, 0xFF, 0, 3, None),  # unknown types are never an error
    ],
)
def test_check_frame(
    ftype: int, flags: int, sid: int, length: int, expected: tuple[int, bool] | None
) -> None:
    got = check_frame(ftype, flags, sid, length)
    assert (None if got is None else (got[0], got[2])) == expected


def test_reader_preface_and_limits() -> None:
    reader = FrameReader(preface=True)
    data = CONNECTION_PREFACE + settings_frame([(3, 1)]) + ping_frame(b"12345678")
    out: list[Frame] = []
    for i in range(len(data)):
        out += reader.feed(data[i : i + 1])
    assert [f.type for f in out] == [4, 6]
    assert reader.buffered == 0
    with pytest.raises(FrameError):
        FrameReader(preface=True).feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(FrameError) as e:
        FrameReader().feed(data_frame(1, b"x" * 16385))
    assert e.value.code == ErrorCode.FRAME_SIZE_ERROR


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1, 2, 3, 6, 8, 9, 0x30]),
            st.integers(0, 255),
            st.integers(1, 2**31 - 1),
            st.binary(max_size=300),
        ),
        max_size=10,
    ),
    st.data(),
)
def test_reader_round_trips_any_chunking(
    raw: list[tuple[int, int, int, bytes]], data: st.DataObject
) -> None:
    frames = []
    for ftype, flags, sid, payload in raw:
        if ftype == 2:
            payload = payload[:5].ljust(5, b"\x00")
        elif ftype in (3, 8):
            payload = payload[:4].ljust(4, b"\x00")
        elif ftype == 6:
            payload, sid = payload[:8].ljust(8, b"\x00"), 0
        frames.append(Frame(ftype, flags, sid, payload))
    wire = b"".join(
        len(f.payload).to_bytes(3, "big")
        + bytes((f.type, f.flags))
        + f.stream_id.to_bytes(4, "big")
        + f.payload
        for f in frames
    )
    reader = FrameReader()
    got: list[Frame] = []
    pos = 0
    while pos < len(wire):
        n = data.draw(st.integers(1, 64))
        got += reader.feed(wire[pos : pos + n])
        pos += n
    assert got == frames
