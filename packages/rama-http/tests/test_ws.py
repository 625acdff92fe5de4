"""WebSockets: rama's server and client against each other and against python `websockets`,
over ws, wss and h2 extended CONNECT (RFC 8441); limits, keep-alive, close codes, bad input."""

from __future__ import annotations

import base64
import os
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import websockets
from websockets.asyncio.client import connect as websockets_connect
from websockets.asyncio.server import serve as websockets_serve
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage

from rama_core import Service
from rama_http import Request, Response
from rama_http.server import serve
from rama_http.web import Router
from rama_http.ws import (
    WebSocket,
    WebSocketClosed,
    WebSocketConfig,
    WebSocketHandshakeError,
    WebSocketUpgrade,
    ws_connect,
)
from rama_net import TcpListener
from rama_tls import CertificateAuthority, TlsClientConfig, TlsError

pytestmark = pytest.mark.anyio


# python `websockets` runs on asyncio only
asyncio_only = pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ],
)


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        if message == "close-4000":
            await ws.close(4000, "bye")
            return
        await ws.send(message)


@asynccontextmanager
async def running(
    service: Service[Request, Response], ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(listener, service, ssl_context=ssl_context))
        yield listener.local_addr.port
        tg.cancel_scope.cancel()


def router(handler: WebSocketUpgrade) -> Router:
    r = Router()
    r.route("/ws", handler, methods=["GET", "CONNECT"])
    return r


@asyncio_only
async def test_websockets_library_client_against_rama_server() -> None:
    async with running(router(WebSocketUpgrade(echo, subprotocols=["chat"]))) as port:
        async with websockets_connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["chat"]) as c:  # type: ignore[list-item]
            assert c.subprotocol == "chat"
            assert "permessage-deflate" in c.response.headers["Sec-WebSocket-Extensions"]
            await c.send("hello")
            assert await c.recv() == "hello"
            await c.send(b"\x00\xff" * 5000)
            assert await c.recv() == b"\x00\xff" * 5000
            big = "x" * 200_000
            await c.send(big)
            assert await c.recv() == big
            await c.send("close-4000")
            with pytest.raises(websockets.ConnectionClosed) as info:
                await c.recv()
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "bye")


@asyncio_only
async def test_rama_client_against_websockets_library_server() -> None:
    async def handler(conn: websockets.asyncio.server.ServerConnection) -> None:
        async for message in conn:
            await conn.send(message)

    async with websockets_serve(handler, "127.0.0.1", 0, subprotocols=["v2"]) as server:  # type: ignore[list-item]
        port = next(iter(server.sockets)).getsockname()[1]
        async with ws_connect(f"ws://127.0.0.1:{port}/x?y=1", subprotocols=["v1", "v2"]) as ws:
            assert ws.subprotocol == "v2"
            await ws.send("hi")
            assert await ws.receive() == "hi"
            await ws.send(os.urandom(70_000))
            assert isinstance(await ws.receive(), bytes)


async def test_rama_client_and_server_close_codes_and_compression_off() -> None:
    async with running(router(WebSocketUpgrade(echo, compression=False))) as port:
        async with ws_connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("a")
            assert await ws.receive() == "a"
            await ws.send("close-4000")
            with pytest.raises(WebSocketClosed) as info:
                await ws.receive()
            assert (info.value.code, info.value.reason) == (4000, "bye")
            assert ws.close_code == 4000


@asyncio_only
async def test_message_too_big_closes_1009() -> None:
    cfg = WebSocketConfig(max_message_size=1000)
    async with running(router(WebSocketUpgrade(echo, config=cfg))) as port:
        async with websockets_connect(f"ws://127.0.0.1:{port}/ws") as c:
            await c.send("y" * 999)
            assert await c.recv() == "y" * 999
            await c.send("y" * 1001)
            with pytest.raises(websockets.ConnectionClosed) as info:
                await c.recv()
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1009


async def test_handler_failure_closes_1011() -> None:
    async def broken(ws: WebSocket) -> None:
        await ws.receive()
        raise RuntimeError("secret")

    async with running(router(WebSocketUpgrade(broken))) as port:
        async with ws_connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("x")
            with pytest.raises(WebSocketClosed) as info:
                await ws.receive()
            assert info.value.code == 1011
            assert "secret" not in info.value.reason


def _raw_handshake(port: int, extra: str = "") -> tuple[socket.socket, bytes]:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n{extra}\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, head


async def test_bad_handshakes() -> None:
    async with running(router(WebSocketUpgrade(echo))) as port:
        s, head = await anyio.to_thread.run_sync(
            _raw_handshake, port, "Sec-WebSocket-Version: 8\r\n"
        )
        s.close()
        assert head.startswith(b"HTTP/1.1 426")
        assert b"Sec-WebSocket-Version: 13" in head
        with pytest.raises(WebSocketHandshakeError) as info:
            async with ws_connect(f"ws://127.0.0.1:{port}/nope"):
                pass
        assert info.value.status == 404

        def plain_get() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                c.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return c.recv(4096)

        assert (await anyio.to_thread.run_sync(plain_get)).startswith(b"HTTP/1.1 400")


async def test_keepalive_ping_timeout_closes_1011() -> None:
    cfg = WebSocketConfig(ping_interval=0.2, ping_timeout=0.3)
    async with running(router(WebSocketUpgrade(echo, config=cfg))) as port:
        s, head = await anyio.to_thread.run_sync(
            _raw_handshake, port, "Sec-WebSocket-Version: 13\r\n"
        )
        assert head.startswith(b"HTTP/1.1 101")

        def read_all() -> bytes:
            data = b""
            s.settimeout(5)
            while chunk := s.recv(4096):
                data += chunk
            return data

        with anyio.fail_after(5):
            frames = await anyio.to_thread.run_sync(read_all)
        s.close()
        conn = Connection(ConnectionType.CLIENT)
        conn.receive_data(frames)
        events = list(conn.events())
        assert any(type(e).__name__ == "Ping" for e in events)
        closes = [e for e in events if isinstance(e, CloseConnection)]
        assert closes
        assert closes[0].code == 1011


async def test_wss(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("ws test CA")
    leaf = ca.issue("localhost", "127.0.0.1")
    (tmp_path / "c.pem").write_bytes(leaf.chain_pem())
    (tmp_path / "k.pem").write_bytes(leaf.key_pem())
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    sctx.set_alpn_protocols(["http/1.1"])
    async with running(router(WebSocketUpgrade(echo)), sctx) as port:
        tls = TlsClientConfig(ca_pem=ca.cert_pem())
        async with ws_connect(f"wss://localhost:{port}/ws", tls=tls) as ws:
            await ws.send("secure")
            assert await ws.receive() == "secure"
        with pytest.raises(TlsError):  # unknown CA
            async with ws_connect(f"wss://localhost:{port}/ws"):
                pass


def _h2_websocket_roundtrip(port: int) -> tuple[int, list[object], dict[bytes, bytes]]:
    """RFC 8441 by hand with the h2 library: extended CONNECT, then frames in DATA."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    h2c.initiate_connection()
    s.sendall(h2c.data_to_send())
    enabled = False
    while not enabled:
        for ev in h2c.receive_data(s.recv(65536)):
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                setting = ev.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                enabled = bool(setting and setting.new_value)
        s.sendall(h2c.data_to_send())
    sid = h2c.get_next_available_stream_id()
    h2c.send_headers(
        sid,
        [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "http"),
            (":path", "/ws"),
            (":authority", f"127.0.0.1:{port}"),
            ("sec-websocket-version", "13"),
        ],
    )
    ws = Connection(ConnectionType.CLIENT)
    h2c.send_data(sid, ws.send(TextMessage(data="over h2")))
    s.sendall(h2c.data_to_send())
    status = 0
    got: list[object] = []
    headers: dict[bytes, bytes] = {}
    while not got:
        for ev in h2c.receive_data(s.recv(65536)):
            if isinstance(ev, h2.events.ResponseReceived):
                headers = dict(ev.headers)  # type: ignore[arg-type]
                status = int(headers[b":status"])
            elif isinstance(ev, h2.events.DataReceived):
                h2c.acknowledge_received_data(ev.flow_controlled_length, sid)
                ws.receive_data(ev.data)
                got.extend(e for e in ws.events() if isinstance(e, (TextMessage, BytesMessage)))
        s.sendall(h2c.data_to_send())
    s.close()
    return status, got, headers


async def test_h2_extended_connect() -> None:
    async with running(router(WebSocketUpgrade(echo, compression=False))) as port:
        status, got, _ = await anyio.to_thread.run_sync(_h2_websocket_roundtrip, port)
    assert status == 200
    assert [m.data for m in got] == ["over h2"]  # type: ignore[attr-defined]
