"""The engine against the ``h2`` library as an oracle.

Valid frame sequences (written by an ``h2`` peer driven by hypothesis) must
give both engines the same events once mapped to a common form; invalid ones
the same error class and code, except where RFC 9113 asks for something
``h2`` does not do (listed in :data:`KNOWN_DIFFERENCES`, each checked against
``h2`` so the list stays true).
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rama_http_h2_engine_peer import outcome, server
from test_h2_engine_errors import SERVER_CASES

from rama_http._h2 import _events as ev
from rama_http._h2._engine import H2Engine
from rama_http._h2._frames import CONNECTION_PREFACE, FrameReader, settings_frame

Norm = list[tuple[Any, ...]]


def _norm_h2(events: list[h2.events.Event]) -> Norm:
    out: Norm = []
    # h2 reports a HEADERS frame's priority twice: as an attribute and as an event.
    attached = {id(getattr(e, "priority_updated", None)) for e in events}
    for e in events:
        if isinstance(
            e,
            (
                h2.events.RequestReceived,
                h2.events.ResponseReceived,
                h2.events.TrailersReceived,
                h2.events.InformationalResponseReceived,
            ),
        ):
            out.append(("headers", e.stream_id, [tuple(h) for h in e.headers]))
            if getattr(e, "priority_updated", None) is not None:
                p = e.priority_updated
                out.append(("priority", p.stream_id, p.depends_on, p.weight, p.exclusive))
        elif isinstance(e, h2.events.DataReceived):
            out.append(("data", e.stream_id, e.data, e.flow_controlled_length))
        elif isinstance(e, h2.events.StreamEnded):
            out.append(("end", e.stream_id))
        elif isinstance(e, h2.events.StreamReset):
            out.append(("reset", e.stream_id, int(e.error_code), e.remote_reset))
        elif isinstance(e, h2.events.WindowUpdated):
            out.append(("window", e.stream_id, e.delta))
        elif isinstance(e, h2.events.RemoteSettingsChanged):
            changed = {int(k): v.new_value for k, v in e.changed_settings.items()}
            out.append(("settings", sorted(changed.items())))
        elif isinstance(e, h2.events.SettingsAcknowledged):
            out.append(("settings_ack",))
        elif isinstance(e, h2.events.PingReceived):
            out.append(("ping", e.ping_data))
        elif isinstance(e, h2.events.PingAckReceived):
            out.append(("ping_ack", e.ping_data))
        elif isinstance(e, h2.events.PriorityUpdated):
            if id(e) not in attached:
                out.append(("priority", e.stream_id, e.depends_on, e.weight, e.exclusive))
        elif isinstance(e, h2.events.ConnectionTerminated):
            out.append(("goaway", int(e.error_code), e.last_stream_id, e.additional_data or b""))
        elif isinstance(e, h2.events.UnknownFrameReceived):
            out.append(("unknown",))
        else:  # pragma: no cover - an event the mapping does not know yet
            raise AssertionError(f"unmapped h2 event {e!r}")
    return out


def _norm_ours(events: list[ev.Event]) -> Norm:
    out: Norm = []
    for e in events:
        if isinstance(
            e,
            (
                ev.RequestReceived,
                ev.ResponseReceived,
                ev.TrailersReceived,
                ev.InformationalResponseReceived,
            ),
        ):
            out.append(("headers", e.stream_id, list(e.headers)))
            p = getattr(e, "priority", None)
            if p is not None:
                out.append(("priority", e.stream_id, p.depends_on, p.weight, p.exclusive))
            if getattr(e, "end_stream", False):
                out.append(("end", e.stream_id))
        elif isinstance(e, ev.DataReceived):
            out.append(("data", e.stream_id, e.data, e.flow_controlled_length))
            if e.end_stream:
                out.append(("end", e.stream_id))
        elif isinstance(e, ev.StreamReset):
            out.append(("reset", e.stream_id, e.error_code, e.remote))
        elif isinstance(e, ev.WindowUpdated):
            out.append(("window", e.stream_id, e.delta))
        elif isinstance(e, ev.RemoteSettingsChanged):
            out.append(("settings", sorted(dict(e.settings).items())))
        elif isinstance(e, ev.SettingsAcknowledged):
            out.append(("settings_ack",))
        elif isinstance(e, ev.PingReceived):
            out.append(("ping", e.data))
        elif isinstance(e, ev.PingAckReceived):
            out.append(("ping_ack", e.data))
        elif isinstance(e, ev.PriorityReceived):
            p = e.priority
            out.append(("priority", e.stream_id, p.depends_on, p.weight, p.exclusive))
        elif isinstance(e, ev.ConnectionTerminated):
            out.append(("goaway", e.error_code, e.last_stream_id, e.additional_data))
        elif isinstance(e, ev.UnknownFrameReceived):
            out.append(("unknown",))
        else:
            raise AssertionError(f"unexpected event {e!r}")
    return out


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_value = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0, max_size=30
)
_extra = st.lists(
    st.tuples(_token.filter(lambda n: n not in {"te", "connection", "upgrade", "host"}), _value),
    max_size=5,
)


def _request(method: str, path: str, extra: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    base = [
        (":method", method),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", path),
    ]
    return [(n.encode(), v.encode()) for n, v in base + extra]


def _drive_client(data: st.DataObject, *, may_close: bool = True) -> list[bytes]:
    """An h2 client doing random valid things; returns what it sent, in write batches."""
    c = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    c.initiate_connection()
    chunks = [c.data_to_send()]
    open_local: list[int] = []  # streams we may still send on
    opened: list[int] = []
    for _ in range(data.draw(st.integers(1, 25), label="actions")):
        action = data.draw(
            st.sampled_from(
                ["open", "open", "data", "trailers", "reset", "ping", "settings", "window", "prio"]
            )
        )
        if action == "open":
            sid = c.get_next_available_stream_id()
            end = data.draw(st.booleans())
            kw: dict[str, Any] = {}
            if data.draw(st.booleans()):
                kw = {
                    "priority_weight": data.draw(st.integers(1, 256)),
                    "priority_depends_on": data.draw(st.sampled_from([0, *opened])),
                    "priority_exclusive": data.draw(st.booleans()),
                }
            method = data.draw(st.sampled_from(["GET", "POST", "PUT"]))
            path = "/" + data.draw(_token)
            c.send_headers(sid, _request(method, path, data.draw(_extra)), end_stream=end, **kw)
            opened.append(sid)
            if not end:
                open_local.append(sid)
        elif action == "data" and open_local:
            sid = data.draw(st.sampled_from(open_local))
            room = min(c.local_flow_control_window(sid), 3000)
            size = data.draw(st.integers(0, room))
            end = data.draw(st.booleans())
            pad = data.draw(st.sampled_from([None, 0, 5]))
            c.send_data(
                sid,
                bytes(range(256)) * (size // 256) + b"x" * (size % 256),
                end_stream=end,
                pad_length=pad,
            )
            if end:
                open_local.remove(sid)
        elif action == "trailers" and open_local:
            sid = data.draw(st.sampled_from(open_local))
            c.send_headers(sid, [(b"x-trailer", data.draw(_value).encode())], end_stream=True)
            open_local.remove(sid)
        elif action == "reset" and opened:
            sid = data.draw(st.sampled_from(opened))
            if sid in open_local:
                open_local.remove(sid)
            try:
                c.reset_stream(sid, data.draw(st.sampled_from([0, 2, 8])))
            except h2.exceptions.StreamClosedError:
                pass
            else:
                opened.remove(sid)
        elif action == "ping":
            c.ping(data.draw(st.binary(min_size=8, max_size=8)))
        elif action == "settings":
            new = data.draw(
                st.dictionaries(
                    st.sampled_from([1, 2, 3, 4, 5, 6]),
                    st.integers(0, 70000),
                    max_size=4,
                )
            )
            if 5 in new:
                new[5] = max(16384, new[5])
            if 2 in new:
                new[2] = new[2] & 1
            c.update_settings(new)
        elif action == "window":
            target = data.draw(st.sampled_from([None, *open_local]))
            c.increment_flow_control_window(data.draw(st.integers(1, 100000)), stream_id=target)
        elif action == "prio" and opened:
            sid = data.draw(st.sampled_from([*opened, max(opened) + 2]))
            dep = data.draw(st.sampled_from([0, *opened]))
            if dep != sid:
                c.prioritize(sid, weight=data.draw(st.integers(1, 256)), depends_on=dep)
        chunk = c.data_to_send()
        if chunk:
            chunks.append(chunk)
    if may_close and data.draw(st.booleans()):
        c.close_connection(error_code=0)
        chunks.append(c.data_to_send())
    return chunks


def _h2_server() -> h2.connection.H2Connection:
    s = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    s.local_settings.max_concurrent_streams = 100
    s.initiate_connection()
    s.data_to_send()
    return s


def _cut(data: st.DataObject, stream: bytes) -> list[bytes]:
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=6)))
    pieces, last = [], 0
    for c in cuts:
        pieces.append(stream[last:c])
        last = c
    pieces.append(stream[last:])
    return pieces


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_valid_client_sequences_give_the_events_h2_gives(data: st.DataObject) -> None:
    stream = b"".join(_drive_client(data))
    ours = H2Engine(client=False, settings=[(3, 100)], auto_window_update=False)
    ours.initiate_connection()
    ref = _h2_server()
    got: list[ev.Event] = []
    want: list[h2.events.Event] = []
    for piece in _cut(data, stream):
        got += ours.receive_data(piece)
        want += ref.receive_data(piece)
    assert not ours.closed, got
    assert _norm_ours(got) == _norm_h2(want)


def _drive_server_for(requests: int, data: st.DataObject) -> tuple[list[bytes], bytes]:
    """An h2 client sends ``requests`` GETs; an h2 server answers at random.

    Returns the client's bytes (for our client engine, which must send the same
    stream ids) and the server's bytes.
    """
    c = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    c.initiate_connection()
    for i in range(requests):
        c.send_headers(1 + 2 * i, _request("GET", f"/{i}", []), end_stream=True)
    s = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    s.initiate_connection()
    s.receive_data(c.data_to_send())
    out: list[bytes] = [s.data_to_send()]
    pending = list(range(1, 2 * requests, 2))
    started: set[int] = set()
    for _ in range(data.draw(st.integers(0, 30), label="steps")):
        if not pending:
            break
        sid = data.draw(st.sampled_from(pending))
        action = data.draw(st.sampled_from(["info", "head", "data", "trailers", "reset", "ping"]))
        if action == "ping":
            s.ping(b"12345678")
        elif action == "reset":
            s.reset_stream(sid, 2)
            pending.remove(sid)
        elif sid not in started:
            if action == "info":
                s.send_headers(sid, [(b":status", b"103"), (b"link", b"</x>")])
            else:
                end = data.draw(st.booleans())
                s.send_headers(
                    sid, [(b":status", b"200"), (b"x-n", str(sid).encode())], end_stream=end
                )
                started.add(sid)
                if end:
                    pending.remove(sid)
        elif action == "trailers":
            s.send_headers(sid, [(b"x-t", b"1")], end_stream=True)
            pending.remove(sid)
        else:
            end = data.draw(st.booleans())
            s.send_data(sid, b"d" * data.draw(st.integers(0, 500)), end_stream=end)
            if end:
                pending.remove(sid)
        out.append(s.data_to_send())
    for sid in pending:
        if sid in started:
            s.send_data(sid, b"", end_stream=True)
        else:
            s.send_headers(sid, [(b":status", b"204")], end_stream=True)
    out.append(s.data_to_send())
    return out, b""


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
)
@given(st.integers(1, 5), st.data())
def test_valid_server_sequences_give_the_client_the_events_h2_gives(
    requests: int, data: st.DataObject
) -> None:
    chunks, _ = _drive_server_for(requests, data)
    stream = b"".join(chunks)
    ours = H2Engine(client=True, settings=[(2, 0)], auto_window_update=False)
    ours.initiate_connection()
    ref = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    ref.initiate_connection()
    ref.update_settings({2: 0})
    for i in range(requests):
        hdrs = _request("GET", f"/{i}", [])
        ours.send_headers(1 + 2 * i, hdrs, end_stream=True)
        ref.send_headers(1 + 2 * i, hdrs, end_stream=True)
    got: list[ev.Event] = []
    want: list[h2.events.Event] = []
    for piece in _cut(data, stream):
        got += ours.receive_data(piece)
        want += ref.receive_data(piece)
    assert not ours.closed, got
    assert _norm_ours(got) == _norm_h2(want)


def _h2_outcome(data: bytes) -> tuple[str, int] | None:
    s = _h2_server()
    s.receive_data(CONNECTION_PREFACE + settings_frame([]))
    s.data_to_send()
    try:
        s.receive_data(data)
    except h2.exceptions.ProtocolError:
        pass
    for f in FrameReader(max_frame_size=(1 << 24) - 1).feed(s.data_to_send()):
        if f.type == 7:
            return "goaway", int.from_bytes(f.payload[4:8], "big")
        if f.type == 3:
            return "rst", int.from_bytes(f.payload[:4], "big")
    return None


# Where RFC 9113 asks for something else than h2 does: h2's outcome, and why ours differs.
_MALFORMED = "RFC 9113 8.1.1: a malformed message is a stream error; h2 ends the connection"
KNOWN_DIFFERENCES: dict[str, tuple[tuple[str, int] | None, str]] = {
    "bad-hpack-index": (("goaway", 1), "RFC 9113 4.3: COMPRESSION_ERROR"),
    "bad-hpack-huffman": (("goaway", 1), "RFC 9113 4.3: COMPRESSION_ERROR"),
    "settings-ack-with-payload": (("goaway", 1), "RFC 9113 6.5: FRAME_SIZE_ERROR"),
    "connect-protocol-1-then-0": (None, "RFC 8441 3: may not go from 1 to 0"),
    "content-length-but-end-stream": (None, "RFC 9113 8.1.1: content-length 3, no DATA"),
    "continuation-flood-empty": (("goaway", 1), "a flood, ENHANCE_YOUR_CALM"),
    "continuation-flood-size": (None, "a flood, ENHANCE_YOUR_CALM (h2 buffers without bound)"),
    "data-over-stream-window": (("goaway", 3), "RFC 9113 6.9: a stream window is a stream error"),
    "priority-length-4": (("goaway", 6), "RFC 9113 6.3: a stream error"),
    "priority-self-dependency": (("goaway", 1), "RFC 9113 5.3.1: a stream error"),
    "window-update-0-stream": (("goaway", 1), "RFC 9113 6.9: a stream error"),
    "content-length-data-longer": (("goaway", 1), _MALFORMED),
    "content-length-data-shorter": (("goaway", 1), _MALFORMED),
}
for _name in (
    "connect-with-path",
    "connect-without-authority",
    "connection-header",
    "content-length-not-a-number",
    "content-length-two-values",
    "duplicate-pseudo",
    "empty-name",
    "empty-path",
    "host-differs-from-authority",
    "keep-alive-header",
    "missing-method",
    "missing-path",
    "missing-scheme",
    "name-with-space",
    "protocol-without-setting",
    "pseudo-after-regular",
    "pseudo-in-trailers",
    "status-in-request",
    "te-not-trailers",
    "trailers-without-end-stream",
    "transfer-encoding",
    "unknown-pseudo",
    "upgrade-header",
    "uppercase-name",
    "value-leading-space",
    "value-with-crlf",
    "value-with-nul",
):
    KNOWN_DIFFERENCES[_name] = (("goaway", 1), _MALFORMED)


@pytest.mark.parametrize(
    ("name", "data"), [(c[0], c[1]) for c in SERVER_CASES], ids=[c[0] for c in SERVER_CASES]
)
def test_invalid_sequences_end_like_h2_or_as_rfc_9113_says(name: str, data: bytes) -> None:
    eng = server(auto_window_update=False, initial_window_update=1 << 20)
    eng.receive_data(data)
    ours = outcome(eng)
    theirs = _h2_outcome(data)
    if name in KNOWN_DIFFERENCES:
        expected_h2, _why = KNOWN_DIFFERENCES[name]
        assert theirs == expected_h2, "h2 changed: update KNOWN_DIFFERENCES"
        assert ours != theirs
    else:
        assert ours == theirs


# Connection errors that do not depend on which streams exist, to append to any valid prefix.
_ANYWHERE = [
    "data-on-stream-0",
    "headers-on-stream-0",
    "frame-over-max-size",
    "settings-length-not-6n",
    "settings-on-stream",
    "initial-window-too-big",
    "max-frame-size-too-small",
    "max-frame-size-too-big",
    "enable-push-2",
    "enable-connect-protocol-2",
    "ping-length-7",
    "ping-on-stream",
    "window-update-length-3",
    "window-update-0-connection",
    "window-update-overflow-connection",
    "rst-on-stream-0",
    "rst-length-3",
    "priority-on-stream-0",
    "goaway-on-stream",
    "goaway-short",
    # Not "continuation-without-headers": on a stream the client reset, h2 ignores
    # it; RFC 9113 6.10 makes it a connection error whatever the stream.
]
_CASES = {c[0]: c[1] for c in SERVER_CASES}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data(), st.sampled_from(_ANYWHERE))
def test_valid_prefix_then_an_invalid_frame_ends_like_h2(data: st.DataObject, case: str) -> None:
    # h2 refuses every frame after the peer's GOAWAY: no GOAWAY in the prefix.
    prefix = b"".join(_drive_client(data, may_close=False))
    ours = H2Engine(client=False, settings=[(3, 100)], auto_window_update=False)
    ours.initiate_connection()
    ref = _h2_server()
    ours.receive_data(prefix)
    ref.receive_data(prefix)
    ours.data_to_send()
    ref.data_to_send()
    bad = _CASES[case]
    ours.receive_data(bad)
    try:
        ref.receive_data(bad)
    except h2.exceptions.ProtocolError:
        pass
    frames = FrameReader(max_frame_size=(1 << 24) - 1).feed(ref.data_to_send())
    theirs = [("goaway", int.from_bytes(f.payload[4:8], "big")) for f in frames if f.type == 7]
    assert ours.closed
    assert theirs == [("goaway", ours.error_code)]
