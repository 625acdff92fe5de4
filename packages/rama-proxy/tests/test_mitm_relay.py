"""Body hooks (buffered on request, decoded/re-encoded, size limits), streaming, WebSocket
relay with a message hook (python websockets over wss), httpx with verify= the CA."""

from __future__ import annotations

import contextlib
import gzip
import ssl
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import h2.config
import h2.connection
import h2.events
import httpx
import pytest
import websockets.sync.client
from anyio.abc import ByteStream
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionType
from wsproto.events import Message, TextMessage

from rama_core import Context, service_fn
from rama_http import Body, Request, Response
from rama_http.server import ServerConfig, serve
from rama_http.ws import WebSocket, WebSocketUpgrade
from rama_net import TcpListener, connect_tcp
from rama_proxy.mitm import HttpFlow, MitmHooks, MitmProxy, WebSocketMessage
from rama_tls import CertificateAuthority, TlsClientConfig, tls_connect

sys.path.insert(0, str(Path(__file__).parent))
from http_proxy_testutil import read_response
from mitm_testutil import Events, origin_tls, run_mitm


def _client_ctx(mitm_ca: CertificateAuthority) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=mitm_ca.cert_pem().decode())


async def _echo_ws(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


_WS = WebSocketUpgrade(_echo_ws)


async def _origin(ctx: Context, req: Request) -> Response:
    if req.path == "/echo":
        return Response(200, body=await req.body.read())
    if req.path == "/gzip":
        return Response(
            200,
            headers=[("Content-Type", "text/plain"), ("Content-Encoding", "gzip")],
            body=gzip.compress(b"hello from the origin"),
        )
    if req.path.startswith("/big/"):
        n = int(req.path[5:])

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(n // 65536):
                yield b"x" * 65536

        return Response(200, body=Body.from_iter(chunks(), length=n // 65536 * 65536))
    if req.path == "/ws":
        return await _WS.serve(ctx, req)
    if req.path == "/close":
        # the server ends each connection after one answer: the MITM must reconnect
        return Response(200, headers=[("Connection", "close")], body=b"closing\n")
    return Response.from_text(f"{req.method} {req.target}\n")


@asynccontextmanager
async def run_tls_origin(
    ca: CertificateAuthority, alpn: tuple[str, ...] = ("h2", "http/1.1")
) -> AsyncIterator[int]:
    async with TcpListener.bind("127.0.0.1:0") as listener, anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: serve(
                listener,
                service_fn(_origin),
                ServerConfig(max_body_size=None),
                tls=origin_tls(ca, alpn),
            )
        )
        try:
            yield listener.local_addr.port
        finally:
            tg.cancel_scope.cancel()


class BodyHooks(MitmHooks):
    def wants_request_body(self, flow: HttpFlow) -> bool:
        return flow.request.path == "/echo"

    async def request_body(self, flow: HttpFlow, body: bytes) -> bytes:
        return body.upper()

    def wants_response_body(self, flow: HttpFlow) -> bool:
        return flow.request.path in ("/gzip", "/big/1048576")

    async def response_body(self, flow: HttpFlow, body: bytes) -> bytes:
        return body.replace(b"hello", b"HELLO")


@pytest.mark.anyio
@pytest.mark.parametrize("http2", [False, True])
async def test_httpx_body_hooks(
    origin_ca: CertificateAuthority, mitm_ca: CertificateAuthority, http2: bool
) -> None:
    events = Events()
    mitm = MitmProxy(
        mitm_ca,
        upstream_ca=origin_ca.cert_pem(),
        hooks=[BodyHooks()],
        observer=events,
        max_body_size=100_000,
    )
    async with run_tls_origin(origin_ca) as oport, run_mitm(mitm) as (port, _):
        async with httpx.AsyncClient(
            proxy=f"http://127.0.0.1:{port}", verify=_client_ctx(mitm_ca), http2=http2
        ) as client:
            base = f"https://localhost:{oport}"
            r = await client.post(f"{base}/echo", content=b"shout this")
            assert r.status_code == 200
            assert r.content == b"SHOUT THIS"
            assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            # decoded, rewritten, encoded back with the same coding
            r = await client.get(f"{base}/gzip")
            assert r.headers["content-encoding"] == "gzip"
            assert r.text == "HELLO from the origin"
            # over the buffering limit: 413 for a request, 502 for a response
            r = await client.post(f"{base}/echo", content=b"y" * 200_000)
            assert r.status_code == 413
            r = await client.get(f"{base}/big/1048576")
            assert r.status_code == 502
            # no hook asks: the body streams, whatever its size
            r = await client.get(f"{base}/big/2097152")
            assert r.status_code == 200
            assert len(r.content) == 2097152
            r = await client.post(f"{base}/other", content=b"z" * 300_000)
            assert r.status_code == 200
            for _ in range(3):
                r = await client.get(f"{base}/close")
                assert r.status_code == 200
                assert r.content == b"closing\n"
    assert b"SHOUT THIS" in events.request_chunks
    assert sum(len(c) for c in events.response_chunks) >= 2097152


class WsHooks(MitmHooks):
    async def websocket_message(
        self, flow: HttpFlow, message: WebSocketMessage
    ) -> WebSocketMessage | Sequence[WebSocketMessage] | None:
        if message.content == "drop me":
            return None
        if message.from_client and message.content == "ping":
            message.content = "rewritten"
        if message.content == "inject":
            return [message, WebSocketMessage(False, "injected to the client", injected=True)]
        return message


@pytest.mark.anyio
async def test_websockets_over_wss_with_message_hook(
    origin_ca: CertificateAuthority, mitm_ca: CertificateAuthority
) -> None:
    events = Events()
    mitm = MitmProxy(mitm_ca, upstream_ca=origin_ca.cert_pem(), hooks=[WsHooks()], observer=events)
    async with run_tls_origin(origin_ca) as oport, run_mitm(mitm) as (port, _):
        # the sync client in a thread: runs the same on asyncio, uvloop and trio
        def client() -> set[object]:
            with websockets.sync.client.connect(
                f"wss://localhost:{oport}/ws",
                proxy=f"http://127.0.0.1:{port}",
                ssl=_client_ctx(mitm_ca),
                open_timeout=5,
            ) as ws:
                ws.send("ping")
                assert ws.recv(timeout=5) == "rewritten"
                ws.send(b"\x00\x01binary")
                assert ws.recv(timeout=5) == b"\x00\x01binary"
                ws.send("drop me")
                ws.send("inject")
                return {ws.recv(timeout=5), ws.recv(timeout=5)}

        got = await anyio.to_thread.run_sync(client)
        assert got == {"inject", "injected to the client"}
    flows = await events.wait("flows", 1)
    assert flows[0].websocket
    assert flows[0].response is not None
    assert flows[0].response.status == 101
    directions = [(m.from_client, m.content) for m in events.ws]
    assert (True, "rewritten") in directions
    assert (False, "rewritten") in directions
    assert all(m.content != "drop me" for m in events.ws)


@pytest.mark.anyio
async def test_h2_extended_connect_websocket(
    origin_ca: CertificateAuthority, mitm_ca: CertificateAuthority
) -> None:
    """RFC 8441 from the client; the server gets an HTTP/1.1 Upgrade on its own connection."""
    events = Events()
    mitm = MitmProxy(mitm_ca, upstream_ca=origin_ca.cert_pem(), hooks=[WsHooks()], observer=events)
    async with run_tls_origin(origin_ca) as oport, run_mitm(mitm) as (port, _):
        raw = await connect_tcp(f"127.0.0.1:{port}")
        await raw.send(f"CONNECT localhost:{oport} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, _, _ = await read_response(raw)
        assert status == 200
        tls = await tls_connect(
            raw, "localhost", TlsClientConfig(ca_pem=mitm_ca.cert_pem(), alpn_protocols=("h2",))
        )
        h2c = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        h2c.initiate_connection()
        await tls.send(h2c.data_to_send())

        async def until(kind: type) -> list[h2.events.Event]:
            seen: list[h2.events.Event] = []
            with anyio.fail_after(5):
                while not any(isinstance(e, kind) for e in seen):
                    seen += h2c.receive_data(await tls.receive())
                    await tls.send(h2c.data_to_send())
            return seen

        await until(h2.events.RemoteSettingsChanged)
        sid = h2c.get_next_available_stream_id()
        h2c.send_headers(
            sid,
            [
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", "https"),
                (":path", "/ws"),
                (":authority", f"localhost:{oport}"),
                ("sec-websocket-version", "13"),
            ],
        )
        await tls.send(h2c.data_to_send())
        got = await until(h2.events.ResponseReceived)
        response = next(e for e in got if isinstance(e, h2.events.ResponseReceived))
        assert dict(response.headers)[":status"] == "200"
        ws = WsConnection(ConnectionType.CLIENT)
        h2c.send_data(sid, ws.send(Message(data="ping")))
        await tls.send(h2c.data_to_send())
        texts: list[str] = []
        with anyio.fail_after(5):
            while not texts:
                for e in await until(h2.events.DataReceived):
                    if isinstance(e, h2.events.DataReceived):
                        h2c.acknowledge_received_data(e.flow_controlled_length, sid)
                        ws.receive_data(e.data)
                        texts += [m.data for m in ws.events() if isinstance(m, TextMessage)]
        assert texts == ["rewritten"]
        await tls.aclose()
    flows = await events.wait("flows", 1)
    assert flows[0].websocket
    conn = events.connections[0]
    assert conn.client_tls is not None
    assert conn.client_tls.alpn == "h2"


class BufferEverything(MitmHooks):
    def wants_request_body(self, flow: HttpFlow) -> bool:
        return True

    def wants_response_body(self, flow: HttpFlow) -> bool:
        return True


async def _tunnel_tls(port: int, oport: int, mitm_ca: CertificateAuthority) -> ByteStream:
    raw = await connect_tcp(f"127.0.0.1:{port}")
    await raw.send(f"CONNECT localhost:{oport} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    status, _, _ = await read_response(raw)
    assert status == 200
    return await tls_connect(
        raw,
        "localhost",
        TlsClientConfig(ca_pem=mitm_ca.cert_pem(), alpn_protocols=("http/1.1",)),
    )


@pytest.mark.anyio
async def test_huge_bodies_through_a_buffering_hook_are_bounded(
    origin_ca: CertificateAuthority, mitm_ca: CertificateAuthority
) -> None:
    """1 GiB each way against a 1 MiB buffering limit: answered early, never read whole."""
    limit = 1 << 20
    gib = 1 << 30
    produced = [0]

    async def origin(ctx: Context, req: Request) -> Response:
        async def endless() -> AsyncIterator[bytes]:
            while produced[0] < gib:
                produced[0] += 65536
                yield b"r" * 65536

        return Response(200, body=Body.from_iter(endless(), length=gib))

    mitm = MitmProxy(
        mitm_ca,
        upstream_ca=origin_ca.cert_pem(),
        hooks=[BufferEverything()],
        max_body_size=limit,
    )
    async with (
        TcpListener.bind("127.0.0.1:0") as listener,
        anyio.create_task_group() as tg,
        run_mitm(mitm) as (port, _),
    ):
        tg.start_soon(
            lambda: serve(listener, service_fn(origin), tls=origin_tls(origin_ca, ("http/1.1",)))
        )
        oport = listener.local_addr.port
        # a chunked 1 GiB upload: the 413 comes once the limit is passed
        tls = await _tunnel_tls(port, oport, mitm_ca)
        await tls.send(
            b"POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sent = 0
        answer = b""

        async def upload() -> None:
            nonlocal sent
            chunk = b"10000\r\n" + b"u" * 65536 + b"\r\n"
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                while sent < gib:
                    await tls.send(chunk)
                    sent += 65536

        with anyio.fail_after(10):
            async with anyio.create_task_group() as up:
                up.start_soon(upload)
                while b"\r\n\r\n" not in answer:
                    answer += await tls.receive()
                up.cancel_scope.cancel()
        assert answer.startswith(b"HTTP/1.1 413")
        assert sent < 64 * limit
        await anyio.aclose_forcefully(tls)
        # a 1 GiB download: 502 once the limit is passed; the origin is stopped
        tls = await _tunnel_tls(port, oport, mitm_ca)
        await tls.send(b"GET /down HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, _, body = await read_response(tls)
        assert status == 502
        assert b"larger than" in body
        await anyio.aclose_forcefully(tls)
        await anyio.sleep(0.2)
        assert produced[0] < 64 * limit
        tg.cancel_scope.cancel()
