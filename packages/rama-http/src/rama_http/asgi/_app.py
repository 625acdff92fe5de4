"""AsgiApp: a rama ``Service[Request, Response]`` as an ASGI 3 application."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from typing import Any

from rama_core import Context, Service
from rama_net import SocketAddress, SocketInfo

from .._body import Body
from .._errors import BodyError
from .._headers import Headers
from .._message import Request, Response
from .._version import Version
from ..server._failure import handler_failure, log_handler_failure
from ._types import Receive, Scope, Send

__all__ = ["AsgiApp"]

_log = logging.getLogger("rama.http.asgi")

_VERSIONS = {
    "1.1": Version.HTTP_11,
    "2": Version.HTTP_2,
    "1.0": Version.HTTP_10,
    "3": Version.HTTP_3,
}


def _address(pair: Any) -> SocketAddress | None:
    if not pair:
        return None
    try:
        return SocketAddress(ipaddress.ip_address(pair[0]), int(pair[1]))
    except (ValueError, TypeError, IndexError):
        return None  # a unix socket path or a name: not an IP address


class AsgiApp:
    """Runs a rama service under any ASGI server (uvicorn, hypercorn, a mount).

    ``uvicorn.run(AsgiApp(my_service))``. Each ``http`` scope becomes a
    :class:`Request` (method, the raw target, headers in order, the body
    streamed from ``receive``, the version) served with a fresh Context
    (``state`` as its state; :class:`rama_net.SocketInfo` from the scope's
    client/server); the Response streams back chunk by chunk. A failing
    service is answered as rama's servers answer it (500 logged once, 504,
    503, the peer's 4xx). Lifespan events are acknowledged; WebSocket scopes
    are refused (close before accept: 403), as rama's WebSocket runs on the
    raw stream an ASGI server does not hand out.
    """

    def __init__(self, service: Service[Request, Response], *, state: Any = None) -> None:
        self.service = service
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1000})
        else:
            raise ValueError(f"unsupported ASGI scope type {kind!r}")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path: bytes | None = scope.get("raw_path")
        target = (
            raw_path.decode("latin-1") if raw_path else scope.get("root_path", "") + scope["path"]
        )
        query = scope.get("query_string") or b""
        if query:
            target += "?" + query.decode("latin-1")
        headers = Headers.from_trusted(
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        )
        has_body = any(k in ("content-length", "transfer-encoding") for k in headers._keys)
        body = Body.from_iter(_request_body(receive)) if has_body else Body(b"")
        version = _VERSIONS.get(scope.get("http_version", "1.1"), Version.HTTP_11)
        req = Request._trusted(scope["method"], target, headers, body, version)
        ctx = Context(self.state)
        peer, local = _address(scope.get("client")), _address(scope.get("server"))
        if peer is not None and local is not None:
            ctx.insert(SocketInfo(peer_addr=peer, local_addr=local))
        try:
            resp = await self.service.serve(ctx, req)
        except Exception as e:
            failure = handler_failure(e)
            log_handler_failure(_log, failure, e, req.method, req.target)
            resp = failure.response()
        out = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()]
        data = resp.body.bytes_now()
        if data is not None and resp.body.length is not None:
            if not resp.headers.contains("content-length"):
                out.append((b"content-length", str(len(data)).encode()))
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            await send({"type": "http.response.body", "body": data, "more_body": False})
            return
        await send({"type": "http.response.start", "status": resp.status, "headers": out})
        try:
            async for chunk in resp.body:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            await resp.body.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":
            raise BodyError("client disconnected")
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
