"""Peers for the HTTP client tests: the rama server, raw socket servers, a CONNECT proxy."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketStream

from rama_core import Context, service_fn
from rama_http import Request, Response
from rama_http.server import serve
from rama_net import TcpListener
from rama_tls import CertifiedKey, self_signed

Handler = Callable[[Context, Request], Awaitable[Response]]


@asynccontextmanager
async def rama_server(
    handler: Handler, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """The rama auto server on an ephemeral loopback port; yields the port."""
    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(listener, service_fn(handler), ssl_context=ssl_context))
        try:
            yield listener.local_addr.port
        finally:
            tg.cancel_scope.cancel()


def server_ssl(ck: CertifiedKey, tmp: Any) -> ssl.SSLContext:
    """A server SSLContext for ``ck`` offering http/1.1 only."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    cert.write_bytes(ck.chain_pem())
    key.write_bytes(ck.key_pem())
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def make_cert(*names: str) -> CertifiedKey:
    """A self-signed certificate for ``names``."""
    return self_signed(*names)


async def echo(ctx: Context, req: Request) -> Response:
    """Echo method, target, headers (order and casing) and body as JSON."""
    body = await req.read(limit=1 << 24)
    return Response.from_json(
        {
            "method": req.method,
            "target": req.target,
            "headers": req.headers.items(),
            "body": body.decode("latin-1"),
        }
    )


async def read_head(stream: ByteStream, buf: bytes = b"") -> tuple[bytes, bytes]:
    """Read one request head; returns ``(head, rest)``; ``(b"", b"")`` at EOF."""
    while b"\r\n\r\n" not in buf:
        try:
            buf += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return b"", b""
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


RawHandler = Callable[[SocketStream, int], Awaitable[None]]


class RawServer:
    """A loopback TCP server running ``handler(stream, connection_number)`` per connection."""

    def __init__(self, handler: RawHandler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0

    @asynccontextmanager
    async def run(self) -> AsyncIterator[RawServer]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)

        async def one(stream: SocketStream) -> None:
            n = self.connections
            self.connections += 1
            async with stream:
                try:
                    await self.handler(stream, n)
                except (
                    anyio.BrokenResourceError,
                    anyio.ClosedResourceError,
                    anyio.EndOfStream,
                    OSError,
                ):
                    pass

        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, one)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()


def answering(*responses: bytes, capture: list[bytes] | None = None) -> RawHandler:
    """A raw handler answering each request of a connection with the next response."""

    async def handler(stream: SocketStream, n: int) -> None:
        rest = b""
        for resp in responses:
            head, rest = await read_head(stream, rest)
            if not head:
                return
            if capture is not None:
                capture.append(head)
            await stream.send(resp)

    return handler


@asynccontextmanager
async def connect_proxy(log: list[str]) -> AsyncIterator[int]:
    """A minimal HTTP CONNECT proxy on loopback; logs each CONNECT line."""

    async def handler(stream: SocketStream, n: int) -> None:
        head, rest = await read_head(stream)
        if not head:
            return
        line = head.split(b"\r\n", 1)[0].decode()
        log.append(line)
        method, target, _ = line.split(" ")
        if method != "CONNECT":
            await stream.send(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        if "Proxy-Authorization: Basic dXNlcjpwdw==" not in head.decode() and "deny" in target:
            await stream.send(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
            )
            return
        host, _, port = target.rpartition(":")
        upstream = await anyio.connect_tcp(host.strip("[]"), int(port))
        await stream.send(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        async with upstream, anyio.create_task_group() as tg:
            if rest:
                await upstream.send(rest)

            async def pump(a: ByteStream, b: ByteStream) -> None:
                try:
                    async for chunk in a:
                        await b.send(chunk)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(pump, stream, upstream)
            tg.start_soon(pump, upstream, stream)

    srv = RawServer(handler)
    async with srv.run():
        yield srv.port


def as_json(data: bytes) -> Any:
    """Parse a JSON body."""
    return json.loads(data)
