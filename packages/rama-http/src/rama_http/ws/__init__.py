"""rama_http.ws: WebSockets, server and client, on wsproto.

- :class:`WebSocketUpgrade`: a Service answering HTTP/1.1 Upgrade and h2
  extended CONNECT (RFC 8441) handshakes, running ``handler(ws)``;
- :func:`ws_connect`: a client for ``ws://`` and ``wss://`` over rama's
  connectors (TCP, optional proxy, TLS);
- :class:`WebSocket`: ``async for message in ws``, ``await ws.send(...)``,
  ping/pong keep-alive, close codes, message size limit, permessage-deflate.
"""

from ._client import WebSocketHandshakeError, ws_connect
from ._server import WebSocketHandler, WebSocketUpgrade, is_websocket_request
from ._socket import WebSocket, WebSocketClosed, WebSocketConfig, close_reason_phrase

__all__ = [
    "WebSocket",
    "WebSocketClosed",
    "WebSocketConfig",
    "WebSocketHandler",
    "WebSocketHandshakeError",
    "WebSocketUpgrade",
    "close_reason_phrase",
    "is_websocket_request",
    "ws_connect",
]
