"""The h2 preface recorder and the Akamai h2 fingerprint, against published values."""

from __future__ import annotations

import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    HeadersFrame,
    PriorityFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import given
from hypothesis import strategies as st

from rama_http._h2._record import CONNECTION_PREFACE, H2PrefaceRecorder, H2Priority
from rama_http.fingerprint._akamai import AkamaiH2Fingerprint, AkamaiParseError

# Every test runs on both h2 server engines (the root conftest's h2_engine).
pytestmark = pytest.mark.usefixtures("h2_engine")

# Published by fingerprint services (browserleaks/tls.peet.ws) for Chrome 14x,
# with its MD5 "akamai_hash".
CHROME = "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p"
CHROME_HASH = "52d84b11737d980aef856699f885ca86"
# Firefox before it dropped PRIORITY frames (the Black Hat EU 2017 era tree).
FIREFOX_LEGACY = (
    "1:65536;4:131072;5:16384|12517377|"
    "3:0:0:201,5:0:0:101,7:0:0:1,9:0:7:1,11:0:3:1,13:0:0:241|m,p,a,s"
)


def _settings(pairs: list[tuple[int, int]]) -> bytes:
    # SettingsFrame keeps a dict; build the payload by hand to keep order and repeats.
    payload = b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in pairs)
    return len(payload).to_bytes(3, "big") + b"\x04\x00" + b"\x00\x00\x00\x00" + payload


def _headers(stream_id: int, names: list[str], *, split: bool = False) -> bytes:
    values = {":method": "GET", ":authority": "example.com", ":scheme": "https", ":path": "/"}
    block = hpack.Encoder().encode([(n, values[n]) for n in names] + [("accept", "*/*")])
    if not split:
        f = HeadersFrame(stream_id, block)
        f.flags.add("END_HEADERS")
        f.flags.add("END_STREAM")
        return f.serialize()
    first = HeadersFrame(stream_id, block[:3])
    first.flags.add("END_STREAM")
    rest = ContinuationFrame(stream_id, block[3:])
    rest.flags.add("END_HEADERS")
    return first.serialize() + rest.serialize()


def _preface_for(fp: AkamaiH2Fingerprint, *, split_headers: bool = False) -> bytes:
    out = CONNECTION_PREFACE + _settings(list(fp.settings))
    if fp.window_update:
        out += WindowUpdateFrame(0, fp.window_update).serialize()
    for p in fp.priorities:
        out += PriorityFrame(
            p.stream_id, depends_on=p.depends_on, stream_weight=p.weight - 1, exclusive=p.exclusive
        ).serialize()
    return out + _headers(1, list(fp.pseudo_header_order), split=split_headers)


def _record(data: bytes, chunks: list[int] | None = None) -> H2PrefaceRecorder:
    rec = H2PrefaceRecorder()
    pos = 0
    for size in chunks or []:
        rec.feed(data[pos : pos + size])
        pos += size
    rec.feed(data[pos:])
    return rec


def _as_received(rec: H2PrefaceRecorder, fp: AkamaiH2Fingerprint) -> AkamaiH2Fingerprint:
    # The pseudo-header order comes from h2's decoded HEADERS; the server feeds it in.
    rec.set_pseudo_header_order(fp.pseudo_header_order)
    return AkamaiH2Fingerprint.from_record(rec.record)


@pytest.mark.parametrize("text", [CHROME, FIREFOX_LEGACY])
def test_published_fingerprints_round_trip_through_the_wire(text: str) -> None:
    published = AkamaiH2Fingerprint.parse(text)
    rec = _record(_preface_for(published))
    assert rec.done
    assert rec.record.complete
    got = _as_received(rec, published)
    assert got.text == text
    assert got == published


def test_chrome_hash_matches_published_md5() -> None:
    rec = _record(_preface_for(AkamaiH2Fingerprint.parse(CHROME)))
    got = _as_received(rec, AkamaiH2Fingerprint.parse(CHROME))
    assert got.hash == CHROME_HASH


def test_settings_keep_wire_order_and_repeats() -> None:
    data = CONNECTION_PREFACE + _settings([(4, 1), (1, 4096), (4, 2)]) + _headers(1, [":method"])
    rec = _record(data)
    assert rec.record.settings == [(4, 1), (1, 4096), (4, 2)]
    assert rec.record.window_update is None
    assert AkamaiH2Fingerprint.from_record(rec.record).text.startswith("4:1;1:4096;4:2|00|0|")


def test_only_the_first_settings_frame_and_window_update_count() -> None:
    data = (
        CONNECTION_PREFACE
        + _settings([(3, 100)])
        + SettingsFrame(0, flags=["ACK"]).serialize()
        + WindowUpdateFrame(0, 1000).serialize()
        + WindowUpdateFrame(0, 2000).serialize()
        + _settings([(3, 7)])
        + _headers(1, [":method", ":path"])
    )
    rec = _record(data)
    assert rec.record.settings == [(3, 100)]
    assert rec.record.window_update == 1000


def test_headers_priority_and_continuation_are_followed() -> None:
    block = hpack.Encoder().encode([(":method", "GET"), (":path", "/")])
    f = HeadersFrame(1, block[:2], depends_on=0, stream_weight=255, exclusive=True)
    f.flags.add("PRIORITY")
    f.flags.add("PADDED")
    f.pad_length = 3
    c = ContinuationFrame(1, block[2:])
    c.flags.add("END_HEADERS")
    data = CONNECTION_PREFACE + _settings([]) + f.serialize()
    rec = _record(data)
    assert not rec.done
    assert rec.record.headers_priority == H2Priority(1, True, 0, 256)
    rec.feed(c.serialize() + b"trailing garbage is never parsed")
    assert rec.done
    assert rec.record.complete
    assert [fr.type for fr in rec.record.frames] == [4, 1, 9]


def test_not_http2_stops_recording_without_error() -> None:
    rec = _record(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert rec.done
    assert not rec.record.complete
    assert rec.record.settings == []


def test_recording_gives_up_after_its_byte_limit() -> None:
    rec = H2PrefaceRecorder(limit=1000)
    rec.feed(CONNECTION_PREFACE + _settings([(1, 1)]))
    rec.feed(b"\x00\x10\x00\x00\x00\x00\x00\x00\x03" + b"x" * 2000)  # a big DATA frame
    assert rec.done
    assert not rec.record.complete
    assert rec.record.settings == [(1, 1)]


def test_a_missing_window_update_is_written_00_as_in_the_paper() -> None:
    # nghttp2 sends no connection WINDOW_UPDATE; the paper writes that as "00"
    text = "3:100;4:65535|00|0|m,s,a,p"
    fp = AkamaiH2Fingerprint.parse(text)
    assert fp.window_update == 0
    assert fp.text == text
    assert AkamaiH2Fingerprint.parse("3:100;4:65535|0|0|m,s,a,p").text == text


@pytest.mark.parametrize(
    "bad", ["", "1:2|0|0", "a:b|0|0|m", "1:2|x|0|m", "1:2|0|1:0:0|m", "1:2|0|0|m,q"]
)
def test_parse_rejects_malformed_text(bad: str) -> None:
    with pytest.raises(AkamaiParseError):
        AkamaiH2Fingerprint.parse(bad)


def test_non_standard_pseudo_headers_are_left_out() -> None:
    rec = H2PrefaceRecorder()
    rec.set_pseudo_header_order((":method", ":protocol", ":scheme", ":authority", ":path"))
    rec.set_pseudo_header_order((":path",))  # only the first request counts
    assert AkamaiH2Fingerprint.from_record(rec.record).text == "|00|0|m,s,a,p"


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=30))
def test_chunking_never_changes_the_record(chunks: list[int]) -> None:
    data = _preface_for(AkamaiH2Fingerprint.parse(FIREFOX_LEGACY), split_headers=True)
    whole = _record(data).record
    assert _record(data, chunks).record == whole


@given(st.binary(max_size=400), st.lists(st.integers(min_value=1, max_value=64), max_size=10))
def test_arbitrary_bytes_never_raise(data: bytes, chunks: list[int]) -> None:
    rec = _record(CONNECTION_PREFACE + data, chunks)
    rec.set_pseudo_header_order((":method",))
    AkamaiH2Fingerprint.from_record(rec.record).text  # noqa: B018


def test_akamai_returns_the_shared_fingerprint_shape() -> None:
    from rama_http.fingerprint import akamai_h2_fingerprint
    from rama_tls import Fingerprint

    rec = _record(_preface_for(AkamaiH2Fingerprint.parse(CHROME)))
    rec.set_pseudo_header_order(AkamaiH2Fingerprint.parse(CHROME).pseudo_header_order)
    fp = akamai_h2_fingerprint(rec.record)
    assert isinstance(fp, AkamaiH2Fingerprint)
    assert isinstance(fp, Fingerprint)
    assert str(fp) == fp.text == fp.raw == CHROME
    assert fp.hash == CHROME_HASH
