"""``ws_connect(url)``: a WebSocket client over rama's connector stack (TCP, proxy, TLS).

::

    async with ws_connect("wss://example.com/chat", subprotocols=["chat"]) as ws:
        await ws.send("hello")
        print(await ws.receive())

``ws://`` and ``wss://`` (TLS with SNI, verification on by default, ALPN
``http/1.1``); through an HTTP CONNECT (or any :class:`ProxyConnector`)
upstream proxy when ``proxy=`` is given. The handshake's answer is checked
(101, the accept token, extensions and subprotocol the client offered);
anything else raises :class:`WebSocketHandshakeError` carrying the status.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
from anyio.abc import ByteStream
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import generate_accept_token

from rama_core import Context, RamaError, Service
from rama_net import Authority, EstablishedConnection, TcpConnector
from rama_tls import TlsClientConfig, TlsConnector

from .._headers import HeaderInput, Headers
from .._uri import Uri
from ._socket import WebSocket, WebSocketConfig

__all__ = ["WebSocketHandshakeError", "ws_connect"]

_MAX_HEAD = 64 * 1024


class WebSocketHandshakeError(RamaError):
    """The server did not accept the WebSocket handshake."""

    def __init__(self, message: str, *, status: int | None = None, headers: Headers | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers


def _parse_head(head: bytes) -> tuple[int, Headers]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise WebSocketHandshakeError(f"invalid status line {lines[0][:80]!r}")
    headers = Headers()
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise WebSocketHandshakeError(f"invalid header line {line[:80]!r}")
        headers.add(name.strip(), value.strip())
    return int(parts[1]), headers


@asynccontextmanager
async def ws_connect(
    url: str,
    *,
    headers: HeaderInput = None,
    subprotocols: Sequence[str] = (),
    compression: bool = True,
    config: WebSocketConfig | None = None,
    tls: TlsClientConfig | None = None,
    proxy: str | None = None,
    proxy_connector: object | None = None,
    tcp: Service[Authority, EstablishedConnection] | None = None,
    open_timeout: float = 10.0,
    ctx: Context | None = None,
) -> AsyncIterator[WebSocket]:
    """Open a WebSocket to ``url``; it is closed (1000) when the block ends."""
    from ..client import HttpConnectProxyConnector, ProxyConfig, ProxyRequest

    uri = Uri.parse(url)
    scheme = (uri.scheme or "").lower()
    if scheme not in ("ws", "wss") or uri.host is None:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    secure = scheme == "wss"
    port = uri.port or (443 if secure else 80)
    host_literal = f"[{uri.host}]" if ":" in uri.host else uri.host
    target = Authority.parse(f"{host_literal}:{port}")
    ctx = ctx or Context()
    tcp_service = tcp or TcpConnector(connect_timeout=open_timeout)
    stream: ByteStream | None = None
    try:
        with anyio.fail_after(open_timeout):
            if proxy is not None:
                pc = ProxyConfig(proxy)
                conn = await tcp_service.serve(ctx, pc.authority)
                stream = conn.stream
                connector = proxy_connector or HttpConnectProxyConnector()
                stream = await connector.serve(ctx, ProxyRequest(stream, target, pc))  # type: ignore[attr-defined]
            else:
                conn = await tcp_service.serve(ctx, target)
                stream = conn.stream
            if secure:
                base = tls or TlsClientConfig()
                cfg = dataclasses.replace(base, alpn_protocols=("http/1.1",))
                stream = await TlsConnector(tcp_service, cfg).handshake(ctx, stream, uri.host)
            ws = await _handshake(
                stream, uri, host_literal, port, secure, headers, subprotocols, compression, config
            )
    except BaseException:
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.aclose()
        raise
    try:
        yield ws
    finally:
        if not ws.closed:
            with anyio.CancelScope(shield=True):
                await ws.close(1000)


async def _handshake(
    stream: ByteStream,
    uri: Uri,
    host_literal: str,
    port: int,
    secure: bool,
    headers: HeaderInput,
    subprotocols: Sequence[str],
    compression: bool,
    config: WebSocketConfig | None,
) -> WebSocket:
    key = base64.b64encode(os.urandom(16)).decode()
    default_port = 443 if secure else 80
    host = host_literal if port == default_port else f"{host_literal}:{port}"
    target = uri.path or "/"
    if uri.query:
        target += f"?{uri.query}"
    extra = Headers(headers)
    lines = [f"GET {target} HTTP/1.1"]
    if "host" not in extra:
        lines.append(f"Host: {host}")
    lines += [
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocols:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}")
    pmd: PerMessageDeflate | None = None
    if compression:
        pmd = PerMessageDeflate()
        offer = pmd.offer()
        lines.append(
            f"Sec-WebSocket-Extensions: {pmd.name}"
            + (f"; {offer}" if isinstance(offer, str) and offer else "")
        )
    lines += [f"{n}: {v}" for n, v in extra]
    await stream.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > _MAX_HEAD:
            raise WebSocketHandshakeError("handshake answer head too large")
        try:
            buf += await stream.receive()
        except anyio.EndOfStream:
            raise WebSocketHandshakeError("server closed during the handshake") from None
    head, _, rest = buf.partition(b"\r\n\r\n")
    status, resp_headers = _parse_head(head)
    if status != 101:
        raise WebSocketHandshakeError(
            f"server answered {status} to the WebSocket handshake",
            status=status,
            headers=resp_headers,
        )
    if resp_headers.get("sec-websocket-accept") != generate_accept_token(key.encode()).decode():
        raise WebSocketHandshakeError(
            "wrong Sec-WebSocket-Accept", status=status, headers=resp_headers
        )
    if (resp_headers.get("upgrade") or "").lower() != "websocket":
        raise WebSocketHandshakeError(
            "answer lacks Upgrade: websocket", status=status, headers=resp_headers
        )
    chosen = resp_headers.get("sec-websocket-protocol")
    if chosen is not None and chosen not in subprotocols:
        raise WebSocketHandshakeError(f"server chose subprotocol {chosen!r}, not offered")
    extensions: list[Extension] = []
    accepted = resp_headers.get("sec-websocket-extensions")
    if accepted:
        if pmd is None or accepted.split(";", 1)[0].strip().lower() != pmd.name:
            raise WebSocketHandshakeError(f"server accepted extensions not offered: {accepted!r}")
        pmd.finalize(accepted)
        extensions.append(pmd)
    return WebSocket(
        stream,
        client=True,
        extensions=extensions,
        subprotocol=chosen,
        config=config,
        trailing_data=rest,
    )
