"""The server side of the WebSocket handshake: HTTP/1.1 Upgrade and h2 extended CONNECT.

:class:`WebSocketUpgrade` is a ``Service[Request, Response]``: it checks the
handshake (RFC 6455 §4.2 over HTTP/1.1; RFC 8441 over h2), picks the
subprotocol and permessage-deflate, answers 101 (or 200 on h2) and runs the
handler on the upgraded stream. A handshake that is not a WebSocket one is
answered 400 (426 with ``Sec-WebSocket-Version: 13`` for another version);
a handler that raises is logged once and the connection closed with 1011.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable, Sequence

from anyio.abc import ByteStream
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import generate_accept_token

from rama_core import Context

from .._message import Request, Response
from ._socket import WebSocket, WebSocketConfig

__all__ = ["WebSocketHandler", "WebSocketUpgrade", "is_websocket_request"]

_log = logging.getLogger("rama.http.ws")

WebSocketHandler = Callable[[WebSocket], Awaitable[None]]


def _tokens(req: Request, name: str) -> list[str]:
    return [t.strip().lower() for v in req.headers.get_all(name) for t in v.split(",") if t.strip()]


def _extended_connect(ctx: Context, req: Request) -> bool:
    if req.method != "CONNECT":
        return False
    from ..server import ExtendedConnectProtocol

    protocol = ctx.get(ExtendedConnectProtocol)
    return protocol is not None and protocol.lower() == "websocket"


def is_websocket_request(ctx: Context, req: Request) -> bool:
    """Whether ``req`` asks for a WebSocket (h1 Upgrade or h2 extended CONNECT)."""
    if _extended_connect(ctx, req):
        return True
    return (
        req.method == "GET"
        and "websocket" in _tokens(req, "upgrade")
        and "upgrade" in _tokens(req, "connection")
    )


class WebSocketUpgrade:
    """Accepts WebSocket handshakes and runs ``handler(ws)`` on each connection."""

    def __init__(
        self,
        handler: WebSocketHandler,
        *,
        subprotocols: Sequence[str] = (),
        compression: bool = True,
        config: WebSocketConfig | None = None,
        allowed_origins: Sequence[str] | None = None,
    ) -> None:
        self.handler = handler
        self.subprotocols = tuple(subprotocols)
        """Server's subprotocols, in preference order (the first the client offers wins)."""
        self.compression = compression
        """Accept permessage-deflate when offered."""
        self.config = config or WebSocketConfig()
        self.allowed_origins = tuple(allowed_origins) if allowed_origins is not None else None
        """Origins a browser may connect from (None: any); others get 403."""

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Check the handshake; answer with the switch and hand the stream to the handler."""
        h2 = _extended_connect(ctx, req)
        if not h2:
            if not is_websocket_request(ctx, req):
                return Response.error(400, "expected a WebSocket handshake")
            if req.headers.get("sec-websocket-version") != "13":
                return Response(
                    426,
                    headers=[("Sec-WebSocket-Version", "13")],
                    body=b"unsupported WebSocket version\n",
                )
            key = req.headers.get("sec-websocket-key") or ""
            try:
                if len(base64.b64decode(key, validate=True)) != 16:
                    raise ValueError(key)
            except (binascii.Error, ValueError):
                return Response.error(400, "invalid Sec-WebSocket-Key")
        elif req.headers.get("sec-websocket-version") not in (None, "13"):
            return Response(426, headers=[("Sec-WebSocket-Version", "13")])
        origin = req.headers.get("origin")
        if self.allowed_origins is not None and origin not in (None, *self.allowed_origins):
            return Response.error(403, "origin not allowed")

        headers: list[tuple[str, str]] = []
        offered = _tokens(req, "sec-websocket-protocol")
        subprotocol = next((p for p in self.subprotocols if p.lower() in offered), None)
        if subprotocol is not None:
            headers.append(("Sec-WebSocket-Protocol", subprotocol))
        extensions: list[Extension] = []
        if self.compression:
            for offer in (
                o.strip()
                for v in req.headers.get_all("sec-websocket-extensions")
                for o in v.split(",")
            ):
                if offer.split(";", 1)[0].strip().lower() != "permessage-deflate":
                    continue
                pmd = PerMessageDeflate()
                accepted = pmd.accept(offer)
                if accepted:
                    value = pmd.name if accepted is True else f"{pmd.name}; {accepted}"
                    headers.append(("Sec-WebSocket-Extensions", value))
                    extensions.append(pmd)
                    break

        async def run(stream: ByteStream) -> None:
            ws = WebSocket(
                stream,
                client=False,
                extensions=extensions,
                subprotocol=subprotocol,
                config=self.config,
            )
            try:
                await self.handler(ws)
            except Exception:
                _log.exception("WebSocket handler failed for %s", req.target)
                await ws.close(1011, "internal error")
                return
            if not ws.closed:
                await ws.close(1000)

        if h2:
            return Response(200, headers=headers, on_upgrade=run)
        key = req.headers.get("sec-websocket-key") or ""
        accept = generate_accept_token(key.encode()).decode()
        return Response(
            101,
            headers=[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept),
                *headers,
            ],
            on_upgrade=run,
        )
