"""AsgiService WebSockets: a FastAPI endpoint served by rama, with python `websockets` and
rama's ws_connect as clients; subprotocols, accept headers, close codes, denial (403 and
the websocket.http.response extension), disconnects, h2 extended CONNECT."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import websockets
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect as websockets_connect

from rama_http.asgi import AsgiService, Receive, Scope, Send
from rama_http.server import serve
from rama_http.ws import WebSocketClosed, WebSocketHandshakeError, ws_connect
from rama_net import TcpListener

pytestmark = pytest.mark.anyio

TIMEOUT = 5.0

asyncio_only = pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ],
)

disconnects: list[int] = []


def make_app() -> FastAPI:
    app = FastAPI()

    @app.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        if ws.query_params.get("deny"):
            await ws.close(code=1008)
            return
        await ws.accept(
            subprotocol="chat" if "chat" in ws.scope["subprotocols"] else None,
            headers=[(b"x-accepted", b"yes")],
        )
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    disconnects.append(message["code"])
                    return
                if message.get("text") == "bye":
                    await ws.close(code=4001, reason="see you")
                    return
                if message.get("text") == "boom":
                    raise RuntimeError("handler bug")
                if message.get("text") is not None:
                    await ws.send_text("echo:" + message["text"])
                else:
                    await ws.send_bytes(message["bytes"][::-1])
        except WebSocketDisconnect as e:
            disconnects.append(e.code)

    @app.websocket("/json")
    async def as_json(ws: WebSocket) -> None:
        await ws.accept()
        data = await ws.receive_json()
        await ws.send_json({"got": data, "path": ws.url.path})
        await ws.close()

    return app


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[str]:
    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(listener, AsgiService(app)))
        yield f"ws://127.0.0.1:{listener.local_addr.port}"
        tg.cancel_scope.cancel()


@asyncio_only
async def test_fastapi_websocket_with_the_websockets_library() -> None:
    disconnects.clear()
    async with running(make_app()) as url:
        async with websockets_connect(url + "/echo", subprotocols=["chat"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "chat"
            assert ws.response.headers["x-accepted"] == "yes"
            await ws.send("hi")
            assert await ws.recv() == "echo:hi"
            await ws.send(b"abc")
            assert await ws.recv() == b"cba"
            await ws.send("bye")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4001
            assert closed.value.rcvd.reason == "see you"
        async with websockets_connect(url + "/json") as ws:
            await ws.send('{"a": 1}')
            assert await ws.recv() == '{"got":{"a":1},"path":"/json"}'
        # the client closes: the app gets websocket.disconnect with the client's code
        async with websockets_connect(url + "/echo") as ws:
            await ws.send("x")
            await ws.recv()
            await ws.close(code=4005)
        with anyio.fail_after(TIMEOUT):
            while 4005 not in disconnects:
                await anyio.sleep(0.01)
        # close before accept: 403, no handshake
        with pytest.raises(websockets.InvalidStatus) as denied:
            async with websockets_connect(url + "/echo?deny=1"):
                pass
        assert denied.value.response.status_code == 403
        with pytest.raises(websockets.InvalidStatus) as missing:
            async with websockets_connect(url + "/nowhere"):
                pass
        assert missing.value.response.status_code == 403  # FastAPI closes unknown routes


async def test_fastapi_websocket_with_rama_ws_connect(caplog: pytest.LogCaptureFixture) -> None:
    disconnects.clear()
    async with running(make_app()) as url:
        async with ws_connect(url + "/echo", subprotocols=["chat", "other"]) as ws:
            assert ws.subprotocol == "chat"
            for i in range(20):
                await ws.send(f"m{i}")
                assert await ws.receive() == f"echo:m{i}"
            await ws.send(b"\x00\x01")
            assert await ws.receive() == b"\x01\x00"
            await ws.send("boom")  # the app fails after accepting: 1011
            with pytest.raises(WebSocketClosed) as closed:
                await ws.receive()
            assert closed.value.code == 1011
        assert any("handler bug" in str(r.exc_info) for r in caplog.records if r.exc_info)
        with pytest.raises(WebSocketHandshakeError) as denied:
            async with ws_connect(url + "/echo?deny=1"):
                pass
        assert denied.value.status == 403


async def test_denial_response_extension_and_plain_http_on_the_same_app() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return  # lifespan unsupported: auto goes on
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"plain"})
            return
        assert scope["type"] == "websocket"
        assert "websocket.http.response" in scope["extensions"]
        assert scope["scheme"] == "ws"
        assert scope["http_version"] == "1.1"
        assert (await receive())["type"] == "websocket.connect"
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"log in ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"first"})

    async with running(app) as url:
        with pytest.raises(WebSocketHandshakeError) as denied:
            async with ws_connect(url + "/ws"):
                pass
        assert denied.value.status == 401
        import httpx

        async with httpx.AsyncClient() as c:
            r = await c.get(url.replace("ws://", "http://") + "/ws")
            assert r.text == "plain"
            # a broken handshake never reaches the app
            r = await c.get(
                url.replace("ws://", "http://") + "/ws",
                headers={
                    "upgrade": "websocket",
                    "connection": "upgrade",
                    "sec-websocket-version": "13",
                },
            )
            assert r.status_code == 400


async def test_websocket_over_h2_extended_connect() -> None:
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import TextMessage

    seen: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        seen.append(dict(scope))
        await receive()
        await send({"type": "websocket.accept"})
        m = await receive()
        await send({"type": "websocket.send", "text": "h2:" + m["text"]})
        await send({"type": "websocket.close", "code": 1000})

    async with running(app) as url:
        port = int(url.rsplit(":", 1)[1])
        stream = await anyio.connect_tcp("127.0.0.1", port)
        h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        h2c.initiate_connection()
        await stream.send(h2c.data_to_send())
        with anyio.fail_after(TIMEOUT):
            enabled = False
            while not enabled:
                for ev in h2c.receive_data(await stream.receive()):
                    if isinstance(ev, h2.events.RemoteSettingsChanged):
                        setting = ev.changed_settings.get(
                            h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
                        )
                        enabled = enabled or (setting is not None and setting.new_value == 1)
                await stream.send(h2c.data_to_send())
            h2c.send_headers(
                1,
                [
                    (":method", "CONNECT"),
                    (":protocol", "websocket"),
                    (":scheme", "http"),
                    (":path", "/h2ws?x=1"),
                    (":authority", f"127.0.0.1:{port}"),
                    ("sec-websocket-version", "13"),
                ],
            )
            await stream.send(h2c.data_to_send())
            wsc = Connection(ConnectionType.CLIENT)
            status = None
            texts: list[str] = []
            sent = False
            while not texts:
                for ev in h2c.receive_data(await stream.receive()):
                    if isinstance(ev, h2.events.ResponseReceived):
                        status = dict(ev.headers)[b":status"]
                    elif isinstance(ev, h2.events.DataReceived):
                        h2c.acknowledge_received_data(ev.flow_controlled_length, 1)
                        wsc.receive_data(ev.data)
                        texts += [e.data for e in wsc.events() if isinstance(e, TextMessage)]
                if status == b"200" and not sent:
                    h2c.send_data(1, wsc.send(TextMessage(data="hello")))
                    sent = True
                await stream.send(h2c.data_to_send())
        await stream.aclose()
    assert status == b"200"
    assert texts == ["h2:hello"]
    assert seen[0]["http_version"] == "2"
    assert seen[0]["path"] == "/h2ws"
    assert seen[0]["query_string"] == b"x=1"
