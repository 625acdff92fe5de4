"""HAR 1.2 export (schema-validated, redaction, Chromium extensions), import and replay."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rama_http_client_peer import rama_server

from rama_core import Context
from rama_http import Request, Response
from rama_http.client import HttpClient
from rama_proxy.flows import (
    REDACTED,
    CapturedBody,
    Flow,
    FlowFormatError,
    HttpRequestRecord,
    HttpResponseRecord,
    TimingRecord,
    TlsRecord,
    WebSocketMessage,
    from_har,
    har_schema,
    replay_har,
    to_har,
)

VALIDATOR = jsonschema.Draft7Validator(har_schema())


def validate(doc: dict[str, Any]) -> None:
    VALIDATOR.validate(doc)


def h1_get() -> Flow:
    return Flow(
        HttpRequestRecord(
            "GET",
            "http://example.test/search?q=a+b&empty=&x=%C3%A9",
            "HTTP/1.1",
            [
                ("Host", "example.test"),
                ("Cookie", "sid=SECRET1; theme=dark"),
                ("Authorization", "Bearer SECRET2"),
                ("Sec-Fetch-Dest", "script"),
            ],
        ),
        HttpResponseRecord(
            302,
            "Found",
            "HTTP/1.1",
            [
                ("Location", "/next"),
                ("Set-Cookie", "sid=SECRET3; Path=/; HttpOnly; Secure; SameSite=Lax"),
                ("set-cookie", "b=2; Expires=Wed, 21 Oct 2035 07:28:00 GMT; Domain=example.test"),
                ("Content-Type", "text/plain"),
            ],
            CapturedBody.of(b"moved"),
        ),
        started_at=1_700_000_000.5,
        timings=TimingRecord(dns=0.001, connect=0.002, send=0.0005, wait=0.01, receive=0.002),
        server_addr=("93.184.216.34", 80),
        client_addr=("127.0.0.1", 40000),
    )


def h2_binary_post() -> Flow:
    return Flow(
        HttpRequestRecord(
            "POST",
            "https://api.test/upload",
            "HTTP/2",
            [("content-type", "application/octet-stream"), ("proxy-authorization", "Basic X")],
            CapturedBody.of(bytes(range(256)), limit=200),
        ),
        HttpResponseRecord(
            200,
            "",
            "HTTP/2",
            [("content-type", "image/png")],
            CapturedBody.of(b"\x89PNG\r\n\x1a\n\x00\xff"),
            trailers=[("grpc-status", "0")],
        ),
        started_at=1_700_000_001.25,
        timings=TimingRecord(connect=0.003, ssl=0.004, send=0.001, wait=0.02, receive=0.003),
        server_addr=("::1", 443),
        client_tls=TlsRecord("api.test", "h2", "TLSv1.3", "TLS_AES_128_GCM_SHA256"),
        server_tls=TlsRecord("api.test", "h2", "TLSv1.3", "TLS_AES_256_GCM_SHA384"),
        connection="7",
        resource_type="fetch",
    )


def websocket() -> Flow:
    return Flow(
        HttpRequestRecord(
            "GET",
            "https://chat.test/ws",
            "HTTP/1.1",
            [("Host", "chat.test"), ("Upgrade", "websocket"), ("Connection", "Upgrade")],
        ),
        HttpResponseRecord(101, "Switching Protocols", "HTTP/1.1", [("Upgrade", "websocket")]),
        started_at=1_700_000_002.0,
        websocket=[
            WebSocketMessage("send", True, "hello ☃".encode(), 1_700_000_002.1),
            WebSocketMessage("receive", False, b"\x00\x01\xfe\xff", 1_700_000_002.2),
            WebSocketMessage("receive", True, b"caf\xc3", 1_700_000_002.3, truncated=True),
        ],
    )


def failed() -> Flow:
    return Flow(
        HttpRequestRecord("GET", "https://down.test/", "HTTP/1.1", [("Host", "down.test")]),
        started_at=1_700_000_003.0,
        error="connection refused",
    )


def all_flows() -> list[Flow]:
    return [h1_get(), h2_binary_post(), websocket(), failed()]


def test_export_is_valid_har_1_2() -> None:
    doc = to_har(all_flows(), pages=[], comment="test")
    validate(doc)
    validate(json.loads(json.dumps(doc)))
    log = doc["log"]
    assert log["version"] == "1.2"
    assert log["creator"]["name"] == "rama"
    assert len(log["entries"]) == 4


def test_schema_is_a_valid_draft7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(har_schema())


def test_schema_rejects_broken_documents() -> None:
    good = to_har([h1_get()])
    validate(good)

    def broken(mutate: Any) -> dict[str, Any]:
        d = copy.deepcopy(good)
        mutate(d)
        return d

    e = "entries"
    bad = [
        broken(lambda d: d["log"].pop("creator")),
        broken(lambda d: d["log"][e][0].pop("timings")),
        broken(lambda d: d["log"][e][0]["request"].pop("queryString")),
        broken(lambda d: d["log"][e][0]["response"].pop("redirectURL")),
        broken(lambda d: d["log"][e][0].update(startedDateTime="yesterday")),
        broken(lambda d: d["log"][e][0].update(customField=1)),  # no underscore
        broken(lambda d: d["log"][e][0]["timings"].update(send=-1)),
        broken(lambda d: d["log"][e][0]["response"]["content"].pop("mimeType")),
        broken(lambda d: d["log"][e][0]["request"]["headers"].append({"name": "x"})),
        broken(lambda d: d["log"][e][0]["request"].update(postData={"text": "x"})),
        broken(lambda d: d["log"][e][0].update(_webSocketMessages=[{"type": "up"}])),
    ]
    for doc in bad:
        with pytest.raises(jsonschema.ValidationError):
            validate(doc)


def test_entry_fields() -> None:
    get, post, ws, fail = to_har(all_flows(), redact=False)["log"]["entries"]
    assert get["startedDateTime"] == "2023-11-14T22:13:20.500Z"
    assert get["serverIPAddress"] == "93.184.216.34"
    assert get["timings"] == {
        "blocked": -1.0,
        "dns": 1.0,
        "connect": 2.0,
        "send": 0.5,
        "wait": 10.0,
        "receive": 2.0,
        "ssl": -1.0,
    }
    assert get["time"] == pytest.approx(15.5)
    assert get["_resourceType"] == "script"  # from Sec-Fetch-Dest
    req = get["request"]
    assert req["queryString"] == [
        {"name": "q", "value": "a b"},
        {"name": "empty", "value": ""},
        {"name": "x", "value": "é"},
    ]
    assert req["cookies"] == [
        {"name": "sid", "value": "SECRET1"},
        {"name": "theme", "value": "dark"},
    ]
    assert [h["name"] for h in req["headers"]] == [
        "Host",
        "Cookie",
        "Authorization",
        "Sec-Fetch-Dest",
    ]
    head = (
        "GET /search?q=a+b&empty=&x=%C3%A9 HTTP/1.1\r\nHost: example.test\r\n"
        "Cookie: sid=SECRET1; theme=dark\r\nAuthorization: Bearer SECRET2\r\n"
        "Sec-Fetch-Dest: script\r\n\r\n"
    )
    assert req["headersSize"] == len(head)
    assert req["bodySize"] == 0
    assert "postData" not in req
    resp = get["response"]
    assert resp["redirectURL"] == "/next"
    assert resp["content"] == {
        "size": 5,
        "compression": 0,
        "mimeType": "text/plain",
        "text": "moved",
    }
    assert resp["cookies"][0] == {
        "name": "sid",
        "value": "SECRET3",
        "path": "/",
        "httpOnly": True,
        "secure": True,
        "_sameSite": "Lax",
    }
    assert resp["cookies"][1]["expires"] == "2035-10-21T07:28:00+00:00"
    assert resp["cookies"][1]["domain"] == "example.test"

    assert post["timings"]["connect"] == 7.0  # HAR's connect includes ssl
    assert post["timings"]["ssl"] == 4.0
    assert post["connection"] == "7"
    assert post["serverIPAddress"] == "::1"
    assert post["request"]["headersSize"] == -1  # h2
    pd = post["request"]["postData"]
    assert pd["encoding"] == "base64"
    assert base64.b64decode(pd["text"]) == bytes(range(200))
    assert post["request"]["bodySize"] == 256
    content = post["response"]["content"]
    assert content["encoding"] == "base64"
    assert base64.b64decode(content["text"]) == b"\x89PNG\r\n\x1a\n\x00\xff"

    assert ws["_resourceType"] == "websocket"
    assert ws["_webSocketMessages"] == [
        {"type": "send", "time": 1_700_000_002.1, "opcode": 1, "data": "hello ☃"},
        {"type": "receive", "time": 1_700_000_002.2, "opcode": 2, "data": "AAH+/w=="},
        {"type": "receive", "time": 1_700_000_002.3, "opcode": 1, "data": "caf\ufffd"},
    ]
    assert fail["response"]["status"] == 0
    assert fail["_error"] == "connection refused"


def test_credentials_are_redacted_by_default() -> None:
    doc = to_har(all_flows())
    validate(doc)
    text = json.dumps(doc)
    for secret in ("SECRET1", "SECRET2", "SECRET3", "Basic X"):
        assert secret not in text
    get = doc["log"]["entries"][0]
    headers = {h["name"]: h["value"] for h in get["request"]["headers"]}
    assert headers["Cookie"] == REDACTED
    assert headers["Authorization"] == REDACTED
    assert headers["Host"] == "example.test"
    assert get["request"]["cookies"] == [
        {"name": "sid", "value": REDACTED},
        {"name": "theme", "value": REDACTED},
    ]
    assert all(c["value"] == REDACTED for c in get["response"]["cookies"])
    assert [
        h["value"] for h in get["response"]["headers"] if h["name"].lower() == "set-cookie"
    ] == [
        REDACTED,
        REDACTED,
    ]
    post = doc["log"]["entries"][1]
    assert post["request"]["headers"][1] == {"name": "proxy-authorization", "value": REDACTED}
    assert "SECRET2" in json.dumps(to_har([h1_get()], redact=False))


def test_a_password_in_the_url_is_redacted() -> None:
    f = Flow(HttpRequestRecord("GET", "https://bob:hunter2@h.test/x?y=1"), started_at=1.0)
    entry = to_har([f])["log"]["entries"][0]
    assert entry["request"]["url"] == "https://bob:%5Bredacted%5D@h.test/x?y=1"
    assert to_har([f], redact=False)["log"]["entries"][0]["request"]["url"] == f.request.url
    plain = Flow(HttpRequestRecord("GET", "https://bob@h.test/"), started_at=1.0)
    assert to_har([plain])["log"]["entries"][0]["request"]["url"] == "https://bob@h.test/"


def test_round_trip_exact() -> None:
    flows = all_flows()
    doc = to_har(flows, redact=False)
    assert from_har(doc) == flows
    assert from_har(json.dumps(doc)) == flows
    assert from_har(json.dumps(doc).encode()) == flows


def test_reads_foreign_har_without_rama_extensions() -> None:
    doc = to_har(all_flows(), redact=False)
    for entry in doc["log"]["entries"]:
        del entry["_rama"]
    get, post, ws, fail = from_har(doc)
    assert get.request.headers == h1_get().request.headers
    assert get.started_at == pytest.approx(1_700_000_000.5)
    assert get.resource_type == "script"
    assert get.timings.connect == pytest.approx(0.002)
    assert get.timings.ssl is None
    assert get.server_addr == ("93.184.216.34", 80)
    assert post.timings.connect == pytest.approx(0.003)  # ssl taken back out of connect
    assert post.timings.ssl == pytest.approx(0.004)
    assert post.request.http_version == "HTTP/2"
    assert post.request.body.data == bytes(range(200))
    assert post.response is not None
    assert post.response.body.data == b"\x89PNG\r\n\x1a\n\x00\xff"
    assert [m.payload for m in ws.websocket][:2] == ["hello ☃".encode(), b"\x00\x01\xfe\xff"]
    assert fail.response is None
    assert fail.error == "connection refused"
    # Chromium writes "http/2.0" and has no _rama: still read
    doc["log"]["entries"][1]["request"]["httpVersion"] = "http/2.0"
    assert from_har(doc)[1].request.http_version == "HTTP/2"


@pytest.mark.parametrize(
    "doc",
    [
        "not json",
        {},
        {"log": {}},
        {"log": {"entries": [{}]}},
        {"log": {"entries": [{"request": {"method": "GET"}}]}},
    ],
)
def test_from_har_malformed(doc: Any) -> None:
    with pytest.raises(FlowFormatError):
        from_har(doc)


def test_from_har_bad_base64_and_encoding() -> None:
    doc = to_har([h2_binary_post()])
    doc["log"]["entries"][0]["request"]["postData"]["text"] = "!!!"
    with pytest.raises(FlowFormatError, match="base64"):
        from_har(doc)
    doc = to_har([h2_binary_post()])
    doc["log"]["entries"][0]["response"]["content"]["encoding"] = "rot13"
    with pytest.raises(FlowFormatError, match="encoding"):
        from_har(doc)


text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=15
)


@settings(max_examples=50, deadline=None)
@given(
    headers=st.lists(st.tuples(text, text), max_size=6),
    body=st.binary(max_size=100) | text.map(str.encode),
    status=st.none() | st.integers(100, 599),
    started=st.floats(0, 4e9, allow_nan=False),
    wait=st.none() | st.floats(0, 100, allow_nan=False),
    ws=st.lists(
        st.builds(
            WebSocketMessage,
            st.sampled_from(["send", "receive"]),
            st.booleans(),
            st.binary(max_size=20),
            st.floats(0, 4e9, allow_nan=False),
        ),
        max_size=3,
    ),
)
def test_round_trip_property(
    headers: list[tuple[str, str]],
    body: bytes,
    status: int | None,
    started: float,
    wait: float | None,
    ws: list[WebSocketMessage],
) -> None:
    f = Flow(
        HttpRequestRecord("PUT", "http://h.test/p?a=1", "HTTP/1.1", headers, CapturedBody.of(body)),
        None
        if status is None
        else HttpResponseRecord(status, "R", "HTTP/1.1", headers[::-1], CapturedBody.of(body, 5)),
        started_at=started,
        timings=TimingRecord(wait=wait),
        websocket=ws,
    )
    doc = to_har([f], redact=False)
    validate(doc)
    validate(to_har([f]))
    assert from_har(json.loads(json.dumps(doc))) == [f]


# -- replay against a local rama server that records what it got --------------------------
pytestmark_anyio = pytest.mark.anyio


@pytest.mark.anyio
async def test_replay_against_a_recording_server() -> None:
    got: list[dict[str, Any]] = []

    async def record(ctx: Context, req: Request) -> Response:
        body = await req.read(limit=1 << 20)
        got.append(
            {"method": req.method, "target": req.target, "headers": req.headers.items(), "b": body}
        )
        return Response(
            201, headers=[("X-Replayed", str(len(got))), ("Content-Type", "text/plain")], body=b"ok"
        )

    recorded = [
        Flow(
            HttpRequestRecord(
                "POST",
                "https://prod.example/api/items?x=1&y=%20",
                "HTTP/1.1",
                [
                    ("Host", "prod.example"),
                    ("X-Zeta", "1"),
                    ("content-type", "application/octet-stream"),
                    ("Connection", "keep-alive"),
                    ("Content-Length", "256"),
                    ("x-alpha", 'q"$`'),
                ],
                CapturedBody.of(bytes(range(256))),
            )
        ),
        Flow(
            HttpRequestRecord(
                "GET",
                "https://prod.example/h2/only",
                "HTTP/2",
                [(":authority", "prod.example"), ("accept", "*/*"), ("Cookie", "a=b")],
            )
        ),
    ]
    doc = to_har(recorded)  # redacted: the Cookie is not sent again
    async with (
        rama_server(record) as port,
        HttpClient(cookies=False, decompress=False) as client,
    ):
        base = f"http://127.0.0.1:{port}"
        new = await replay_har(doc, client, base_url=base, timeout=5)
        again = await replay_har(json.dumps(to_har(recorded, redact=False)), client, base_url=base)
    assert [f.error for f in new] == [None, None]
    assert got[0]["method"] == "POST"
    assert got[0]["target"] == "/api/items?x=1&y=%20"
    assert got[0]["headers"] == [
        ("Host", f"127.0.0.1:{port}"),
        ("X-Zeta", "1"),
        ("content-type", "application/octet-stream"),
        ("Content-Length", "256"),
        ("x-alpha", 'q"$`'),
    ]
    assert got[0]["b"] == bytes(range(256))
    assert got[1]["method"] == "GET"
    assert got[1]["target"] == "/h2/only"
    assert got[1]["headers"] == [("Host", f"127.0.0.1:{port}"), ("accept", "*/*")]
    assert got[3]["headers"][-1] == ("Cookie", "a=b")  # unredacted HAR: sent as recorded
    first = new[0]
    assert first.response is not None
    assert first.response.status == 201
    assert first.response.body.data == b"ok"
    assert ("X-Replayed", "1") in first.response.headers
    assert first.request.url == f"{base}/api/items?x=1&y=%20"
    assert again[1].response is not None
    assert ("X-Replayed", "4") in again[1].response.headers
    validate(to_har(new))


@pytest.mark.anyio
async def test_replay_of_a_refused_request_records_the_error_and_goes_on() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    flows = [h1_get(), h1_get()]
    async with HttpClient(cookies=False, retries=0) as client:
        out = await replay_har(flows, client, base_url=f"http://127.0.0.1:{dead}", timeout=3)
    assert len(out) == 2
    assert all(f.response is None and f.error for f in out)
    validate(to_har(out))
    with pytest.raises(ValueError, match="absolute"):
        await replay_har(flows, client, base_url="/relative")


def compressed(coding: str, body: bytes, plain: bytes) -> Flow:
    return Flow(
        HttpRequestRecord("GET", "https://z.test/", "HTTP/1.1", [("Host", "z.test")]),
        HttpResponseRecord(
            200,
            "OK",
            "HTTP/1.1",
            [("Content-Type", "text/html"), ("Content-Encoding", coding)],
            CapturedBody.of(body),
        ),
        started_at=1.0,
    )


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd", "br, gzip"])
def test_encoded_responses_are_shown_decoded_and_still_round_trip(coding: str) -> None:
    import gzip
    import zlib

    import brotli
    import zstandard

    plain = "<p>hé</p>".encode() * 500
    enc = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "br": brotli.compress,
        "zstd": zstandard.ZstdCompressor().compress,
        "br, gzip": lambda b: gzip.compress(brotli.compress(b)),
    }[coding]
    body = enc(plain)
    f = compressed(coding, body, plain)
    doc = to_har([f], redact=False)
    validate(doc)
    resp = doc["log"]["entries"][0]["response"]
    assert resp["content"]["text"] == plain.decode()
    assert "encoding" not in resp["content"]
    assert resp["content"]["size"] == len(plain)
    assert resp["bodySize"] == len(body)
    assert resp["content"]["compression"] == len(plain) - len(body)
    assert from_har(doc) == [f]  # the wire bytes come back, not the decoded text
    raw = to_har([f], decode=False)["log"]["entries"][0]["response"]["content"]
    assert base64.b64decode(raw["text"]) == body
    assert raw["size"] == len(body)


def test_decoding_is_bounded_and_bad_data_stays_raw() -> None:
    import gzip

    bomb = gzip.compress(b"\0" * (4 << 20))  # 4 MiB of zeros in a few KiB
    f = compressed("gzip", bomb, b"")
    content = to_har([f], max_decoded=1 << 20)["log"]["entries"][0]["response"]["content"]
    assert content["encoding"] == "base64"
    assert content["size"] == len(bomb)
    bad = compressed("gzip", b"not gzip at all", b"")
    content = to_har([bad])["log"]["entries"][0]["response"]["content"]
    assert content["text"] == "not gzip at all"
    assert content["compression"] == 0
    cut = compressed("gzip", gzip.compress(b"x" * 1000), b"")
    assert cut.response is not None
    cut.response.body = CapturedBody.of(cut.response.body.data, limit=10)  # truncated capture
    content = to_har([cut])["log"]["entries"][0]["response"]["content"]
    assert content["size"] == cut.response.body.size


CHROMIUM_ENTRY: dict[str, Any] = {
    "_initiator": {"type": "other"},
    "_priority": "VeryHigh",
    "_resourceType": "document",
    "cache": {},
    "connection": "131",
    "pageref": "page_1",
    "request": {
        "method": "GET",
        "url": "https://example.test/?q=1",
        "httpVersion": "http/2.0",
        "headers": [
            {"name": ":authority", "value": "example.test"},
            {"name": ":method", "value": "GET"},
            {"name": ":path", "value": "/?q=1"},
            {"name": ":scheme", "value": "https"},
            {"name": "accept", "value": "text/html"},
            {"name": "user-agent", "value": "Mozilla/5.0"},
        ],
        "queryString": [{"name": "q", "value": "1"}],
        "cookies": [],
        "headersSize": -1,
        "bodySize": 0,
    },
    "response": {
        "status": 200,
        "statusText": "",
        "httpVersion": "http/2.0",
        "headers": [
            {"name": "content-type", "value": "image/png"},
            {"name": "content-encoding", "value": "br"},
        ],
        "cookies": [],
        "content": {"size": 4, "mimeType": "image/png", "text": "iVBORw==", "encoding": "base64"},
        "redirectURL": "",
        "headersSize": -1,
        "bodySize": 120,
        "_transferSize": 220,
        "_error": None,
    },
    "serverIPAddress": "[2001:db8::1]",
    "startedDateTime": "2024-05-01T10:00:00.123Z",
    "time": 42.5,
    "timings": {
        "blocked": 1.2,
        "dns": -1,
        "ssl": -1,
        "connect": -1,
        "send": 0.3,
        "wait": 40.0,
        "receive": 1.0,
        "_blocked_queueing": 0.9,
    },
}


def test_reads_a_chromium_shaped_har_and_exports_it_again() -> None:
    doc = {
        "log": {
            "version": "1.2",
            "creator": {"name": "WebInspector", "version": "537.36"},
            "pages": [
                {
                    "startedDateTime": "2024-05-01T10:00:00.000Z",
                    "id": "page_1",
                    "title": "https://example.test/",
                    "pageTimings": {"onContentLoad": 100.5, "onLoad": 200.25},
                }
            ],
            "entries": [CHROMIUM_ENTRY],
        }
    }
    validate(doc)  # our schema accepts what Chromium writes
    (f,) = from_har(doc)
    assert f.request.http_version == "HTTP/2"
    assert f.request.headers[0] == (":authority", "example.test")
    assert f.response is not None
    assert f.response.body.data == b"\x89PNG"
    assert f.resource_type == "document"
    assert f.connection == "131"
    assert f.server_addr == ("[2001:db8::1]", 443)
    assert f.timings.blocked == pytest.approx(0.0012)
    assert f.timings.dns is None
    assert f.timings.wait == pytest.approx(0.04)
    assert f.started_at == pytest.approx(1714557600.123)
    again = to_har([f], pages=doc["log"]["pages"])
    validate(again)
    e = again["log"]["entries"][0]
    assert e["serverIPAddress"] == "2001:db8::1"
    assert e["startedDateTime"] == "2024-05-01T10:00:00.123Z"
    assert e["time"] == pytest.approx(42.5)
    # pseudo-headers are not replayed and not given to curl
    from rama_proxy.flows import to_curl

    assert ":authority" not in to_curl(f)
