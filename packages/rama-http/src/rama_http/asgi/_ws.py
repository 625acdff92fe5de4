"""One WebSocket session between rama's WebSocket and an ASGI app."""

from __future__ import annotations

from typing import Any

import anyio

from .._headers import Headers
from ..ws import WebSocket, WebSocketClosed
from ._http import AsgiAppError, ClientDisconnected

__all__ = ["WsCycle"]

_CONNECTING, _ACCEPTED, _DENIED, _RESPONDING, _CLOSED = range(5)


class WsCycle:
    """State shared by the app's ``receive``/``send``, the handshake and the socket."""

    def __init__(self) -> None:
        self.state = _CONNECTING
        self._connect_sent = False
        self.decided = anyio.Event()
        self.subprotocol: str | None = None
        self.accept_headers: list[tuple[str, str]] = []
        self.denial: tuple[int, Headers] | None = None
        self.denial_body: list[bytes] = []
        self.ws: WebSocket | None = None
        self.ready = anyio.Event()
        self.done = anyio.Event()
        self.gone = False  # the upgrade never happened (the client left before it)
        self.error: BaseException | None = None

    @property
    def accepted(self) -> bool:
        """Whether the app accepted the connection."""
        return self.state in (_ACCEPTED, _CLOSED) and self.denial is None

    @property
    def denied(self) -> bool:
        """Whether the app refused the handshake (close before accept, or its own answer)."""
        return self.state == _DENIED

    async def _socket(self) -> WebSocket | None:
        if self.ws is None and not self.gone:
            await self.ready.wait()
        return self.ws

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: ``websocket.connect``, messages, ``websocket.disconnect``."""
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        if self.state == _CONNECTING:
            await self.decided.wait()
        ws = await self._socket() if self.state in (_ACCEPTED, _CLOSED) else None
        if ws is None:
            return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        try:
            msg = await ws.receive()
        except WebSocketClosed as e:
            return {"type": "websocket.disconnect", "code": e.code, "reason": e.reason}
        if isinstance(msg, str):
            return {"type": "websocket.receive", "text": msg, "bytes": None}
        return {"type": "websocket.receive", "bytes": msg, "text": None}

    async def send(self, message: Any) -> None:
        """ASGI ``send``: accept, close, send, or a denial response."""
        kind = message["type"]
        if kind == "websocket.send":
            if self.state != _ACCEPTED:
                if self.state == _CLOSED:
                    raise ClientDisconnected("the WebSocket is closed")
                raise AsgiAppError("websocket.send before websocket.accept")
            ws = await self._socket()
            if ws is None or ws.closed:
                raise ClientDisconnected("the WebSocket is closed")
            data = message.get("bytes")
            payload = data if data is not None else message.get("text")
            if payload is None:
                raise AsgiAppError("websocket.send without bytes or text")
            try:
                await ws.send(payload)
            except WebSocketClosed:
                raise ClientDisconnected("the WebSocket is closed") from None
            return
        if kind == "websocket.accept":
            if self.state != _CONNECTING:
                raise AsgiAppError("websocket.accept sent twice or after close")
            self.subprotocol = message.get("subprotocol")
            self.accept_headers = [
                (
                    k.decode("latin-1") if isinstance(k, bytes) else k,
                    v.decode("latin-1") if isinstance(v, bytes) else v,
                )
                for k, v in message.get("headers") or ()
            ]
            self.state = _ACCEPTED
            self.decided.set()
            return
        if kind == "websocket.close":
            if self.state == _CONNECTING:
                self.state = _DENIED
                self.decided.set()
                return
            if self.state != _ACCEPTED:
                return
            self.state = _CLOSED
            ws = await self._socket()
            if ws is not None:
                await ws.close(int(message.get("code") or 1000), message.get("reason") or "")
            return
        if kind == "websocket.http.response.start":
            if self.state != _CONNECTING:
                raise AsgiAppError("websocket.http.response.start after the handshake")
            status = message["status"]
            if type(status) is not int or not 100 <= status <= 999:
                raise AsgiAppError(f"invalid status {status!r}")
            try:
                headers = Headers(list(message.get("headers") or ()))
            except Exception as e:
                raise AsgiAppError(f"invalid response headers: {e}") from None
            self.denial = (status, headers)
            self.state = _RESPONDING
            return
        if kind == "websocket.http.response.body":
            if self.state != _RESPONDING:
                raise AsgiAppError("websocket.http.response.body without a start")
            body = message.get("body", b"")
            if body:
                self.denial_body.append(bytes(body))
            if not message.get("more_body", False):
                self.state = _DENIED
                self.decided.set()
            return
        raise AsgiAppError(f"unexpected ASGI message {kind!r} for a WebSocket")

    def app_finished(self, error: BaseException | None) -> None:
        """The app's task ended."""
        self.error = error
        self.decided.set()
        self.done.set()

    async def handler(self, ws: WebSocket) -> None:
        """The rama WebSocket handler: hands ``ws`` to the app and lives as long as it."""
        self.ws = ws
        self.ready.set()
        await self.done.wait()
        if self.error is not None and not ws.closed:
            await ws.close(1011, "internal error")

    def abandon(self) -> None:
        """The handshake will not happen: release an app waiting for the socket."""
        self.gone = True
        self.ready.set()
