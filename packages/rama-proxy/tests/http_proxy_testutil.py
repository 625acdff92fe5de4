"""Shared pieces of the HTTP proxy tests: an origin, a running proxy, raw HTTP helpers."""

from __future__ import annotations

import base64
import hashlib
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import ByteStream

from rama_core import Context, Service, service_fn
from rama_http import Body, Headers, Request, Response
from rama_http.server import ServerConfig, serve
from rama_net import SocketInfo, TcpListener, connect_tcp
from rama_proxy import HttpProxy, ProxyObservers, ProxyRecord
from rama_tls import TlsAcceptorConfig

__all__ = [
    "Origin",
    "Recorder",
    "free_port",
    "raw_exchange",
    "read_response",
    "run_origin",
    "run_proxy",
]


def ws_accept(key: str) -> str:
    """RFC 6455: what an origin answers to ``Sec-WebSocket-Key: key``."""
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    return base64.b64encode(digest).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Recorder:
    """A ProxyObserver keeping every finished record."""

    def __init__(self) -> None:
        self.started: list[ProxyRecord] = []
        self.finished: list[ProxyRecord] = []

    async def wait(self, n: int, timeout: float = 5.0) -> list[ProxyRecord]:
        with anyio.fail_after(timeout):
            while len(self.finished) < n:
                await anyio.sleep(0.01)
        return self.finished


class _Obs:
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def started(self, record: ProxyRecord) -> None:
        self.rec.started.append(record)

    def finished(self, record: ProxyRecord) -> None:
        self.rec.finished.append(record)


@dataclass
class Origin:
    """A local origin: records each request (peer port, headers) and answers by path."""

    port: int = 0
    seen: list[tuple[str, str, list[tuple[str, str]], int, int]] = field(default_factory=list)
    """(method, target, headers, body length, client port)"""
    gate: anyio.Event = field(default_factory=anyio.Event)
    got_first: anyio.Event = field(default_factory=anyio.Event)
    html: str = "<html><body><p id='hello'>hello through the proxy</p></body></html>"
    """Served at ``/page.html``."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, ctx: Context, req: Request) -> Response:
        info = ctx.get(SocketInfo)
        peer = info.peer_addr.port if info is not None else 0
        if req.path == "/redirect":
            self.seen.append((req.method, req.target, req.headers.items(), 0, peer))
            return Response(
                302,
                headers=[("Location", "/elsewhere"), ("Set-Cookie", "a=1; Path=/")],
                body=Body(b"moved\n"),
            )
        if req.path == "/gzip":
            import gzip

            self.seen.append((req.method, req.target, req.headers.items(), 0, peer))
            return Response(
                200,
                headers=[("Content-Encoding", "gzip"), ("Content-Type", "text/plain")],
                body=Body(gzip.compress(b"compressed body\n")),
            )
        if req.path == "/trailers":
            self.seen.append((req.method, req.target, req.headers.items(), 0, peer))

            async def parts() -> AsyncIterator[bytes]:
                yield b"part1\n"
                yield b"part2\n"

            return Response(
                200,
                headers=[("Trailer", "X-Checksum")],
                body=Body.from_iter(parts(), trailers=Headers([("X-Checksum", "abc")])),
            )
        if req.path == "/ws":
            self.seen.append((req.method, req.target, req.headers.items(), 0, peer))

            async def echo(stream: ByteStream) -> None:
                try:
                    while True:
                        data = await stream.receive()
                        await stream.send(b"echo:" + data)
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass
                finally:
                    await stream.aclose()

            return Response(
                101,
                headers=[
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Accept", ws_accept(req.headers.get("sec-websocket-key", ""))),
                ],
                on_upgrade=echo,
            )
        if req.path == "/page.html":
            self.seen.append((req.method, req.target, req.headers.items(), 0, peer))
            return Response(
                200,
                headers=[("Content-Type", "text/html; charset=utf-8")],
                body=Body(self.html.encode()),
            )
        if req.path == "/stream":
            gate = self.gate

            async def chunks() -> AsyncIterator[bytes]:
                yield b"first-chunk\n"
                with anyio.fail_after(5):
                    await gate.wait()
                yield b"second-chunk\n"

            self.seen.append((req.method, req.target, req.headers.items(), 0, peer))
            return Response(200, body=Body.from_iter(chunks()))
        if req.path == "/upload":
            # answers with the first chunk as soon as it arrives, then the rest's size
            it = aiter(req.body)
            first = await it.__anext__()
            self.got_first.set()
            rest = 0
            async for c in it:
                rest += len(c)
            self.seen.append((req.method, req.target, req.headers.items(), len(first) + rest, peer))
            return Response.from_text(f"first={first.decode()} rest={rest}\n")
        if req.path.startswith("/big/"):
            n = int(req.path[5:])
            self.seen.append((req.method, req.target, req.headers.items(), 0, peer))
            return Response(200, body=Body(b"x" * n))
        body = await req.read()
        self.seen.append((req.method, req.target, req.headers.items(), len(body), peer))
        text = f"{req.method} {req.target}\n" + "".join(
            f"{n}: {v}\n" for n, v in req.headers.items()
        )
        return Response.from_text(text + f"len={len(body)}\n")


@asynccontextmanager
async def run_origin(tls: TlsAcceptorConfig | None = None) -> AsyncIterator[Origin]:
    origin = Origin()
    async with TcpListener.bind("127.0.0.1:0") as listener, anyio.create_task_group() as tg:
        origin.port = listener.local_addr.port
        tg.start_soon(lambda: serve(listener, service_fn(origin.handle), tls=tls))
        try:
            yield origin
        finally:
            tg.cancel_scope.cancel()


@asynccontextmanager
async def run_proxy(
    proxy: HttpProxy | None = None,
    *,
    tls: TlsAcceptorConfig | None = None,
    config: ServerConfig | None = None,
    wrap: Callable[[Service[Request, Response]], Service[Request, Response]] | None = None,
    **kw: Any,
) -> AsyncIterator[tuple[int, HttpProxy, Recorder]]:
    """Serve an HttpProxy on 127.0.0.1; yields (port, proxy, records)."""
    proxy = proxy or HttpProxy(**kw)
    rec = Recorder()
    ctx = Context()
    ctx.insert(ProxyObservers(_Obs(rec)))
    svc: Service[Request, Response] = wrap(proxy) if wrap is not None else proxy
    cfg = config or HttpProxy.server_config()
    try:
        async with TcpListener.bind("127.0.0.1:0") as listener, anyio.create_task_group() as tg:
            port = listener.local_addr.port
            tg.start_soon(lambda: serve(listener, svc, cfg, ctx=ctx, tls=tls))
            try:
                yield port, proxy, rec
            finally:
                tg.cancel_scope.cancel()
    finally:
        await proxy.aclose()


async def read_response(
    stream: ByteStream, timeout: float = 5.0, *, no_body: bool = False
) -> tuple[int, bytes, bytes]:
    """One response with a Content-Length body (or none): (status, head, body)."""
    buf = b""
    with anyio.fail_after(timeout):
        while b"\r\n\r\n" not in buf:
            try:
                buf += await stream.receive()
            except anyio.EndOfStream:
                break
        head, _, rest = buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        length = 0
        for line in [] if no_body else head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            try:
                rest += await stream.receive()
            except anyio.EndOfStream:
                break
    return status, head, rest


async def raw_exchange(
    port: int, data: bytes, timeout: float = 5.0, *, no_body: bool = False
) -> tuple[int, bytes, bytes]:
    stream = await connect_tcp(f"127.0.0.1:{port}")
    try:
        await stream.send(data)
        return await read_response(stream, timeout, no_body=no_body)
    finally:
        await stream.aclose()
