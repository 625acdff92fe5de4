"""Fuzz: malformed JSON lines and HAR documents raise FlowFormatError, nothing else."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rama_proxy.flows import (
    CapturedBody,
    Flow,
    FlowFormatError,
    HttpRequestRecord,
    HttpResponseRecord,
    TimingRecord,
    TlsRecord,
    TunnelFlow,
    WebSocketMessage,
    flow_from_json,
    from_har,
    read_jsonl,
    to_har,
)

FLOW = Flow(
    HttpRequestRecord(
        "POST",
        "https://h.test/p?q=1",
        "HTTP/1.1",
        [("Host", "h.test"), ("Cookie", "a=b")],
        CapturedBody.of(b"\xff\x00body", limit=4),
        trailers=[("t", "1")],
    ),
    HttpResponseRecord(
        200,
        "OK",
        "HTTP/1.1",
        [("Content-Encoding", "gzip"), ("Set-Cookie", "s=1; Path=/")],
        CapturedBody.of(b"x"),
    ),
    started_at=1.5,
    timings=TimingRecord(connect=0.1, ssl=0.2, send=0.0, wait=0.3, receive=0.1),
    client_addr=("127.0.0.1", 1),
    server_addr=("::1", 443),
    client_tls=TlsRecord("h.test", "h2"),
    server_tls=TlsRecord(version="TLSv1.3"),
    error=None,
    websocket=[
        WebSocketMessage("send", True, b"\xc3", 2.0),
        WebSocketMessage("receive", False, b"", 3.0),
    ],
    websocket_dropped=1,
)
TUNNEL = TunnelFlow(("t.test", 443), duration=1.0, bytes_up=1, bytes_down=2)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, (*prefix, i))
    return out


def mutate(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if delete and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


FLOW_DOCS = [FLOW.to_json(), TUNNEL.to_json()]
HAR_DOC = to_har([FLOW], redact=False)


@settings(max_examples=300, deadline=None)
@given(st.data(), json_values, st.booleans())
def test_mutated_flow_json_raises_only_flow_format_error(
    data: st.DataObject, value: Any, delete: bool
) -> None:
    base = data.draw(st.sampled_from(FLOW_DOCS))
    path = data.draw(st.sampled_from(paths(base)))
    doc = mutate(base, path, value, delete)
    try:
        flow_from_json(doc)
    except FlowFormatError:
        pass
    line = json.dumps(doc).encode() + b"\n"
    try:
        list(read_jsonl([line, line]))
    except FlowFormatError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data(), json_values, st.booleans())
def test_mutated_har_raises_only_flow_format_error(
    data: st.DataObject, value: Any, delete: bool
) -> None:
    path = data.draw(st.sampled_from(paths(HAR_DOC)))
    doc = mutate(HAR_DOC, path, value, delete)
    try:
        flows = from_har(doc)
    except FlowFormatError:
        return
    # whatever loaded exports again as a valid document
    to_har(flows)


@given(st.binary(max_size=200))
def test_garbage_bytes(raw: bytes) -> None:
    try:
        from_har(raw)
    except FlowFormatError:
        pass
    try:
        list(read_jsonl([raw + b"\n"]))
    except FlowFormatError:
        pass


def test_out_of_range_times_are_format_errors_and_never_break_an_export() -> None:
    import math

    import pytest

    for bad in (math.inf, -math.inf, 1e300, -1.0, 2**70):
        doc = copy.deepcopy(HAR_DOC)
        doc["log"]["entries"][0]["_rama"]["started_at"] = bad
        with pytest.raises(FlowFormatError, match="out of range"):
            from_har(doc)
        doc = copy.deepcopy(HAR_DOC)
        doc["log"]["entries"][0]["_rama"]["timings"]["wait"] = bad
        with pytest.raises(FlowFormatError, match="out of range"):
            from_har(doc)
        with pytest.raises(FlowFormatError, match="out of range"):
            flow_from_json({**FLOW.to_json(), "started_at": bad})
    doc = copy.deepcopy(HAR_DOC)
    doc["log"]["entries"][0]["startedDateTime"] = "0001-01-01T00:00:00Z"
    del doc["log"]["entries"][0]["_rama"]
    with pytest.raises(FlowFormatError, match="out of range"):
        from_har(doc)
    # a flow built in code with nonsense times still exports as valid JSON
    odd = Flow(
        HttpRequestRecord("GET", "http://h/"),
        started_at=1e300,
        timings=TimingRecord(wait=math.inf),
        websocket=[WebSocketMessage("send", True, b"x", math.nan)],
    )
    text = json.dumps(to_har([odd]), allow_nan=False)
    assert '"startedDateTime": "1970-01-01T00:00:00.000Z"' in text


def test_nonsense_times_written_to_json_lines_read_back() -> None:
    import math

    odd = Flow(
        HttpRequestRecord("GET", "http://h/"),
        started_at=math.inf,
        timings=TimingRecord(wait=math.nan, send=-1.0, receive=0.5),
        websocket=[WebSocketMessage("send", True, b"x", 1e300)],
    )
    line = json.dumps(odd.to_json(), allow_nan=False).encode() + b"\n"
    (back,) = read_jsonl([line])
    assert isinstance(back, Flow)
    assert back.started_at == 0.0
    assert back.timings == TimingRecord(receive=0.5)
    assert back.websocket[0].time == 0.0
    t = TunnelFlow(("h", 1), started_at=math.nan, duration=math.inf)
    (tb,) = read_jsonl([json.dumps(t.to_json(), allow_nan=False) + "\n"])
    assert isinstance(tb, TunnelFlow)
    assert tb.duration is None
