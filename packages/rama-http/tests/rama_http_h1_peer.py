"""HTTP/1.1 test peers shared by the server tests: a loopback server and a raw client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
from anyio.abc import ByteStream

from rama_core import Context, Service, Shutdown, service_fn
from rama_http import Request, Response
from rama_http.server import Http1Server, ServerConfig
from rama_net import SocketInfo, TcpListener

Handler = Callable[[Context, Request], Any]


@asynccontextmanager
async def http1_server(
    handler: Handler | Service[Request, Response],
    engine: str,
    shutdown: Shutdown | None = None,
    **config: Any,
) -> AsyncIterator[int]:
    """Serve ``handler`` (a function or a Service) over HTTP/1.1 on an ephemeral loopback port."""
    cfg = ServerConfig(http1_engine=engine, **config)  # type: ignore[arg-type]
    listener = TcpListener.bind("127.0.0.1:0")
    service = handler if isinstance(handler, Service) else service_fn(handler)
    server = Http1Server(service, cfg)
    async with anyio.create_task_group() as tg:
        if shutdown is not None:
            shutdown.spawn(partial(listener.serve, server, ctx=shutdown.context()))
        else:
            tg.start_soon(listener.serve, server)
        try:
            yield listener.local_addr.port
        finally:
            listener.close()
            tg.cancel_scope.cancel()


async def hello(ctx: Context, req: Request) -> Response:
    return Response.from_text("hello\n")


async def echo(ctx: Context, req: Request) -> Response:
    """Echo method, target, header names in order and the body."""
    body = await req.read(limit=1 << 20)
    info = ctx.get(SocketInfo)
    return Response.from_json(
        {
            "method": req.method,
            "target": req.target,
            "version": str(req.version),
            "headers": req.headers.items(),
            "body": body.decode("latin-1"),
            "trailers": req.body.trailers.items() if req.body.trailers else None,
            "peer_port": info.peer_addr.port if info else None,
        },
        headers=[("X-Custom-Header", "Kept"), ("x-lower", "kept")],
    )


class RawClient:
    """A byte-level HTTP/1.1 client for what real clients refuse to send."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.buf = b""

    @classmethod
    @asynccontextmanager
    async def connect(cls, port: int) -> AsyncIterator[RawClient]:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            yield cls(stream)

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def _fill(self) -> bool:
        try:
            chunk = await self.stream.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
            return False
        self.buf += chunk
        return True

    async def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not await self._fill():
                raise EOFError(f"closed before {marker!r}; got {self.buf!r}")
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not await self._fill():
                raise EOFError(f"closed before {n} bytes; got {self.buf!r}")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    async def response(self, *, head_request: bool = False) -> RawResponse:
        """Read one response (Content-Length, chunked or, for HEAD, none)."""
        raw_head = await self.read_until(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        _version, status, *reason = lines[0].split(" ", 2)
        headers = [tuple(line.split(": ", 1)) for line in lines[1:] if line]
        resp = RawResponse(int(status), reason[0] if reason else "", headers)  # type: ignore[arg-type]
        if head_request or resp.status in (101, 204, 304) or resp.status < 200:
            return resp
        if resp.get("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int((await self.read_until(b"\r\n"))[:-2].split(b";")[0], 16)
                if size == 0:
                    break
                parts.append(await self.read_exactly(size))
                assert await self.read_exactly(2) == b"\r\n"
            trailer_block = await self.read_until(b"\r\n")
            while trailer_block != b"\r\n" and not trailer_block.endswith(b"\r\n\r\n"):
                trailer_block += await self.read_until(b"\r\n")
            resp.trailers = [
                tuple(t.split(": ", 1))  # type: ignore[misc]
                for t in trailer_block.decode("latin-1").split("\r\n")
                if t
            ]
            resp.body = b"".join(parts)
        elif resp.get("content-length") is not None:
            resp.body = await self.read_exactly(int(resp.get("content-length") or 0))
        return resp

    async def at_eof(self, timeout: float = 5.0) -> bool:
        """Whether the server closes the connection (within ``timeout``) with nothing more."""
        with anyio.fail_after(timeout):
            while await self._fill():
                pass
        return True


class RawResponse:
    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]]) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = b""
        self.trailers: list[tuple[str, str]] = []

    def get(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None

    def json(self) -> Any:
        return json.loads(self.body)
