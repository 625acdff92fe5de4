"""Conformance suite of the HTTP/1.1 client engines (h11 reference, fast, httptools).

Every case is fed whole, byte by byte and split at every offset; both engines
must produce the same events or the same typed error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rama_http import LocalProtocolError, RemoteProtocolError
from rama_http.client._h1_engine import (
    NEED_DATA,
    PAUSED,
    BodyData,
    BodyEnd,
    ClientEngineLimits,
    H1ClientEngine,
    InformationalHead,
    ResponseHead,
    prepare_headers,
)
from rama_http.client._h1_fast import FastClientEngine
from rama_http.client._h1_h11 import H11ClientEngine
from rama_http.client._h1_httptools import HttptoolsClientEngine

ENGINES: dict[str, Callable[..., H1ClientEngine]] = {
    "fast": FastClientEngine,
    "h11": H11ClientEngine,
    "httptools": HttptoolsClientEngine,
}


@pytest.fixture(params=sorted(ENGINES))
def make(request: pytest.FixtureRequest) -> Callable[..., H1ClientEngine]:
    return ENGINES[request.param]


def _run(engine: H1ClientEngine, chunks: list[bytes], eof: bool) -> list[Any]:
    out: list[Any] = []
    data_buf = b""

    def flush() -> None:
        nonlocal data_buf
        if data_buf:
            out.append(("data", data_buf))
            data_buf = b""

    def drain() -> bool:
        nonlocal data_buf
        while True:
            ev = engine.next_event()
            if ev is NEED_DATA:
                return False
            if ev is PAUSED:
                return True
            if isinstance(ev, BodyData):
                data_buf += ev.data
                continue
            flush()
            if isinstance(ev, ResponseHead):
                out.append(("head", ev.status, ev.headers, ev.has_body, ev.keep_alive))
            elif isinstance(ev, InformationalHead):
                out.append(("info", ev.status, ev.headers))
            elif isinstance(ev, BodyEnd):
                out.append(("end", ev.trailers or None))
                return True

    for c in chunks:
        engine.feed(c)
        if drain():
            return out
    if eof:
        engine.feed_eof()
        drain()
    flush()
    return out


def _splits(raw: bytes) -> list[list[bytes]]:
    ways = [[raw], [raw[i : i + 1] for i in range(len(raw))]]
    ways += [[raw[:i], raw[i:]] for i in range(1, len(raw))]
    return ways


def _events(
    make: Callable[..., H1ClientEngine], method: str, raw: bytes, eof: bool = False
) -> list[Any]:
    results = []
    for chunks in _splits(raw):
        e = make()
        e.request(method, "/", [("Host", "x")], b"")
        results.append(_run(e, chunks, eof))
    first = results[0]
    assert all(r == first for r in results), "a split changed the events"
    return first


CASES: list[tuple[str, str, bytes, bool, list[Any]]] = [
    (
        "content-length",
        "GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Case: Kept\r\n\r\nhello",
        False,
        [
            ("head", 200, [("Content-Length", "5"), ("X-Case", "Kept")], True, True),
            ("data", b"hello"),
            ("end", None),
        ],
    ),
    (
        "chunked",
        "GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        False,
        [
            ("head", 200, [("Transfer-Encoding", "chunked")], True, True),
            ("data", b"hello world"),
            ("end", None),
        ],
    ),
    (
        "trailers",
        "GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-T: b\r\n\r\n",
        False,
        [
            ("head", 200, [("Transfer-Encoding", "chunked")], True, True),
            ("data", b"abc"),
            ("end", [("X-Sum", "1"), ("X-T", "b")]),
        ],
    ),
    (
        "close-delimited",
        "GET",
        b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nall of it",
        True,
        [("head", 200, [("X", "y")], True, False), ("data", b"all of it"), ("end", None)],
    ),
    (
        "100-continue and 103",
        "GET",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\n\r\n",
        False,
        [
            ("info", 100, []),
            ("info", 103, [("Link", "</a>; rel=preload")]),
            ("head", 204, [], False, True),
            ("end", None),
        ],
    ),
    (
        "HEAD has no body",
        "HEAD",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
        False,
        [("head", 200, [("Content-Length", "1000")], False, True), ("end", None)],
    ),
    (
        "304 has no body",
        "GET",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        False,
        [("head", 304, [("Content-Length", "10")], False, True), ("end", None)],
    ),
    (
        "connection close",
        "GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
        False,
        [
            ("head", 200, [("Content-Length", "1"), ("Connection", "close")], True, False),
            ("data", b"x"),
            ("end", None),
        ],
    ),
    (
        "http/1.0 closes",
        "GET",
        b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
        False,
        [("head", 200, [("Content-Length", "1")], True, False), ("data", b"x"), ("end", None)],
    ),
]


@pytest.mark.parametrize(
    ("name", "method", "raw", "eof", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_conformance(
    make: Callable[..., H1ClientEngine],
    name: str,
    method: str,
    raw: bytes,
    eof: bool,
    expected: list[Any],
) -> None:
    assert _events(make, method, raw, eof) == expected


BAD: list[tuple[str, bytes, bool]] = [
    ("garbage", b"SSH-2.0-OpenSSH\r\n\r\n", False),
    ("bad status", b"HTTP/1.1 2x0 OK\r\n\r\n", False),
    (
        "invalid chunk size",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        False,
    ),
    ("truncated body", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", True),
    ("truncated chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", True),
    ("truncated head", b"HTTP/1.1 200 OK\r\nContent-Le", True),
    ("no response", b"", True),
    ("CR in header value", b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n", False),
    (
        "LF in header value",
        b"HTTP/1.1 200 OK\r\nX-A: a\nX-B: b\r\nContent-Length: 0\r\n\r\n",
        False,
    ),
    ("NUL in header value", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n", False),
    ("obs-fold", b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n", False),
    ("bad header name", b"HTTP/1.1 200 OK\r\nX A: a\r\nContent-Length: 0\r\n\r\n", False),
    ("bad content-length", b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", False),
    (
        "conflicting content-length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        False,
    ),
    ("gzip transfer-encoding", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", False),
    ("101", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", False),
]


@pytest.mark.parametrize(("name", "raw", "eof"), BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_remote_protocol_error(
    make: Callable[..., H1ClientEngine], name: str, raw: bytes, eof: bool
) -> None:
    for chunks in _splits(raw) if raw else [[]]:
        e = make()
        e.request("GET", "/", [("Host", "x")], b"")
        with pytest.raises(RemoteProtocolError):
            _run(e, chunks, eof)


def test_oversized_head(make: Callable[..., H1ClientEngine]) -> None:
    e = make(ClientEngineLimits(max_header_size=1024))
    e.request("GET", "/", [("Host", "x")], b"")
    with pytest.raises(RemoteProtocolError):
        _run(e, [b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 2000 + b"\r\n\r\n"], False)


def test_keep_alive_cycle_and_trailing_data(make: Callable[..., H1ClientEngine]) -> None:
    e = make()
    e.request("GET", "/", [("Host", "x")], b"")
    assert _run(e, [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"], False)[-1] == ("end", None)
    assert e.keep_alive
    assert not e.trailing_data
    e.start_next_cycle()
    e.request("GET", "/2", [("Host", "x")], b"")
    events = _run(e, [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nyzGARBAGE"], False)
    assert events[-2:] == [("data", b"yz"), ("end", None)]
    assert e.trailing_data


def test_request_bytes_identical_across_engines() -> None:
    headers, chunked = prepare_headers("POST", "example.com", [("X-B", "2"), ("x-a", "1")], 3)
    assert headers == [("Host", "example.com"), ("X-B", "2"), ("x-a", "1"), ("Content-Length", "3")]
    assert not chunked
    wires = {
        name: make().request("POST", "/p?q=1", headers, b"abc") for name, make in ENGINES.items()
    }
    assert wires["fast"] == wires["h11"]
    assert wires["fast"] == (
        b"POST /p?q=1 HTTP/1.1\r\nHost: example.com\r\nX-B: 2\r\nx-a: 1\r\n"
        b"Content-Length: 3\r\n\r\nabc"
    )


def test_host_keeps_callers_position_and_chunked_streaming() -> None:
    given = [("X-B", "2"), ("host", "h.example"), ("x-a", "1")]
    headers, chunked = prepare_headers("PUT", "ignored", given, None)
    assert headers == [*given, ("Transfer-Encoding", "chunked")]
    assert chunked
    for make in ENGINES.values():
        e = make()
        wire = e.request("PUT", "/", headers, None) + e.data(b"hello") + e.end([("X-T", "1")])
        assert wire == (
            b"PUT / HTTP/1.1\r\nX-B: 2\r\nhost: h.example\r\nx-a: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
        )


def test_get_gets_no_framing_and_bad_te_is_local_error() -> None:
    assert prepare_headers("GET", "a", [], 0) == ([("Host", "a")], False)
    with pytest.raises(LocalProtocolError):
        prepare_headers("POST", "a", [("Transfer-Encoding", "gzip")], 1)


_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
    min_size=1,
    max_size=12,
)
_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(
    lambda v: v.strip(" ")
)


@settings(max_examples=200, deadline=None)
@given(
    status=st.sampled_from([200, 201, 204, 301, 304, 404, 500]),
    headers=st.lists(st.tuples(_names, _values), max_size=6),
    body=st.binary(max_size=300),
    framing=st.sampled_from(["length", "chunked", "close"]),
    chunk=st.integers(min_value=1, max_value=64),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=6),
    method=st.sampled_from(["GET", "HEAD"]),
)
def test_engines_agree_on_random_responses(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    framing: str,
    chunk: int,
    cuts: list[int],
    method: str,
) -> None:
    fields = [
        (n, v)
        for n, v in headers
        if n.lower() not in ("content-length", "transfer-encoding", "connection")
    ]
    if framing == "length":
        fields.append(("Content-Length", str(len(body))))
        payload = body
    elif framing == "chunked":
        fields.append(("Transfer-Encoding", "chunked"))
        payload = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + chunk]), body[i : i + chunk])
            for i in range(0, len(body), chunk)
        )
        payload += b"0\r\n\r\n"
    else:
        payload = body
    if status in (204, 304) or method == "HEAD":
        payload = b""
    raw = (
        b"HTTP/1.1 %d X\r\n" % status
        + b"".join(f"{n}: {v}\r\n".encode() for n, v in fields)
        + b"\r\n"
        + payload
    )
    points = sorted({c % (len(raw) + 1) for c in cuts})
    chunks = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    results = []
    for make in ENGINES.values():
        e = make()
        e.request(method, "/", [("Host", "x")], b"")
        results.append(_run(e, chunks, eof=True))
    assert all(r == results[0] for r in results[1:])
    head = results[0][0]
    assert head[0] == "head"
    assert head[1] == status
    assert head[2] == fields
    data = b"".join(ev[1] for ev in results[0] if ev[0] == "data")
    assert data == (b"" if status in (204, 304) or method == "HEAD" else body)


_FUZZ_BASES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
]


def _outcome(make: Callable[..., H1ClientEngine], raw: bytes) -> Any:
    e = make()
    e.request("GET", "/", [("Host", "x")], b"")
    try:
        return ("ok", _run(e, [raw], eof=True))
    except RemoteProtocolError:
        return ("error",)


@settings(max_examples=400, deadline=None)
@given(
    base=st.sampled_from(_FUZZ_BASES),
    pos=st.integers(0, 200),
    byte=st.integers(0, 255),
    mode=st.sampled_from(["replace", "insert", "delete"]),
)
def test_engines_agree_on_mutated_heads(base: bytes, pos: int, byte: int, mode: str) -> None:
    """One byte changed, added or removed in a head: both engines accept it alike or both refuse.

    (In the chunked trailer section h11 also takes a bare LF as a line end; the
    fast engine refuses it, so the mutations stay in the heads.)
    """
    pos %= base.index(b"\r\n\r\n") + 4
    b = bytes([byte])
    if mode == "replace":
        raw = base[:pos] + b + base[pos + 1 :]
    elif mode == "insert":
        raw = base[:pos] + b + base[pos:]
    else:
        raw = base[:pos] + base[pos + 1 :]
    fast = _outcome(FastClientEngine, raw)
    assert fast == _outcome(H11ClientEngine, raw)
    assert fast == _outcome(HttptoolsClientEngine, raw)


def test_field_values_are_reported_as_received_by_both_engines() -> None:
    """h11 lowercases Transfer-Encoding values; both engines report the bytes the server sent."""
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chUnked\r\nX-A:  b \t\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )
    fast, h11 = _outcome(FastClientEngine, raw), _outcome(H11ClientEngine, raw)
    assert fast == h11 == _outcome(HttptoolsClientEngine, raw)
    assert fast[1][0][2] == [("Transfer-Encoding", "chUnked"), ("X-A", "b")]


def test_too_many_header_fields(make: Callable[..., H1ClientEngine]) -> None:
    e = make(ClientEngineLimits(max_headers=5))
    e.request("GET", "/", [("Host", "x")], b"")
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(10))
    with pytest.raises(RemoteProtocolError):
        _run(e, [head + b"Content-Length: 0\r\n\r\n"], False)
    ok = make(ClientEngineLimits(max_headers=5))
    ok.request("GET", "/", [("Host", "x")], b"")
    events = _run(ok, [b"HTTP/1.1 200 OK\r\nX-1: v\r\nContent-Length: 0\r\n\r\n"], False)
    assert events[-1] == ("end", None)
