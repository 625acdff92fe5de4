"""FlowRecordingObserver with a real MITM: curl and python websockets through it, then the
HAR (schema-valid, bodies, ``_webSocketMessages``, redaction), the JSON lines, and a
recorded request exported with to_curl and re-run against the origin."""

from __future__ import annotations

import json
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import jsonschema
import pytest
import websockets.sync.client

from rama_core import Context, service_fn
from rama_http import Request, Response
from rama_http.server import ServerConfig, serve
from rama_http.ws import WebSocket, WebSocketUpgrade
from rama_net import TcpListener
from rama_proxy.flows import (
    REDACTED,
    Flow,
    FlowRecorder,
    FlowStore,
    TunnelFlow,
    har_schema,
    load_har,
    read_jsonl,
    to_curl,
)
from rama_proxy.mitm import FlowRecordingObserver, HostPolicy, MitmProxy
from rama_tls import CertificateAuthority

sys.path.insert(0, str(Path(__file__).parent))
from mitm_testutil import curl, origin_tls, run_mitm


async def _echo_ws(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


_WS = WebSocketUpgrade(_echo_ws)


class Origin:
    """Records each request (method, target, headers, body) and answers by path."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, list[tuple[str, str]], bytes]] = []
        self.port = 0

    async def handle(self, ctx: Context, req: Request) -> Response:
        if req.path == "/ws":
            return await _WS.serve(ctx, req)
        body = await req.body.read()
        self.seen.append((req.method, req.target, req.headers.items(), body))
        if req.path == "/big":
            return Response(
                200,
                headers=[("Content-Type", "application/octet-stream")],
                body=b"\x00\xff" * 50_000,
            )
        return Response(
            200,
            headers=[("Content-Type", "text/plain"), ("Set-Cookie", "session=s3cret; Path=/")],
            body=f"{req.method} {req.target} body={body.decode('latin-1')}\n".encode(),
        )


@asynccontextmanager
async def run_origin(ca: CertificateAuthority) -> AsyncIterator[Origin]:
    origin = Origin()
    async with TcpListener.bind("127.0.0.1:0") as listener, anyio.create_task_group() as tg:
        origin.port = listener.local_addr.port
        tg.start_soon(
            lambda: serve(
                listener,
                service_fn(origin.handle),
                ServerConfig(max_body_size=None),
                tls=origin_tls(ca, ("http/1.1",)),
            )
        )
        try:
            yield origin
        finally:
            tg.cancel_scope.cancel()


async def _wait_for(store: FlowStore, n: int, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while len(store) < n:
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_curl_and_websockets_are_recorded_as_har_and_jsonl(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    tmp_path: Path,
    require_peer: Callable[[str], str],
) -> None:
    require_peer("curl")
    ca_file = tmp_path / "mitm-ca.pem"
    ca_file.write_bytes(mitm_ca.cert_pem())
    origin_file = tmp_path / "origin-ca.pem"
    origin_file.write_bytes(origin_ca.cert_pem())
    har, jsonl = tmp_path / "s.har", tmp_path / "s.jsonl"
    recorder = FlowRecorder(jsonl=jsonl, har=har, capture_limit=4096)
    async with (
        run_origin(origin_ca) as origin,
        FlowRecordingObserver(recorder) as observer,
    ):
        mitm = MitmProxy(
            mitm_ca,
            upstream_ca=origin_ca.cert_pem(),
            observer=observer,
            policy=HostPolicy(pass_through=["127.0.0.1"]),
        )
        async with run_mitm(mitm) as (port, _):
            proxy = f"http://127.0.0.1:{port}"
            base = f"https://localhost:{origin.port}"
            code, out, err = await curl(
                "--http1.1", "-x", proxy, "--cacert", str(ca_file),
                "-H", "Authorization: Bearer t0ken", "-H", "Cookie: c=1",
                "--data-binary", "hello=world", f"{base}/post?q=1",
            )  # fmt: skip
            assert code == 0, err
            assert out == "POST /post?q=1 body=hello=world\n"
            code, out, err = await curl(
                "--http1.1", "-x", proxy, "--cacert", str(ca_file), "-o", "/dev/null",
                f"{base}/big",
            )  # fmt: skip
            assert code == 0, err
            # a pass-through host: a tunnel, the client sees the origin's certificate
            code, out, err = await curl(
                "-x", proxy, "--cacert", str(origin_file),
                f"https://127.0.0.1:{origin.port}/tunnelled",
            )  # fmt: skip
            assert code == 0, err
            ctx = ssl.create_default_context(cadata=mitm_ca.cert_pem().decode())

            def ws_client() -> list[object]:
                with websockets.sync.client.connect(
                    f"wss://localhost:{origin.port}/ws", proxy=proxy, ssl=ctx, open_timeout=5
                ) as ws:
                    ws.send("ping")
                    first = ws.recv(timeout=5)
                    ws.send(b"\x00\x01bin")
                    return [first, ws.recv(timeout=5)]

            assert await anyio.to_thread.run_sync(ws_client) == ["ping", b"\x00\x01bin"]
            await _wait_for(recorder.store, 4)
            live = recorder.store.flows()
    # the files are closed: the HAR is complete and valid
    doc = json.loads(har.read_text())
    jsonschema.validate(doc, har_schema())
    entries = doc["log"]["entries"]
    by_path = {e["request"]["url"].split(str(origin.port), 1)[1]: e for e in entries}
    assert set(by_path) == {"/post?q=1", "/big", "/ws"}
    post = by_path["/post?q=1"]
    assert post["request"]["method"] == "POST"
    assert post["request"]["postData"]["text"] == "hello=world"
    assert post["response"]["content"]["text"] == "POST /post?q=1 body=hello=world\n"
    assert post["serverIPAddress"] == "127.0.0.1"
    headers = {h["name"].lower(): h["value"] for h in post["request"]["headers"]}
    assert headers["authorization"] == REDACTED
    assert headers["cookie"] == REDACTED
    set_cookie = [h for h in post["response"]["headers"] if h["name"].lower() == "set-cookie"]
    assert set_cookie
    assert all(h["value"] == REDACTED for h in set_cookie)
    assert "t0ken" not in har.read_text()
    assert "s3cret" not in har.read_text()
    t = post["timings"]
    assert t["connect"] >= t["ssl"] > 0  # the connection the MITM opened, on its first use
    assert t["wait"] >= 0
    assert t["send"] >= 0
    assert t["receive"] >= 0
    assert post["_rama"]["client_tls"]["sni"] == "localhost"
    assert post["_rama"]["client_tls"]["alpn"] == "http/1.1"
    assert post["_rama"]["server_tls"]["version"].startswith("TLS")
    big = by_path["/big"]
    assert big["response"]["bodySize"] == 100_000  # the real size ...
    assert big["_rama"]["response_body"]["truncated"]  # ... of a capture cut at 4096
    ws = by_path["/ws"]
    assert ws["response"]["status"] == 101
    assert ws["_resourceType"] == "websocket"
    msgs = [(m["type"], m["opcode"], m["data"]) for m in ws["_webSocketMessages"]]
    assert msgs == [
        ("send", 1, "ping"),
        ("receive", 1, "ping"),
        ("send", 2, "AAFiaW4="),
        ("receive", 2, "AAFiaW4="),
    ]
    # the HAR reads back
    flows = load_har(har)
    assert {f.request.method for f in flows} == {"POST", "GET"}
    # the JSON lines: the same HTTP flows (unredacted) plus the tunnel
    lines = list(read_jsonl(jsonl))
    http = [f for f in lines if isinstance(f, Flow)]
    tunnels = [f for f in lines if isinstance(f, TunnelFlow)]
    assert len(http) == 3
    assert len(tunnels) == 1
    assert tunnels[0].target == ("127.0.0.1", origin.port)
    assert tunnels[0].bytes_up > 0
    assert tunnels[0].bytes_down > 0
    assert tunnels[0].duration is not None
    rec_post = next(f for f in http if f.request.method == "POST")
    assert rec_post.request.header("authorization") == "Bearer t0ken"
    assert rec_post.request.body.data == b"hello=world"
    assert {f.id for f in live} == {f.id for f in lines}
    assert observer.recorded == 4
    assert observer.write_errors == 0

    # to_curl of the recorded request, run against the origin, sends the same request
    async with run_origin(origin_ca) as origin2:
        rec_post.request.url = rec_post.request.url.replace(str(origin.port), str(origin2.port))
        cmd = to_curl(rec_post) + f" -sS --max-time 10 --cacert {origin_file}"
        r = await anyio.run_process(["sh", "-c", cmd], check=False)
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"POST /post?q=1 body=hello=world\n"
    sent, again = origin.seen[0], origin2.seen[0]
    assert again[:2] == sent[:2]
    assert again[3] == sent[3]
    assert again[2] == sent[2]  # every header, in order, casing kept (the recorded Host too)


@pytest.mark.anyio
async def test_refused_and_untrusted_connections_are_tunnel_records(
    mitm_ca: CertificateAuthority, tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    require_peer("curl")
    other_ca = CertificateAuthority.create("not trusted")
    ca_file = tmp_path / "mitm-ca.pem"
    ca_file.write_bytes(mitm_ca.cert_pem())
    async with run_origin(other_ca) as origin, FlowRecordingObserver() as observer:
        mitm = MitmProxy(
            mitm_ca,
            observer=observer,
            upstream_ca=mitm_ca.cert_pem(),  # the origin's CA is not trusted
            policy=HostPolicy(reject=["blocked.localhost"]),
        )
        async with run_mitm(mitm) as (port, _):
            code, _out, err = await curl(
                "-x", f"http://127.0.0.1:{port}", "--cacert", str(ca_file),
                f"https://localhost:{origin.port}/x",
            )  # fmt: skip
            assert code == 0, err  # the 502 page, from the MITM
            await _wait_for(observer.store, 1)
    [tunnel] = observer.store.flows()
    assert isinstance(tunnel, TunnelFlow)
    assert tunnel.sni == "localhost"
    assert tunnel.error == "the server's certificate is not trusted"


@pytest.mark.anyio
async def test_unfinished_flows_are_written_on_close(tmp_path: Path) -> None:
    from rama_http import Headers
    from rama_net import Authority
    from rama_proxy.mitm import HttpFlow, MitmConnection

    har = tmp_path / "u.har"
    observer = FlowRecordingObserver(har=har)  # not entered: written inline
    conn = MitmConnection(Authority.parse("example.test:443"))
    observer.connection_started(conn)
    req = Request("GET", "/x", headers=Headers([("Host", "example.test")]))
    flow = HttpFlow(conn, req, authority="example.test")
    observer.request(flow)
    observer.request_body(flow, b"")
    await observer.aclose()
    [entry] = json.loads(har.read_text())["log"]["entries"]
    assert entry["request"]["url"] == "https://example.test/x"
    assert entry["_error"] == "unfinished when the recording stopped"
    jsonschema.validate(json.loads(har.read_text()), har_schema())
    # after close: later events are counted as dropped, never written to closed files
    late = HttpFlow(conn, Request("GET", "/late"), authority="example.test")
    observer.request(late)
    observer.flow_finished(late)
    assert observer.dropped == 1
    assert observer.write_errors == 0
    observer.connection_finished(conn)
    assert observer.recorded == 1


@pytest.mark.anyio
async def test_har_timings_from_the_mitm_clock() -> None:
    """connect/ssl come from the connection's dial, on its first exchange only; blocked,
    send, wait and receive from the exchange's own times (synthetic, exact)."""
    from rama_http import Headers
    from rama_net import Authority
    from rama_proxy.flows import to_har
    from rama_proxy.mitm import HttpFlow, MitmConnection

    observer = FlowRecordingObserver()
    t0 = anyio.current_time()
    conn = MitmConnection(Authority.parse("example.test:443"), started=t0)
    conn.upstream_dial_started, conn.upstream_connected, conn.upstream_tls_done = (
        t0 + 0.001,
        t0 + 0.011,
        t0 + 0.031,
    )
    observer.connection_started(conn)
    flows = []
    for i in range(2):
        base = t0 + 1 + i
        req = Request("POST", f"/{i}", headers=Headers([("Host", "example.test")]))
        flow = HttpFlow(conn, req, authority="example.test", started=base)
        flow.request_sent = base + 0.002  # 2 ms in hooks / waiting for a connection
        observer.request(flow)
        observer.request_body(flow, b"abc")  # sent "now": send = now - request_sent
        flow.response_started = anyio.current_time() + 0.050
        flow.response = Response(200, body=b"ok")
        observer.response(flow)
        observer.response_body(flow, b"ok")
        flow.finished = flow.response_started + 0.020
        observer.flow_finished(flow)
        flows.append(flow)
    await observer.aclose()
    first, second = (e["timings"] for e in to_har(observer.store.http_flows())["log"]["entries"])
    assert first["blocked"] == pytest.approx(2.0, abs=0.01)
    assert first["connect"] == pytest.approx(30.0, abs=0.01)  # HAR's connect includes ssl
    assert first["ssl"] == pytest.approx(20.0, abs=0.01)
    assert first["wait"] == pytest.approx(50.0, abs=1.0)  # two clock reads apart
    assert first["receive"] == pytest.approx(20.0, abs=0.01)
    assert first["send"] >= 0
    assert second["connect"] == -1  # a reused connection
    assert second["ssl"] == -1
    assert second["wait"] == pytest.approx(50.0, abs=1.0)
