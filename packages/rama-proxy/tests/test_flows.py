"""Flow records, the bounded FlowStore with live subscribers, and the JSON-lines writer."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rama_proxy.flows import (
    BodyCapture,
    CapturedBody,
    Flow,
    FlowFormatError,
    FlowStore,
    HttpRequestRecord,
    HttpResponseRecord,
    JsonLinesWriter,
    SubscriberLagged,
    TimingRecord,
    TlsRecord,
    TunnelFlow,
    WebSocketMessage,
    flow_from_json,
    read_jsonl,
)


def full_flow(body: bytes = b'{"a": 1}', resp_body: bytes = b"\x00\xffbinary") -> Flow:
    return Flow(
        request=HttpRequestRecord(
            method="POST",
            url="https://example.test:8443/p/a?q=1&q=2&x=%20",
            http_version="HTTP/2",
            headers=[("content-type", "application/json"), ("X-Odd", 'a"$`\u00e9'), ("x-b", "")],
            body=CapturedBody.of(body),
            trailers=[("x-trailer", "t")],
        ),
        response=HttpResponseRecord(
            status=201,
            reason="Created",
            http_version="HTTP/2",
            headers=[("Content-Type", "application/octet-stream"), ("Set-Cookie", "s=1; Path=/")],
            body=CapturedBody.of(resp_body, limit=4),
        ),
        started_at=1_700_000_000.123456,
        timings=TimingRecord(
            blocked=0.001, dns=None, connect=0.002, ssl=0.003, send=0.0001, wait=0.05, receive=0.01
        ),
        client_addr=("127.0.0.1", 50000),
        server_addr=("::1", 8443),
        client_tls=TlsRecord(sni="example.test", alpn="h2", version="TLSv1.3", cipher="X"),
        server_tls=TlsRecord(alpn="h2", version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256"),
        error=None,
        websocket=[
            WebSocketMessage("send", True, "hé".encode(), 1_700_000_001.5),
            WebSocketMessage("receive", False, bytes(range(256)), 1_700_000_002.0),
        ],
        resource_type="fetch",
        connection="42",
    )


def tunnel() -> TunnelFlow:
    return TunnelFlow(
        target=("bank.test", 443),
        started_at=1_700_000_000.0,
        duration=1.25,
        bytes_up=517,
        bytes_down=4096,
        client_addr=("127.0.0.1", 1),
        server_addr=("10.0.0.1", 443),
        sni="bank.test",
    )


def test_captured_body_limits() -> None:
    c = CapturedBody.of(b"abcdef", limit=4)
    assert (c.data, c.size, c.truncated, c.complete) == (b"abcd", 6, True, False)
    c = CapturedBody.of(b"abc", limit=4)
    assert (c.data, c.size, c.truncated, c.complete) == (b"abc", 3, False, True)
    assert CapturedBody.of(b"", limit=0).complete


@given(st.lists(st.binary(max_size=50), max_size=20), st.integers(0, 300))
def test_body_capture_matches_one_shot(chunks: list[bytes], limit: int) -> None:
    cap = BodyCapture(limit)
    for c in chunks:
        cap.feed(c)
    assert cap.result() == CapturedBody.of(b"".join(chunks), limit)
    assert cap.result() == CapturedBody.of(b"".join(chunks), limit)  # idempotent


def test_json_round_trip_http_and_tunnel() -> None:
    for f in (full_flow(), tunnel(), Flow(HttpRequestRecord("GET", "http://a/"))):
        d = json.loads(json.dumps(f.to_json()))
        assert flow_from_json(d) == f
    f = full_flow()
    assert f.response is not None
    assert f.response.body.truncated
    assert f.websocket[1].opcode == 2
    assert f.websocket[0].text() == "hé"
    assert f.request.header("CONTENT-TYPE") == "application/json"


@pytest.mark.parametrize(
    "doc",
    [
        None,
        {"type": "nope"},
        {"type": "http"},
        {"type": "tunnel", "id": "x", "target": ["h"], "started_at": 0},
        {**full_flow().to_json(), "request": {"method": "GET"}},
        {
            **full_flow().to_json(),
            "request": {**full_flow().request.to_json(), "body": {"data": "!!", "size": 2}},
        },
        {**full_flow().to_json(), "started_at": True},
        {**full_flow().to_json(), "websocket": [{"direction": "up"}]},
    ],
)
def test_malformed_json_raises_flow_format_error(doc: object) -> None:
    with pytest.raises(FlowFormatError):
        flow_from_json(doc)


header_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=20
)


@settings(max_examples=60)
@given(
    method=st.sampled_from(["GET", "POST", "PATCH", "X-CUSTOM"]),
    headers=st.lists(st.tuples(header_text, header_text), max_size=8),
    body=st.binary(max_size=200),
    limit=st.none() | st.integers(0, 100),
    status=st.none() | st.integers(100, 599),
    ws=st.lists(
        st.builds(
            WebSocketMessage,
            st.sampled_from(["send", "receive"]),
            st.booleans(),
            st.binary(max_size=30),
            st.floats(0, 2e9, allow_nan=False),
        ),
        max_size=4,
    ),
)
def test_json_round_trip_property(
    method: str,
    headers: list[tuple[str, str]],
    body: bytes,
    limit: int | None,
    status: int | None,
    ws: list[WebSocketMessage],
) -> None:
    f = Flow(
        HttpRequestRecord(method, "http://h/x", headers=headers, body=CapturedBody.of(body, limit)),
        response=None
        if status is None
        else HttpResponseRecord(status, headers=headers[::-1], body=CapturedBody.of(body[::-1])),
        websocket=ws,
        error="connection refused" if status is None else None,
    )
    line = JsonLinesWriter.encode(f)
    assert line.count(b"\n") == 1
    assert line.endswith(b"\n")
    assert list(read_jsonl([line])) == [f]


def test_jsonl_writer_appends_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    flows = [full_flow(), tunnel(), full_flow(b"x" * 10_000)]
    with JsonLinesWriter(path) as w:
        for f in flows[:2]:
            w.write(f)
    with JsonLinesWriter(path) as w:  # reopening appends
        w.write(flows[2])
        assert w.written == 1
    assert path.stat().st_mode & 0o777 == 0o600
    assert list(read_jsonl(path)) == flows
    assert len(path.read_bytes().splitlines()) == 3
    with pytest.raises(ValueError, match="closed"):
        w.write(flows[0])


def test_jsonl_reader_skips_a_partial_last_line_but_not_a_bad_middle_one(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    f = full_flow()
    good = JsonLinesWriter.encode(f)
    path.write_bytes(good + b"\n" + good + good[: len(good) // 2])
    assert list(read_jsonl(path)) == [f, f]
    path.write_bytes(good + b'{"type": "http"\n' + good)
    with pytest.raises(FlowFormatError, match="line 2"):
        list(read_jsonl(path))
    path.write_bytes(good + b'{"type": "http"}\n')
    with pytest.raises(FlowFormatError, match="line 2"):
        list(read_jsonl(path))


def test_jsonl_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    big = full_flow(b"y" * 200_000)

    def writer() -> None:
        with JsonLinesWriter(path) as w:
            for _ in range(20):
                w.write(big)

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = list(read_jsonl(path))
    assert len(got) == 60
    assert all(f == big for f in got)


@pytest.mark.anyio
async def test_jsonl_awrite(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    t = tunnel()
    with JsonLinesWriter(path, fsync=True) as w:
        await w.awrite(t)
    assert list(read_jsonl(path)) == [t]


def small(n: int, size: int = 10) -> Flow:
    return Flow(HttpRequestRecord("GET", f"http://h/{n}", body=CapturedBody.of(b"x" * size)))


def test_store_evicts_oldest_by_count() -> None:
    store = FlowStore(max_flows=3)
    flows = [small(i) for i in range(5)]
    for f in flows:
        store.add(f)
    assert store.flows() == flows[2:]
    assert len(store) == 3
    assert store.evicted == 2
    assert flows[0].id not in store
    assert store.get(flows[4].id) is flows[4]
    assert store.body_bytes == 30
    store.add(tunnel())
    assert len(store.http_flows()) == 2
    assert len(store) == 3


def test_store_evicts_oldest_by_body_bytes_and_strips_an_oversized_flow() -> None:
    store = FlowStore(max_flows=100, max_body_bytes=100)
    flows = [small(i, 40) for i in range(4)]
    for f in flows:
        store.add(f)
    assert store.flows() == flows[2:]
    assert store.body_bytes == 80
    huge = small(9, 1000)
    store.add(huge)
    # the huge flow keeps its metadata and real size, not its bytes; the others stay
    assert store.flows() == [*flows[2:], huge]
    assert huge.request.body.data == b""
    assert huge.request.body.size == 1000
    assert huge.request.body.truncated
    assert store.body_bytes == 80


def test_store_update_recounts_a_growing_flow() -> None:
    store = FlowStore(max_body_bytes=100)
    a, b = small(0, 30), small(1, 30)
    store.add(a)
    store.add(b)
    a.websocket.append(WebSocketMessage("send", False, b"z" * 50, 0.0))
    store.update(a)  # a grew to 80: the oldest other flow (b) goes, a stays
    assert store.flows() == [a]
    assert store.body_bytes == 80
    store.add(a)  # adding again is an update
    assert len(store) == 1
    store.clear()
    assert len(store) == 0
    assert store.body_bytes == 0


def test_store_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="max_flows"):
        FlowStore(max_flows=0)
    with pytest.raises(ValueError, match="max_body_bytes"):
        FlowStore(max_body_bytes=-1)
    with pytest.raises(ValueError, match="buffer"):
        FlowStore().subscribe(buffer=0)


@pytest.mark.anyio
async def test_subscribers_see_live_events_in_order() -> None:
    store = FlowStore(max_flows=2)
    old = small(0)
    store.add(old)
    seen: list[tuple[str, str]] = []
    with anyio.fail_after(5):
        async with store.subscribe(replay=True) as sub:
            new = [small(1), small(2)]

            async def produce() -> None:
                for f in new:
                    await anyio.sleep(0)
                    store.add(f)
                store.update(new[1])

            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                async for ev in sub:
                    seen.append((ev.kind, ev.flow.request.url))  # type: ignore[union-attr]
                    if len(seen) == 5:
                        break
    assert seen == [
        ("added", "http://h/0"),
        ("added", "http://h/1"),
        ("added", "http://h/2"),
        ("evicted", "http://h/0"),
        ("updated", "http://h/2"),
    ]


@pytest.mark.anyio
async def test_a_stalled_subscriber_is_cut_off_without_blocking_the_store() -> None:
    store = FlowStore()
    slow = store.subscribe(buffer=2)
    fast = store.subscribe(buffer=100)
    for i in range(10):
        store.add(small(i))  # never blocks, whatever the viewers do
    got = []
    with anyio.fail_after(5), pytest.raises(SubscriberLagged):
        async for ev in slow:
            got.append(ev)
    assert len(got) == 2
    assert slow.lagged
    fast.close()
    assert [ev async for ev in fast] == []
    assert len(store._subscribers) == 0


@pytest.mark.anyio
async def test_websocket_messages_are_counted_capped_and_announced() -> None:
    store = FlowStore(max_body_bytes=1000, max_websocket_messages=3)
    other, ws = small(0, 100), small(1, 0)
    store.add(other)
    store.add(ws)
    sub = store.subscribe()
    for i in range(5):
        kept = store.add_websocket_message(ws, WebSocketMessage("send", True, b"m" * 10, float(i)))
        assert kept == (i < 3)
    assert len(ws.websocket) == 3
    assert ws.websocket_dropped == 2
    assert store.body_bytes == 130
    with anyio.fail_after(5):
        events = []
        async for ev in sub:
            events.append(ev)
            if len(events) == 3:
                break
    sub.close()
    assert [e.kind for e in events] == ["message"] * 3
    assert events[0].message is ws.websocket[0]
    # the dropped count survives JSON lines and HAR
    assert flow_from_json(json.loads(json.dumps(ws.to_json()))) == ws
    from rama_proxy.flows import from_har, to_har

    assert from_har(to_har([ws], redact=False)) == [ws]


def test_websocket_messages_evict_others_then_strip_their_own_flow() -> None:
    store = FlowStore(max_body_bytes=1000)
    other, ws = small(0, 500), small(1, 0)
    store.add(other)
    store.add(ws)
    for i in range(10):
        store.add_websocket_message(ws, WebSocketMessage("receive", False, b"x" * 60, float(i)))
    assert store.flows() == [ws]  # the older flow went first
    for i in range(20):
        store.add_websocket_message(ws, WebSocketMessage("receive", False, b"x" * 60, float(i)))
    assert store.body_bytes <= 1000
    assert any(m.truncated and m.payload == b"" for m in ws.websocket)
    assert all(m.size == 60 for m in ws.websocket)
    # a flow that is not stored still records, uncounted
    gone = small(9, 0)
    assert store.add_websocket_message(gone, WebSocketMessage("send", True, b"a", 0.0))
    assert store.body_bytes <= 1000


def test_many_websocket_messages_cost_constant_time_each() -> None:
    import time

    store = FlowStore(max_websocket_messages=200_000)
    ws = small(0, 0)
    store.add(ws)
    t0 = time.perf_counter()
    for i in range(50_000):
        store.add_websocket_message(ws, WebSocketMessage("send", True, b"hello", float(i)))
    assert time.perf_counter() - t0 < 5  # quadratic accounting would take minutes
    assert store.body_bytes == 250_000


def test_records_from_rama_requests_and_responses() -> None:
    from rama_http import Body, Headers, Request, Response, Version

    req = Request(
        "POST",
        "/p?q=1",
        headers=[("Host", "a.test:8080"), ("X-B", "2"), ("x-a", "1")],
        body=b"data",
    )
    rec = HttpRequestRecord.from_request(req, scheme="https")
    assert rec == HttpRequestRecord(
        "POST",
        "https://a.test:8080/p?q=1",
        "HTTP/1.1",
        [("Host", "a.test:8080"), ("X-B", "2"), ("x-a", "1")],
        CapturedBody.of(b"data"),
    )
    absolute = Request("GET", "http://b.test/x", version=Version.HTTP_2)
    assert HttpRequestRecord.from_request(absolute).url == "http://b.test/x"
    assert HttpRequestRecord.from_request(absolute).http_version == "HTTP/2"

    async def chunks():  # type: ignore[no-untyped-def]
        yield b"x"

    streaming = Request("PUT", "http://c.test/", body=Body.from_iter(chunks()))
    assert HttpRequestRecord.from_request(streaming).body == CapturedBody()
    given = CapturedBody.of(b"seen", limit=2)
    assert HttpRequestRecord.from_request(streaming, body=given).body is given

    resp = Response(404, headers=[("Content-Type", "text/plain")], body=b"nope")
    r = HttpResponseRecord.from_response(resp)
    assert (r.status, r.reason, r.http_version) == (404, "Not Found", "HTTP/1.1")
    assert r.headers == [("Content-Type", "text/plain")]
    assert r.body == CapturedBody.of(b"nope")
    trailered = Response(200, reason="Fine", body=b"")
    trailered.body.set_trailers(Headers([("grpc-status", "0")]))
    t = HttpResponseRecord.from_response(trailered)
    assert t.reason == "Fine"
    assert t.trailers == [("grpc-status", "0")]
