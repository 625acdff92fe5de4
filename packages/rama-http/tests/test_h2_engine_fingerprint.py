"""The client role writes exactly the h2 fingerprint it is configured with.

The client's bytes go through rama's own preface recorder
(``H2PrefaceRecorder``) and the Akamai fingerprint
function, as the server does for a real client; the pseudo-header order comes
from a server-role engine decoding the same bytes.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from rama_http._h2._engine import H2Engine
from rama_http._h2._events import RequestReceived, StreamPriority
from rama_http._h2._record import H2PrefaceRecorder
from rama_http.fingerprint import AkamaiH2Fingerprint, akamai_h2_fingerprint

CHROME = "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p"
FIREFOX_LEGACY = (
    "1:65536;4:131072;5:16384|12517377|"
    "3:0:0:201,5:0:0:101,7:0:0:1,9:0:7:1,11:0:3:1,13:0:0:241|m,p,a,s"
)
SAFARI = "2:0;3:100;4:2097152;8:1;9:1|10420225|0|m,s,a,p"

_VALUES = {
    ":method": b"GET",
    ":authority": b"example.com",
    ":scheme": b"https",
    ":path": b"/",
}


def client_for(
    fp: AkamaiH2Fingerprint, *, headers_priority: StreamPriority | None = None
) -> H2Engine:
    """A client engine configured to send ``fp``."""
    eng = H2Engine(client=True, settings=list(fp.settings), initial_window_update=fp.window_update)
    eng.initiate_connection()
    for p in fp.priorities:
        eng.send_priority(p.stream_id, p.depends_on, p.weight, p.exclusive)
    headers = [(n.encode(), _VALUES[n]) for n in fp.pseudo_header_order]
    headers += [(b"user-agent", b"rama-test"), (b"accept", b"*/*")]
    eng.send_headers(1, headers, end_stream=True, priority=headers_priority)
    return eng


def recorded(data: bytes) -> AkamaiH2Fingerprint:
    """What rama's h2 server records from these client bytes."""
    rec = H2PrefaceRecorder()
    rec.feed(data)
    assert rec.done
    assert rec.record.complete
    srv = H2Engine(client=False, settings=[(3, 100), (8, 1)])
    srv.initiate_connection()
    events = srv.receive_data(data)
    req = next(e for e in events if isinstance(e, RequestReceived))
    rec.set_pseudo_header_order(tuple(n.decode() for n, _ in req.headers if n.startswith(b":")))
    return akamai_h2_fingerprint(rec.record)


def test_published_fingerprints_are_reproduced() -> None:
    for text in (CHROME, FIREFOX_LEGACY, SAFARI):
        fp = AkamaiH2Fingerprint.parse(text)
        got = recorded(client_for(fp).data_to_send())
        assert got.text == text
        assert got.hash == fp.hash


def test_headers_priority_is_recorded() -> None:
    fp = AkamaiH2Fingerprint.parse(CHROME)
    eng = client_for(fp, headers_priority=StreamPriority(0, 256, True))
    rec = H2PrefaceRecorder()
    rec.feed(eng.data_to_send())
    hp = rec.record.headers_priority
    assert hp is not None
    assert (hp.depends_on, hp.weight, hp.exclusive) == (0, 256, True)


_settings_list = st.lists(
    st.tuples(st.integers(1, 0x20), st.integers(0, 2**31 - 1)),
    min_size=0,
    max_size=8,
).map(
    # Keep the values a server accepts (the fingerprint itself is about ids and order).
    lambda pairs: [
        (k, 0 if k == 2 else (1 if k == 8 else (max(16384, min(v, 2**24 - 1)) if k == 5 else v)))
        for k, v in pairs
    ]
)
_orders = st.sampled_from(
    list(itertools.permutations([":method", ":authority", ":scheme", ":path"]))
)
_priorities = st.lists(
    st.tuples(
        st.integers(1, 200).map(lambda i: 2 * i + 1),
        st.booleans(),
        st.integers(0, 50),
        st.integers(1, 256),
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(_settings_list, st.integers(0, 2**31 - 1 - 65535), _priorities, _orders)
def test_any_configured_fingerprint_is_what_the_server_records(
    pairs: list[tuple[int, int]],
    window: int,
    prios: list[tuple[int, bool, int, int]],
    order: tuple[str, ...],
) -> None:
    pairs = [(k, v) for k, v in pairs if not (k == 4 and v > 2**31 - 1)]
    text_prios = ",".join(f"{s}:{int(e)}:{d}:{w}" for s, e, d, w in prios if s != d) or "0"
    letters = ",".join(
        {":method": "m", ":authority": "a", ":scheme": "s", ":path": "p"}[n] for n in order
    )
    text = f"{';'.join(f'{k}:{v}' for k, v in pairs)}|{window or '00'}|{text_prios}|{letters}"
    fp = AkamaiH2Fingerprint.parse(text)
    assert recorded(client_for(fp).data_to_send()).text == fp.text
