"""Every frame type, cut at every byte boundary or fed byte by byte, gives the same events."""

from __future__ import annotations

import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from rama_http_h2_engine_peer import GET, feed

from rama_http._h2._engine import H2Engine
from rama_http._h2._events import Event
from rama_http._h2._frames import CONNECTION_PREFACE, frame


def _client_bytes() -> bytes:
    """A client's side of a connection with every frame type a server may receive."""
    enc = hpack.Encoder()
    out = CONNECTION_PREFACE
    out += SettingsFrame(0, {1: 8192, 4: 1 << 20, 8: 1}).serialize()
    out += WindowUpdateFrame(0, 1 << 20).serialize()
    out += PriorityFrame(3, depends_on=0, stream_weight=200, exclusive=True).serialize()
    blk = enc.encode([*GET, (b"content-length", b"10"), (b"x-long", b"v" * 40)])
    h = HeadersFrame(1, blk[:10], pad_length=3, depends_on=0, stream_weight=15)
    h.flags.add("PADDED")
    h.flags.add("PRIORITY")
    out += h.serialize()
    c = ContinuationFrame(1, blk[10:])
    c.flags.add("END_HEADERS")
    out += c.serialize()
    d = DataFrame(1, b"hello", pad_length=7)
    d.flags.add("PADDED")
    out += d.serialize()
    out += DataFrame(1, b"world").serialize()
    t = HeadersFrame(1, enc.encode([(b"x-trailer", b"1")]))
    t.flags.add("END_HEADERS")
    t.flags.add("END_STREAM")
    out += t.serialize()
    p = PingFrame(0, b"abcdefgh")
    out += p.serialize()
    ack = PingFrame(0, b"12345678")
    ack.flags.add("ACK")
    out += ack.serialize()
    out += frame(0x42, 0x5, 0, b"unknown payload")
    s = HeadersFrame(3, enc.encode(GET))
    s.flags.add("END_HEADERS")
    out += s.serialize()
    out += RstStreamFrame(3, 8).serialize()
    out += WindowUpdateFrame(1, 100).serialize()  # half-closed (remote): still ours to send on
    out += SettingsFrame(0, flags=["ACK"]).serialize()
    out += GoAwayFrame(0, last_stream_id=0, error_code=0, additional_data=b"bye").serialize()
    return out


def _server_bytes() -> bytes:
    """A server's side with every frame type a client (push enabled) may receive."""
    enc = hpack.Encoder()
    out = SettingsFrame(0, {3: 100, 4: 1 << 16, 5: 1 << 15}).serialize()
    out += SettingsFrame(0, flags=["ACK"]).serialize()
    out += WindowUpdateFrame(0, 1000).serialize()
    out += WindowUpdateFrame(1, 1000).serialize()
    pp = PushPromiseFrame(1, promised_stream_id=2, data=enc.encode(GET), pad_length=2)
    pp.flags.add("END_HEADERS")
    pp.flags.add("PADDED")
    out += pp.serialize()
    info = HeadersFrame(1, enc.encode([(b":status", b"103"), (b"link", b"</a>")]))
    info.flags.add("END_HEADERS")
    out += info.serialize()
    blk = enc.encode([(b":status", b"200"), (b"content-type", b"text/plain"), (b"x", b"y" * 30)])
    h = HeadersFrame(1, blk[:5])
    out += h.serialize()
    c = ContinuationFrame(1, blk[5:])
    c.flags.add("END_HEADERS")
    out += c.serialize()
    out += DataFrame(1, b"abc").serialize()
    d = DataFrame(1, b"def", pad_length=1)
    d.flags.add("PADDED")
    d.flags.add("END_STREAM")
    out += d.serialize()
    out += PriorityFrame(5, depends_on=1, stream_weight=1).serialize()
    out += PingFrame(0, b"pingpong").serialize()
    out += RstStreamFrame(3, 2).serialize()
    out += frame(0xFA, 0, 7, b"x")
    out += GoAwayFrame(0, last_stream_id=2, error_code=0).serialize()
    return out


def _server() -> H2Engine:
    eng = H2Engine(client=False, settings=[(3, 10), (8, 1)])
    eng.initiate_connection()
    return eng


def _client() -> H2Engine:
    eng = H2Engine(client=True, settings=[(2, 1)])
    eng.initiate_connection()
    eng.send_headers(1, GET, end_stream=True)
    eng.send_headers(3, GET, end_stream=True)
    return eng


def _run(
    make: type[H2Engine] | object, data: bytes, chunks: list[int] | None
) -> tuple[list[Event], bytes]:
    eng = make()  # type: ignore[operator]
    eng.data_to_send()
    events = feed(eng, data, chunks)
    return events, eng.data_to_send()


CASES = {"server": (_server, _client_bytes()), "client": (_client, _server_bytes())}


@pytest.mark.parametrize("role", sorted(CASES))
def test_every_byte_boundary_gives_the_same_events(role: str) -> None:
    make, data = CASES[role]
    whole, sent = _run(make, data, None)
    assert not any(type(e).__name__ == "ConnectionFailed" for e in whole), whole
    assert len(whole) > 12
    for cut in range(1, len(data)):
        events, out = _run(make, data, [cut])
        assert events == whole, cut
        assert out == sent, cut


@pytest.mark.parametrize("role", sorted(CASES))
def test_one_byte_at_a_time(role: str) -> None:
    make, data = CASES[role]
    whole, sent = _run(make, data, None)
    events, out = _run(make, data, [1] * len(data))
    assert events == whole
    assert out == sent


@pytest.mark.parametrize("role", sorted(CASES))
def test_every_frame_type_is_reported(role: str) -> None:
    make, data = CASES[role]
    names = {type(e).__name__ for e in _run(make, data, None)[0]}
    common = {
        "RemoteSettingsChanged",
        "SettingsAcknowledged",
        "WindowUpdated",
        "PriorityReceived",
        "DataReceived",
        "PingReceived",
        "StreamReset",
        "UnknownFrameReceived",
        "ConnectionTerminated",
    }
    extra = (
        {"RequestReceived", "TrailersReceived", "PingAckReceived"}
        if role == "server"
        else {"PushPromiseReceived", "InformationalResponseReceived", "ResponseReceived"}
    )
    assert common | extra <= names
