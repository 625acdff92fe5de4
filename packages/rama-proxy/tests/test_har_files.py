"""HAR files: save/load, the streaming HarWriter (crash-tolerant), and FlowRecorder."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import anyio
import jsonschema
import pytest

from rama_proxy.flows import (
    CapturedBody,
    Flow,
    FlowFormatError,
    FlowRecorder,
    FlowStore,
    HarWriter,
    HttpRequestRecord,
    HttpResponseRecord,
    TunnelFlow,
    WebSocketMessage,
    har_schema,
    load_har,
    read_jsonl,
    save_har,
    to_har,
)


def flow(n: int, body: bytes = b"") -> Flow:
    return Flow(
        HttpRequestRecord(
            "POST",
            f"https://h.test/{n}",
            "HTTP/1.1",
            [("Host", "h.test"), ("Authorization", "Bearer TOKEN")],
            CapturedBody.of(body),
        ),
        HttpResponseRecord(200, "OK", "HTTP/1.1", [("Content-Type", "text/plain")]),
        started_at=1_700_000_000.0 + n,
    )


def test_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "a.har"
    flows = [flow(1), flow(2, b"\xff\x00")]
    save_har(path, flows, redact=False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_har(path) == flows
    save_har(path, flows)  # replaces atomically; redacted by default
    assert "TOKEN" not in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["a.har"]
    jsonschema.validate(json.loads(path.read_text()), har_schema())


def test_har_writer_streams_the_same_entries_as_to_har(tmp_path: Path) -> None:
    path = tmp_path / "s.har"
    flows = [flow(i, b"x" * i) for i in range(3)]
    with HarWriter(path, redact=False) as w:
        for f in flows:
            w.write(f)
        assert w.written == 3
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, har_schema())
    assert doc["log"]["entries"] == to_har(flows, redact=False)["log"]["entries"]
    assert load_har(path) == flows
    with pytest.raises(ValueError, match="closed"):
        w.write(flows[0])
    with HarWriter(tmp_path / "empty.har"):
        pass
    assert load_har(tmp_path / "empty.har") == []


def test_an_unclosed_har_writer_file_is_repaired(tmp_path: Path) -> None:
    path = tmp_path / "crash.har"
    flows = [flow(i) for i in range(3)]
    w = HarWriter(path, redact=False)
    for f in flows:
        w.write(f)
    w._f.write(b',{"startedDateTime":"2023-')  # the write in progress when it died
    w._f.flush()
    assert load_har(path) == flows
    w._f.close()
    (tmp_path / "bad.har").write_bytes(b'{"log": {"entries": [')
    with pytest.raises(FlowFormatError):
        load_har(tmp_path / "bad.har")


@pytest.mark.anyio
async def test_flow_recorder_feeds_store_jsonl_and_har(tmp_path: Path) -> None:
    store = FlowStore(max_flows=10)
    sub = store.subscribe()
    async with FlowRecorder(
        store, jsonl=tmp_path / "f.jsonl", har=tmp_path / "f.har", capture_limit=100
    ) as rec:
        small = flow(1)
        rec.started(small)
        cap = rec.body_capture()
        cap.feed(b"y" * 70)
        cap.feed(b"y" * 70)
        small.request.body = cap.result()
        assert small.request.body.size == 140
        assert small.request.body.truncated
        small.websocket.append(WebSocketMessage("send", True, b"hi", 2.0))
        rec.updated(small)
        await rec.finished(small)
        big = flow(2, b"z" * 200_000)  # written from a worker thread
        rec.started(big)
        await rec.finished(big)
        t = TunnelFlow(("bank.test", 443), bytes_up=1, bytes_down=2)
        rec.started(t)
        await rec.finished(t)
        unfinished = flow(3)
        rec.started(unfinished)
    assert [f.id for f in read_jsonl(tmp_path / "f.jsonl")] == [small.id, big.id, t.id]
    assert [f.id for f in load_har(tmp_path / "f.har")] == [small.id, big.id]  # HTTP only
    assert "TOKEN" not in (tmp_path / "f.har").read_text()  # HAR redacted by default
    assert len(store) == 4
    kinds = []
    with anyio.fail_after(5):
        async for ev in sub:
            kinds.append((ev.kind, ev.flow.id))
            if len(kinds) == 8:
                break
    sub.close()
    assert kinds == [
        ("added", small.id),
        ("updated", small.id),
        ("updated", small.id),
        ("added", big.id),
        ("updated", big.id),
        ("added", t.id),
        ("updated", t.id),
        ("added", unfinished.id),
    ]
