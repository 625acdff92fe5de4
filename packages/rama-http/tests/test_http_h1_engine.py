"""The sans-IO HTTP/1.1 engines, held to one contract (no sockets).

Every engine (h11, fast, httptools) must turn the same bytes into the same
events however the bytes are split, reject malformed input with a
ProtocolError only, and serialize responses that a strict client parser (h11)
accepts.
"""

from __future__ import annotations

import itertools
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rama_http._errors import ProtocolError
from rama_http.server import ServerConfig, available_engines
from rama_http.server._h1_engine import (
    NEED_DATA,
    PAUSED,
    BodyData,
    BodyEnd,
    H1Engine,
    RequestHead,
)
from rama_http.server._h1_engines import make_engine

ENGINES = available_engines()
engines = pytest.mark.parametrize("name", ENGINES)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def new(name: str, **limits: Any) -> H1Engine:
    return make_engine(name, ServerConfig(**limits))  # type: ignore[arg-type]


def drive(
    engine: H1Engine, pieces: list[bytes], *, eof: bool = False, out: list[Any] | None = None
) -> list[Any]:
    """Feed pieces one at a time; collect events of every request until input runs out.

    Returns ``[(head, body, trailers), ...]`` (also appended to ``out``, so
    requests before an error can be seen); cycles are restarted between requests.
    """
    if out is None:
        out = []
    feed = list(pieces)
    head: RequestHead | None = None
    body = b""
    trailers = None
    for _ in range(100_000):
        ev = engine.next_event()
        if ev is NEED_DATA:
            if not feed:
                if eof:
                    engine.feed_eof()
                    eof = False
                    continue
                break
            engine.feed(feed.pop(0))
            continue
        if isinstance(ev, RequestHead):
            head, body, trailers = ev, b"", None
            if not ev.has_body:
                out.append((head, body, trailers))
                if not _next_cycle(engine):
                    break
                head = None
            continue
        if isinstance(ev, BodyData):
            body += ev.data
            continue
        if isinstance(ev, BodyEnd):
            trailers = ev.trailers
            out.append((head, body, trailers))
            if not _next_cycle(engine):
                break
            head = None
            continue
        assert ev is PAUSED
        break
    else:  # pragma: no cover - the loop is bounded so a bug cannot hang the suite
        pytest.fail("engine did not settle")
    return out


def _next_cycle(engine: H1Engine) -> bool:
    engine.response(200, "OK", [], b"")
    if not engine.keep_alive:
        return False
    engine.start_next_cycle()
    return True


def summary(results: list[Any]) -> list[Any]:
    return [
        (h.method, h.target, str(h.version), h.headers, body, trailers)
        for h, body, trailers in results
    ]


PIPELINE = (
    b"GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Custom-Header: One\r\nx-lower: two\r\n\r\n"
    b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world"
    b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4;ext=y\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Trailer: t\r\n\r\n"
    b"GET /d HTTP/1.0\r\n\r\n"
)
EXPECTED = [
    (
        "GET",
        "/a?x=1",
        "HTTP/1.1",
        [("Host", "example.com"), ("X-Custom-Header", "One"), ("x-lower", "two")],
        b"",
        None,
    ),
    ("POST", "/b", "HTTP/1.1", [("Host", "h"), ("Content-Length", "11")], b"hello world", None),
    (
        "PUT",
        "/c",
        "HTTP/1.1",
        [("Host", "h"), ("Transfer-Encoding", "chunked")],
        b"abcdefg",
        [("X-Trailer", "t")],
    ),
    ("GET", "/d", "HTTP/1.0", [], b"", None),
]


@engines
def test_pipeline_in_one_piece(name: str) -> None:
    assert summary(drive(new(name), [PIPELINE])) == EXPECTED


@engines
def test_pipeline_byte_by_byte(name: str) -> None:
    pieces = [PIPELINE[i : i + 1] for i in range(len(PIPELINE))]
    assert summary(drive(new(name), pieces)) == EXPECTED


@engines
@FUZZ
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(PIPELINE) - 1), max_size=12))
def test_pipeline_split_anywhere(name: str, cuts: list[int]) -> None:
    points = [0, *sorted(set(cuts)), len(PIPELINE)]
    pieces = [PIPELINE[a:b] for a, b in itertools.pairwise(points)]
    assert summary(drive(new(name), pieces)) == EXPECTED


_tchar = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_name = st.text(_tchar, min_size=1, max_size=16).filter(
    lambda n: n.lower() not in ("host", "content-length", "transfer-encoding", "connection",
                                "expect", "upgrade", "te", "trailer")
)  # fmt: skip
_value = st.text(st.sampled_from("abcxyz0123456789 ;=,./:"), max_size=30).map(str.strip)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, tuple[Any, ...]]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    target = "/" + draw(st.text(st.sampled_from("abc123/%?=&"), max_size=30))
    headers = [("Host", "h.example"), *draw(st.lists(st.tuples(_name, _value), max_size=8))]
    body = draw(st.binary(max_size=300))
    chunked = draw(st.booleans()) and bool(body)
    raw = f"{method} {target} HTTP/1.1\r\n".encode()
    sent = list(headers)
    if chunked:
        sent.append(("Transfer-Encoding", "chunked"))
    elif body:
        sent.append(("Content-Length", str(len(body))))
    raw += b"".join(f"{n}: {v}\r\n".encode() for n, v in sent) + b"\r\n"
    if chunked:
        sizes = draw(st.lists(st.integers(1, 64), min_size=1, max_size=8))
        rest, i = body, 0
        while rest:
            n = sizes[i % len(sizes)]
            raw += b"%x\r\n%b\r\n" % (len(rest[:n]), rest[:n])
            rest, i = rest[n:], i + 1
        raw += b"0\r\n\r\n"
    else:
        raw += body
    return raw, (method, target, "HTTP/1.1", sent, body, None)


@engines
@FUZZ
@given(reqs=st.lists(requests(), min_size=1, max_size=4), step=st.integers(1, 50))
def test_generated_requests_round_trip(
    name: str, reqs: list[tuple[bytes, tuple[Any, ...]]], step: int
) -> None:
    data = b"".join(r for r, _ in reqs)
    pieces = [data[i : i + step] for i in range(0, len(data), step)]
    assert summary(drive(new(name), pieces)) == [e for _, e in reqs]


@engines
@FUZZ
@given(junk=st.binary(max_size=400), prefix=st.sampled_from([b"", b"GET / HTTP/1.1\r\n"]))
def test_garbage_only_raises_protocol_error(name: str, junk: bytes, prefix: bytes) -> None:
    engine = new(name, max_request_line=256, max_header_size=1024, max_headers=10)
    try:
        drive(engine, [prefix + junk], eof=True)
    except ProtocolError as e:
        assert 400 <= e.status < 600


_CHUNKED = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"


@engines
@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
        (b"GET /" + b"a" * 300, 414),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * 2000, 431),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * 2000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"A: b\r\n" * 20 + b"\r\n", 431),
        (b"GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
        (_CHUNKED + b"fffffffffffffffffffff\r\n", 400),
        (_CHUNKED + b"-1\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX\x00: v\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", 400),
    ],
)  # fmt: skip
def test_limits_and_rejections(name: str, raw: bytes, status: int) -> None:
    engine = new(name, max_request_line=256, max_header_size=1024, max_headers=10)
    with pytest.raises(ProtocolError) as info:
        drive(engine, [raw])
    assert info.value.status == status


# -- one framing policy for every engine -----------------------------------------------
#
# (raw bytes, expected): expected is the list of complete requests as
# (target, body, trailers) and how the connection ends: "open" (waiting for
# the next request), "close", or the error status. Every engine runs every
# row, fed whole and split at every point. The policy is written down in
# rama_http.server._h1_engine's docstring.

_TE = b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
_G = b"GET / HTTP/1.1\r\nHost: h\r\n"
_ONE = [("/", b"", None)]


def _cl(value: bytes) -> bytes:
    return b"POST /l HTTP/1.1\r\nHost: h\r\nContent-Length: " + value + b"\r\n\r\nhello"


def _te(value: bytes) -> bytes:
    return b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: " + value + b"\r\n\r\n0\r\n\r\n"


POLICY: list[tuple[str, bytes, Any]] = [
    # obs-fold is rejected in every field, framing fields included
    ("obs-fold", _G + b"X: a\r\n b\r\n\r\n", 400),
    ("obs-fold-tab", _G + b"X: a\r\n\tb\r\n\r\n", 400),
    ("obs-fold-te", b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 400),
    # lines end with CRLF; a bare LF anywhere in a head, chunk line or trailer is rejected
    ("bare-lf", b"GET / HTTP/1.1\nHost: h\n\n", 400),
    ("bare-lf-field", _G + b"X: y\nZ: w\r\n\r\n", 400),
    ("bare-lf-end", _G + b"\n", 400),
    ("bare-lf-chunk-size", _TE + b"5\nhello\r\n0\r\n\r\n", 400),
    ("bare-lf-chunk-data", _TE + b"5\r\nhello\n0\r\n\r\n", 400),
    ("bare-lf-trailer", _TE + b"0\r\nX: y\n\r\n", 400),
    ("stray-cr", _G + b"X: a\rb\r\n\r\n", 400),
    # empty lines before a request line are ignored (RFC 9112 section 2.2)
    ("leading-crlf", b"\r\n" + _G + b"\r\n", (_ONE, "open")),
    ("leading-lf", b"\n" + _G + b"\r\n", (_ONE, "open")),
    ("crlf-between", _G + b"\r\n\r\n" + _G + b"\r\n", (_ONE * 2, "open")),
    # Connection tokens are comma-separated with SP/HTAB around them
    ("conn-close", _G + b"Connection: close\r\n\r\n", (_ONE, "close")),
    ("conn-tab-close", _G + b"Connection: keep-alive,\tclose\r\n\r\n", (_ONE, "close")),
    ("conn-sp-close", _G + b"Connection: keep-alive , close\r\n\r\n", (_ONE, "close")),
    ("conn-keep", _G + b"Connection: keep-alive\r\n\r\n", (_ONE, "open")),
    # Content-Length: one field of 1*DIGIT, padded by SP/HTAB only
    ("cl", _cl(b"5"), ([("/l", b"hello", None)], "open")),
    ("cl-ows", _cl(b" \t5 \t"), ([("/l", b"hello", None)], "open")),
    ("cl-nbsp", _cl(b"5\xa0"), 400),
    ("cl-nbsp-lead", _cl(b"\xa05"), 400),
    ("cl-nel", _cl(b"\x855"), 400),
    ("cl-vt", _cl(b"5\x0b"), 400),
    ("cl-ff", _cl(b"5\x0c"), 400),
    ("cl-list", _cl(b"5, 5"), 400),
    ("cl-list-nbsp", _cl(b"5,\xa05"), 400),
    ("cl-two-fields", _cl(b"5\r\nContent-Length: 5"), 400),
    ("cl-plus", _cl(b"+5"), 400),
    ("cl-hex", _cl(b"0x5"), 400),
    ("cl-unicode-digit", _cl("\u0665".encode("utf-8")), 400),
    # Transfer-Encoding: exactly chunked (case-insensitive), else 501; never with Content-Length
    ("te", _te(b"chunked"), ([("/c", b"", None)], "open")),
    ("te-case", _te(b"CHUNKED"), ([("/c", b"", None)], "open")),
    ("te-sp", _te(b" chunked "), ([("/c", b"", None)], "open")),
    ("te-lead-tab", _te(b"\tchunked"), ([("/c", b"", None)], "open")),
    ("te-trail-tab", _te(b"chunked\t"), 400),
    ("te-nbsp", _te(b"chunked\xa0"), 501),
    ("te-nbsp-lead", _te(b"\xa0chunked"), 501),
    ("te-nel", _te(b"\x85chunked"), 501),
    ("te-list", _te(b"gzip, chunked"), 501),
    ("te-identity", _te(b"identity"), 501),
    ("te-two-fields", _te(b"chunked\r\nTransfer-Encoding: chunked"), 400),
    ("te-two-fields-gzip", _te(b"gzip\r\nTransfer-Encoding: chunked"), 400),
    ("te-and-cl", _te(b"chunked\r\nContent-Length: 3"), 400),
    # chunk lines: hex size directly followed by ';' or CRLF; no control bytes in extensions
    ("chunk-ext", _TE + b"5;a=b\r\nhello\r\n0\r\n\r\n", ([("/c", b"hello", None)], "open")),
    ("chunk-size-sp", _TE + b"5 \r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-sp-ext", _TE + b"5 ;a=b\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-tab-ext", _TE + b"5\t;a=b\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-ext-nul", _TE + b"5;a=\x00\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-ext-del", _TE + b"5;a\x7f\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-plus", _TE + b"+5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-0x", _TE + b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    # trailers: framing fields are not allowed (RFC 9110 section 6.5.1)
    ("trailer", _TE + b"0\r\nX-T: 1\r\n\r\n", ([("/c", b"", [("X-T", "1")])], "open")),
    ("trailer-cl", _TE + b"0\r\nContent-Length: 5\r\n\r\n", 400),
    ("trailer-te", _TE + b"0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("trailer-obs-fold", _TE + b"0\r\nX-T: 1\r\n 2\r\n\r\n", 400),
    # request targets other forms than origin-form must parse: 400 otherwise
    ("target-absolute", b"GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n",
     ([("http://h/x", b"", None)], "open")),
    ("target-bad-ipv6", b"GET http://[::1/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    ("target-bad-authority", b"CONNECT nohost HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    ("target-bad-port", b"GET http://h:99999/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    # pipelines: everything before a bad request is served, in order
    ("pipeline-then-garbage", _G + b"\r\n" + _cl(b"5") + b"\x00junk\r\n\r\n",
     ([("/", b"", None), ("/l", b"hello", None)], 400)),
    ("pipeline-then-smuggle", _G + b"\r\n" + _cl(b"5\xa0") + _G + b"\r\n", (_ONE, 400)),
    ("pipeline-then-close", _G + b"\r\n" + _G + b"Connection: close\r\n\r\n" + _G + b"\r\n",
     (_ONE * 2, "close")),
]  # fmt: skip


def outcome(name: str, pieces: list[bytes]) -> Any:
    engine = new(name)
    out: list[Any] = []
    try:
        drive(engine, pieces, out=out)
    except ProtocolError as e:
        status: Any = e.status
    else:
        status = "open" if engine.keep_alive else "close"
    done = [(h.target, body, trailers) for h, body, trailers in out]
    return (done, status) if done or type(status) is str else status


@engines
@pytest.mark.parametrize(("raw", "expected"), [p[1:] for p in POLICY], ids=[p[0] for p in POLICY])
def test_one_framing_policy(name: str, raw: bytes, expected: Any) -> None:
    assert outcome(name, [raw]) == expected
    for cut in range(1, len(raw)):
        assert outcome(name, [raw[:cut], raw[cut:]]) == expected, cut


@engines
def test_eof_inside_a_body_is_an_error_and_between_requests_is_not(name: str) -> None:
    engine = new(name)
    assert drive(engine, [b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"], eof=True)
    assert engine.at_eof
    with pytest.raises(ProtocolError):
        drive(new(name), [b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab"], eof=True)


@engines
def test_switch_protocol_returns_the_bytes_behind_the_request(name: str) -> None:
    engine = new(name)
    engine.feed(
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        b"\x81\x05hello GET / HTTP/1.1\r\n"
    )
    head = engine.next_event()
    assert isinstance(head, RequestHead)
    assert head.upgrade == "websocket"
    out = engine.response(101, "Switching Protocols", [("Upgrade", "websocket")], None)
    assert out.startswith(b"HTTP/1.1 101 ")
    assert engine.switch_protocol() == b"\x81\x05hello GET / HTTP/1.1\r\n"


UPGRADE_WITH_BODY = [
    (
        b"POST /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 11\r\n\r\n"
        b"hello world",
        None,
    ),
    (
        b"POST /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
        [("X-T", "1")],
    ),
]


@engines
@pytest.mark.parametrize(
    ("request_bytes", "trailers"), UPGRADE_WITH_BODY, ids=["length", "chunked"]
)
@pytest.mark.parametrize("accept", [True, False], ids=["switched", "refused"])
def test_upgrade_request_body_is_read_before_the_switch(
    name: str, request_bytes: bytes, trailers: Any, accept: bool
) -> None:
    # curl --http2 sends its POST body with the h2c upgrade request; the body
    # belongs to the request, the bytes behind it to whatever comes next.
    after = (
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" if accept else b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    data = request_bytes + after
    for cut in range(0, len(data), 7):
        engine = new(name)
        pieces = [data[:cut], data[cut:]]
        events: list[Any] = []
        for _ in range(1000):
            ev = engine.next_event()
            if ev is NEED_DATA:
                engine.feed(pieces.pop(0))
                continue
            if ev is PAUSED:
                break
            events.append(ev)
            if isinstance(ev, BodyEnd):
                break
        head = events[0]
        assert isinstance(head, RequestHead)
        assert head.upgrade == "h2c"
        assert b"".join(e.data for e in events if isinstance(e, BodyData)) == b"hello world"
        assert isinstance(events[-1], BodyEnd)
        assert events[-1].trailers == trailers
        rest = b"".join(pieces)
        if accept:
            engine.response(101, "Switching Protocols", [("Upgrade", "h2c")], None)
            assert engine.switch_protocol() + rest == after, cut
        else:
            engine.feed(rest)
            assert engine.next_event() is PAUSED
            engine.response(200, "OK", [], b"")
            engine.start_next_cycle()
            nxt = engine.next_event()
            assert isinstance(nxt, RequestHead), cut
            assert nxt.target == "/next"


@engines
def test_connect_2xx_has_no_framing_and_switches(name: str) -> None:
    engine = new(name)
    engine.feed(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n\x16\x03\x01")
    head = engine.next_event()
    assert isinstance(head, RequestHead)
    assert (head.method, head.target) == ("CONNECT", "a.example:443")
    out = engine.response(200, "OK", [], b"")
    assert b"content-length" not in out.lower()
    assert b"transfer-encoding" not in out.lower()
    assert engine.switch_protocol() == b"\x16\x03\x01"


def _client_parse(request: bytes, response: bytes) -> list[Any]:
    """Parse ``response`` with h11 as a client that sent ``request``."""
    client = h11.Connection(h11.CLIENT)
    server_view = h11.Connection(h11.SERVER)
    server_view.receive_data(request)
    req = server_view.next_event()
    assert isinstance(req, h11.Request)
    client.send(
        h11.Request(
            method=req.method,
            target=req.target,
            headers=req.headers,
            http_version=req.http_version,
        )
    )
    client.send(h11.EndOfMessage())
    client.receive_data(response)
    events: list[Any] = []
    while True:
        ev = client.next_event()
        if ev is h11.NEED_DATA or ev is h11.PAUSED:
            break
        events.append(ev)
        if isinstance(ev, h11.EndOfMessage):
            break
    return events


@engines
@pytest.mark.parametrize(
    ("request_bytes", "status", "body", "streamed", "expect_body", "framing"),
    [
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 200, b"hi", False, b"hi", b"content-length"),
        (b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", 200, b"hi", False, b"", b"content-length"),
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 200, b"abc", True, b"abc", b"transfer-encoding"),
        (b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", 200, b"abc", True, b"", b"transfer-encoding"),
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 204, b"", False, b"", None),
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 304, b"", False, b"", None),
    ],
)
def test_responses_parse_with_a_strict_client(
    name: str,
    request_bytes: bytes,
    status: int,
    body: bytes,
    streamed: bool,
    expect_body: bytes,
    framing: bytes | None,
) -> None:
    engine = new(name)
    engine.feed(request_bytes)
    head = engine.next_event()
    assert isinstance(head, RequestHead)
    headers = [("X-Custom-Header", "Kept"), ("content-type", "text/plain")]
    if streamed:
        out = engine.response(status, "", headers, None)
        out += engine.data(body[:1]) + engine.data(body[1:]) + engine.end()
    else:
        out = engine.response(status, "", headers, body)
    assert b"\r\nX-Custom-Header: Kept\r\n" in out  # casing kept on the wire
    events = _client_parse(request_bytes, out)
    resp = events[0]
    assert isinstance(resp, h11.Response)
    assert resp.status_code == status
    got = b"".join(bytes(e.data) for e in events if isinstance(e, h11.Data))
    assert got == expect_body
    names = [n.lower() for n, _ in resp.headers.raw_items()]
    if framing is not None:
        assert framing in names
    assert engine.keep_alive


@engines
def test_streamed_answer_to_http10_is_close_delimited(name: str) -> None:
    engine = new(name)
    engine.feed(b"GET / HTTP/1.0\r\n\r\n")
    assert isinstance(engine.next_event(), RequestHead)
    out = engine.response(200, "", [("Content-Type", "text/plain")], None)
    out += engine.data(b"ol") + engine.data(b"d") + engine.end()
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].startswith(b"HTTP/1.")
    assert b"content-length" not in head.lower()
    assert b"transfer-encoding" not in head.lower()
    assert body == b"old"
    assert not engine.keep_alive


@engines
def test_connection_close_ends_keep_alive(name: str) -> None:
    engine = new(name)
    engine.feed(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    head = engine.next_event()
    assert isinstance(head, RequestHead)
    assert not head.keep_alive
    out = engine.response(200, "OK", [], b"x")
    assert b"connection: close" in out.lower()
    assert not engine.keep_alive


@engines
def test_expect_continue_is_reported(name: str) -> None:
    engine = new(name)
    engine.feed(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    head = engine.next_event()
    assert isinstance(head, RequestHead)
    assert head.expect_continue
    assert engine.continue_response().startswith(b"HTTP/1.1 100 ")


@engines
def test_a_large_read_ending_inside_a_head_counts_only_that_head(name: str) -> None:
    req = b"GET /p HTTP/1.1\r\nHost: h\r\nX-Pad: " + b"p" * 60 + b"\r\n\r\n"
    n = 3000
    data = req * n
    cut = len(data) - 20  # the first piece ends inside the last head
    out = drive(new(name, max_header_size=1024), [data[:cut], data[cut:]])
    assert len(out) == n


@engines
def test_requests_before_a_parse_error_in_the_same_read_come_first(name: str) -> None:
    post = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
    engine = new(name)
    engine.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" + post + b"\x00GARBAGE\r\n\r\n")
    got: list[Any] = []
    with pytest.raises(ProtocolError) as info:
        for _ in range(20):
            ev = engine.next_event()
            if ev is PAUSED or (isinstance(ev, RequestHead) and not ev.has_body):
                got.append(ev if ev is PAUSED else ev.target)
                engine.response(200, "OK", [], b"")
                engine.start_next_cycle()
                continue
            got.append(ev.target if isinstance(ev, RequestHead) else type(ev).__name__)
    assert info.value.status == 400
    assert got == ["/", "/p", "BodyData", "BodyEnd", PAUSED]
