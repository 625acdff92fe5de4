"""The callback-driven fast path of ProxyServer, end to end over loopback sockets.

The fast path (``ProxyServerConfig(fast_path=True)``, asyncio and uvloop only)
promises to answer byte-for-byte what the general path (``fast_path=False``)
answers, the ``Date`` value aside. Most tests here run the same raw request
against one server of each kind, both in front of the same origin, and compare
the responses, what the origin received and the proxy records.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream
from rama_raw_exchange import exchange as raw_exchange
from rama_raw_exchange import normalize_date

from rama_core import Context, Shutdown, service_fn
from rama_http import Request, Response
from rama_http.server import serve
from rama_net import TcpListener
from rama_proxy import ProxyServer, ProxyServerConfig
from rama_proxy._fast import FastProxy
from rama_proxy._record import ProxyRecord

pytestmark = pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ],
)

BOUND = 5.0


# -- a scriptable raw origin -----------------------------------------------------------------


class Reader:
    """Buffered reads off an anyio stream."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def fill(self) -> bool:
        try:
            chunk = await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        self.buf += chunk
        return True

    async def head(self) -> bytes | None:
        while b"\r\n\r\n" not in self.buf:
            if not await self.fill():
                return None
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head + b"\r\n\r\n"

    async def exact(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            if not await self.fill():
                return None
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


def content_length(head: bytes) -> int:
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return int(m.group(1)) if m else 0


def chunked_body(head: bytes) -> bool:
    return re.search(rb"(?im)^transfer-encoding:.*chunked", head) is not None


async def read_chunked(reader: Reader) -> bytes | None:
    body = b""
    while True:
        while b"\r\n" not in reader.buf:
            if not await reader.fill():
                return None
        line, _, reader.buf = reader.buf.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        if size == 0:
            while b"\r\n" not in reader.buf:
                if not await reader.fill():
                    return None
            while True:
                t, _, reader.buf = reader.buf.partition(b"\r\n")
                if not t:
                    return body
                while b"\r\n" not in reader.buf:
                    if not await reader.fill():
                        return None
        data = await reader.exact(size + 2)
        if data is None:
            return None
        body += data[:-2]


BIG = os.urandom(20 * 1024 * 1024)

RESPONSES: dict[str, bytes] = {
    "/plain": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Up: 1\r\n\r\nok",
    "/chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\nX-Up: c\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: v\r\n\r\n"
    ),
    "/chunked-cl": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    ),
    "/eof": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nclose-delimited body",
    "/204": b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
    "/304": b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 5\r\n\r\n',
    "/close": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    "/hop": (
        b"HTTP/1.1 200 OK\r\nConnection: X-Drop, keep-alive\r\nX-Drop: 1\r\n"
        b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Keep: 1\r\n"
        b"Proxy-Authenticate: Basic\r\nContent-Length: 2\r\n\r\nok"
    ),
    "/dated": (
        b"HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n"
    ),
    "/100": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
    "/bad": b"HTTP/1.1 abc nope\r\n\r\n",
    "/http10": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nX-V: 10\r\n\r\nok",
    "/103": (
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ny"
    ),
    "/multi-chunk": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4;ext=1\r\nabcd\r\n0\r\n\r\n"
    ),
    "/ws-header": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A:  padded  \r\nx-b:\r\n\r\nok",
}


@dataclass
class Origin:
    """A raw-socket origin: counts connections, keeps what it received."""

    port: int = 0
    accepted: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    close_after_each: bool = False
    """Close (silently, keep-alive promised) after every response."""
    slow_body: bool = False
    """Read request bodies slowly, and answer their hash."""


async def origin_conn(o: Origin, stream: SocketStream) -> None:
    o.accepted += 1
    try:
        await origin_serve(o, stream)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # the proxy dropped the connection


async def origin_serve(o: Origin, stream: SocketStream) -> None:
    reader = Reader(stream)
    async with stream:
        while True:
            head = await reader.head()
            if head is None:
                return
            if chunked_body(head):
                body = await read_chunked(reader)
            elif o.slow_body:
                n = content_length(head)
                h = hashlib.sha256()
                got = len(reader.buf)
                h.update(reader.buf)
                reader.buf = b""
                while got < n:
                    await anyio.sleep(0.001)
                    chunk = await stream.receive(16384)
                    h.update(chunk)
                    got += len(chunk)
                body = h.hexdigest().encode()
            else:
                body = await reader.exact(content_length(head))
            if body is None:
                return
            o.requests.append((head, body))
            method, path = head.split(b" ", 2)[:2]
            path = b"/" + path.split(b"/", 3)[3] if path.startswith(b"http") else path
            p = path.decode()
            if p == "/hang":
                await anyio.sleep_forever()
            if p == "/slow":
                await anyio.sleep(0.5)
                p = "/plain"
            if p == "/echo" or o.slow_body:
                await stream.send(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
                )
            elif p == "/big":
                await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BIG))
                view = memoryview(BIG)
                for i in range(0, len(BIG), 1 << 20):
                    await stream.send(view[i : i + (1 << 20)])
            elif p == "/reset-mid":
                await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial")
                return
            else:
                resp = RESPONSES.get(p, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                if method == b"HEAD":
                    resp = resp.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
                await stream.send(resp)
                if p in ("/eof", "/close", "/bad", "/http10"):
                    return
            if o.close_after_each or re.search(rb"(?im)^connection:.*close", head):
                return


@asynccontextmanager
async def raw_origin(**kwargs: Any) -> AsyncIterator[Origin]:
    o = Origin(**kwargs)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    o.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, lambda s: origin_conn(o, s))
        try:
            yield o
        finally:
            tg.cancel_scope.cancel()


class Observer:
    def __init__(self) -> None:
        self.started_records: list[ProxyRecord] = []
        self.records: list[ProxyRecord] = []

    def started(self, record: ProxyRecord) -> None:
        self.started_records.append(record)

    def finished(self, record: ProxyRecord) -> None:
        self.records.append(record)

    async def wait(self, n: int) -> list[ProxyRecord]:
        with anyio.fail_after(BOUND):
            while len(self.records) < n:
                await anyio.sleep(0.01)
        return self.records

    async def settle(self) -> list[ProxyRecord]:
        """Every started record finished (bounded)."""
        with anyio.fail_after(BOUND):
            while len(self.records) < len(self.started_records):
                await anyio.sleep(0.01)
        await anyio.sleep(0.02)
        return self.records


def record_diff(
    fast: list[ProxyRecord],
    general: list[ProxyRecord],
    *,
    connect_time: bool = False,
    ports: tuple[int, int] | None = None,
) -> list[tuple[int, str, Any, Any]]:
    """Where the records of the two paths differ: (index, field, fast, general);
    ``ports``: the origin port of each (the same in both once replaced)."""
    a = [fields(r, connect_time=connect_time) for r in fast]
    b = [fields(r, connect_time=connect_time) for r in general]
    if ports is not None:
        for recs, port in ((a, ports[0]), (b, ports[1])):
            for r in recs:
                if r["target"] is not None:
                    r["target"] = r["target"].replace(str(port), "<o>")
    if len(a) != len(b):
        return [(-1, "count", a, b)]
    return [
        (i, k, x[k], y[k])
        for i, (x, y) in enumerate(zip(a, b, strict=True))
        for k in x
        if x[k] != y[k]
    ]


def fields(r: ProxyRecord, *, connect_time: bool = False) -> dict[str, Any]:
    """What must match between the paths (durations and timestamps aside; whether a
    connect time was noted is compared by its own test, see test_connect_time_parity)."""
    out = {
        "protocol": r.protocol,
        "client_host": str(r.client.ip) if r.client is not None else None,
        "user": r.user,
        "method": r.method,
        "target": r.target,
        "upstream": r.upstream,
        "status": r.status,
        "bytes_in": r.bytes_in,
        "bytes_out": r.bytes_out,
        "error": r.error,
        "duration_set": r.duration is not None,
    }
    if connect_time:
        out["connect_time_set"] = r.connect_time is not None
    return out


@dataclass
class Running:
    server: ProxyServer
    observer: Observer
    port: int
    fast: FastProxy | None = None


@asynccontextmanager
async def proxy(
    *, fast_path: bool = True, ctx: Context | None = None, **kwargs: Any
) -> AsyncIterator[Running]:
    kwargs.setdefault("bind", "127.0.0.1:0")
    kwargs.setdefault("timeout", 1.0)
    kwargs.setdefault("connect_timeout", 1.0)
    kwargs.setdefault("peek_timeout", 1.0)
    obs = Observer()
    server = ProxyServer(ProxyServerConfig(fast_path=fast_path, **kwargs), observers=[obs])
    server.bind()
    running = Running(server, obs, server.local_addr.port)
    if fast_path:
        # the same decision serve() takes: the fast path must be on for this config
        running.fast = FastProxy.for_server(server)
        assert running.fast is not None
    async with anyio.create_task_group() as tg:
        if ctx is not None:
            tg.start_soon(lambda: server.serve(ctx=ctx))
        else:
            tg.start_soon(server.serve)
        try:
            yield running
        finally:
            tg.cancel_scope.cancel()


@asynccontextmanager
async def pair(**kwargs: Any) -> AsyncIterator[tuple[Running, Running]]:
    async with proxy(fast_path=True, **kwargs) as f, proxy(fast_path=False, **kwargs) as g:
        yield f, g


async def read_head(s: SocketStream) -> bytes:
    buf = b""
    with anyio.fail_after(BOUND):
        while b"\r\n\r\n" not in buf:
            buf += await s.receive()
    return buf


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def get(o: int, path: str, extra: str = "", *, close: bool = True, method: str = "GET") -> bytes:
    conn = "Connection: close\r\n" if close else ""
    return (
        f"{method} http://127.0.0.1:{o}{path} HTTP/1.1\r\nHost: 127.0.0.1:{o}\r\n{extra}{conn}\r\n"
    ).encode()


async def good_request(port: int, o: int) -> None:
    got = await raw_exchange(port, get(o, "/plain"))
    assert got.startswith(b"HTTP/1.1 200 OK\r\n"), got
    assert got.endswith(b"\r\n\r\nok"), got


async def both(
    fast: Running, general: Running, data: tuple[bytes, bytes], *, eof: bool = False
) -> list[bytes]:
    """The answers of both servers (``data[0]`` to the fast one), sent at once."""
    out = [b"", b""]

    async def one(i: int, port: int) -> None:
        out[i] = await raw_exchange(port, data[i], eof=eof, bound=BOUND)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 0, fast.port)
        tg.start_soon(one, 1, general.port)
    return out


# -- 1 + 2: parity ---------------------------------------------------------------------------

# name -> request (format fields: o = origin port, dead = a closed port, h = origin port too)
PARITY: dict[str, str] = {
    "refused-forward": (
        "GET http://127.0.0.1:{dead}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ),
    "refused-forward-keepalive": "GET http://127.0.0.1:{dead}/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "refused-connect-open": "CONNECT 127.0.0.1:{dead} HTTP/1.1\r\nHost: 127.0.0.1:{dead}\r\n\r\n",
    "refused-connect": "CONNECT 127.0.0.1:{dead} HTTP/1.1\r\nHost: 127.0.0.1:{dead}\r\n\r\n",
    "timeout-504": "GET http://127.0.0.1:{o}/hang HTTP/1.1\r\nHost: x\r\n\r\n",
    "get": (
        "GET http://127.0.0.1:{o}/plain HTTP/1.1\r\nHost: 127.0.0.1:{o}\r\n"
        "Connection: close\r\n\r\n"
    ),
    "get-keepalive-eof": "GET http://127.0.0.1:{o}/plain HTTP/1.1\r\nHost: 127.0.0.1:{o}\r\n\r\n",
    "head": "HEAD http://127.0.0.1:{o}/plain HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "post": (
        "POST http://127.0.0.1:{o}/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n"
        "Content-Type: text/plain\r\nConnection: close\r\n\r\nhello world"
    ),
    "post-empty": (
        "POST http://127.0.0.1:{o}/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n"
    ),
    "chunked-response": (
        "GET http://127.0.0.1:{o}/chunked HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "chunked-and-length-response": (
        "GET http://127.0.0.1:{o}/chunked-cl HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "chunked-response-te-trailers": (
        "GET http://127.0.0.1:{o}/chunked HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n"
        "Connection: close\r\n\r\n"
    ),
    "close-delimited": (
        "GET http://127.0.0.1:{o}/eof HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "close-delimited-keepalive": "GET http://127.0.0.1:{o}/eof HTTP/1.1\r\nHost: a\r\n\r\n",
    "204": "GET http://127.0.0.1:{o}/204 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "304": "GET http://127.0.0.1:{o}/304 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "origin-close": "GET http://127.0.0.1:{o}/close HTTP/1.1\r\nHost: a\r\n\r\n",
    "origin-date": (
        "GET http://127.0.0.1:{o}/dated HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "origin-100": "GET http://127.0.0.1:{o}/100 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "origin-bad-response": "GET http://127.0.0.1:{o}/bad HTTP/1.1\r\nHost: a\r\n\r\n",
    "origin-404": (
        "GET http://127.0.0.1:{o}/nothing HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "hop-by-hop": (
        "GET http://127.0.0.1:{o}/hop HTTP/1.1\r\nHost: 127.0.0.1:{o}\r\n"
        "Connection: close, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=3\r\n"
        "Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\n"
        "Proxy-Authorization: Basic dTpw\r\nX-End: 1\r\n\r\n"
    ),
    "stale-host": (
        "GET http://127.0.0.1:{o}/plain HTTP/1.1\r\nHost: stale.example\r\n"
        "Connection: close\r\n\r\n"
    ),
    "header-order-casing": (
        "GET http://127.0.0.1:{o}/plain?q=1&r=%20 HTTP/1.1\r\nx-lower: 1\r\nHost: 127.0.0.1:{o}\r\n"
        "X-UPPER: 2\r\nX-Mixed-Case: 3\r\nx-lower: again\r\nAccept: */*\r\n"
        "Connection: close\r\n\r\n"
    ),
    "origin-form-400": "GET /plain HTTP/1.1\r\nHost: 127.0.0.1:{o}\r\nConnection: close\r\n\r\n",
    "https-target": (
        "GET https://127.0.0.1:{o}/plain HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "http10": "GET http://127.0.0.1:{o}/plain HTTP/1.0\r\n\r\n",
    "garbage": "\x16\x03\x01garbage\r\n\r\n",
    "bad-request-line": "GET\r\n\r\n",
    "expect": (
        "POST http://127.0.0.1:{o}/echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\nhi"
    ),
    "chunked-request": (
        "POST http://127.0.0.1:{o}/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    ),
    "connect-no-port": "CONNECT 127.0.0.1 HTTP/1.1\r\nHost: a\r\n\r\n",
    "connect-ipv6": "CONNECT [::1]:{dead} HTTP/1.1\r\nHost: a\r\n\r\n",
    "pipelined": (
        "GET http://127.0.0.1:{o}/plain HTTP/1.1\r\nHost: a\r\n\r\n"
        "GET http://127.0.0.1:{o}/chunked HTTP/1.1\r\nHost: a\r\n\r\n"
        "POST http://127.0.0.1:{o}/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        "GET http://127.0.0.1:{o}/204 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "pipelined-refused-then-ok": (
        "GET http://127.0.0.1:{dead}/ HTTP/1.1\r\nHost: a\r\n\r\n"
        "GET http://127.0.0.1:{o}/plain HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "pipelined-then-http10": (
        "GET http://127.0.0.1:{o}/plain HTTP/1.1\r\nHost: a\r\n\r\n"
        "GET http://127.0.0.1:{o}/plain HTTP/1.0\r\n\r\n"
    ),
    "head-chunked": (
        "HEAD http://127.0.0.1:{o}/chunked HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "head-no-length": (
        "HEAD http://127.0.0.1:{o}/eof HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "userinfo": (
        "GET http://u:p@127.0.0.1:{o}/plain HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "no-path": "GET http://127.0.0.1:{o} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "query-no-path": (
        "GET http://127.0.0.1:{o}?x=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "no-host": "GET http://127.0.0.1:{o}/plain HTTP/1.1\r\nConnection: close\r\n\r\n",
    "two-hosts": (
        "GET http://127.0.0.1:{o}/plain HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"
    ),
    "lower-method": (
        "get http://127.0.0.1:{o}/plain HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "odd-method": (
        "PURGE http://127.0.0.1:{o}/plain HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "options-star": "OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "connect-upper-host": (
        "CONNECT LOCALHOST:{dead} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "connect-name": "CONNECT localhost:{dead} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "connect-leading-zero-port": (
        "CONNECT 127.0.0.1:0{dead} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "connect-port-0": "CONNECT 127.0.0.1:0 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "connect-close": "CONNECT 127.0.0.1:{dead} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "huge-header": "GET http://127.0.0.1:{o}/plain HTTP/1.1\r\nHost: a\r\nX-Big: "
    + "b" * 70000
    + "\r\n\r\n",
    "long-target": "GET http://127.0.0.1:{o}/" + "p" * 9000 + " HTTP/1.1\r\nHost: a\r\n\r\n",
    "bare-lf": "GET http://127.0.0.1:{o}/plain HTTP/1.1\nHost: a\nConnection: close\n\n",
    "space-before-colon": (
        "GET http://127.0.0.1:{o}/plain HTTP/1.1\r\nHost : a\r\nConnection: close\r\n\r\n"
    ),
    "name-resolved": (
        "GET http://localhost:{o}/plain HTTP/1.1\r\nHost: localhost:{o}\r\n"
        "Connection: close\r\n\r\n"
    ),
    "origin-http10": (
        "GET http://127.0.0.1:{o}/http10 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "origin-http10-keepalive": (
        "GET http://127.0.0.1:{o}/http10 HTTP/1.1\r\nHost: a\r\n\r\n"
        "GET http://127.0.0.1:{o}/plain HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "origin-103": "GET http://127.0.0.1:{o}/103 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "origin-gzip-chunked": (
        "GET http://127.0.0.1:{o}/multi-chunk HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "origin-ws-header": (
        "GET http://127.0.0.1:{o}/ws-header HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "post-pipelined-body-then-get": (
        "POST http://127.0.0.1:{o}/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n12345"
        "GET http://127.0.0.1:{o}/plain HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ),
    "connect-then-bytes": (
        "CONNECT 127.0.0.1:{o} HTTP/1.1\r\nHost: a\r\n\r\nGET /close HTTP/1.1\r\nHost: a\r\n\r\n"
    ),
    "absolute-default-port-host": (
        "GET http://localhost:{o}/plain HTTP/1.1\r\nHost: LOCALHOST:{o}\r\n"
        "Connection: close\r\n\r\n"
    ),
}

# the ones the fast path is to serve itself (a record with these protocols/methods)
EOF_CASES = {"get-keepalive-eof", "close-delimited-keepalive", "refused-forward-keepalive"}


@pytest.mark.anyio
@pytest.mark.parametrize("case", sorted(PARITY))
async def test_parity_with_the_general_path(case: str) -> None:
    async with raw_origin() as o1, raw_origin() as o2, pair() as (fast, general):
        dead = closed_port()
        data = tuple(PARITY[case].format(o=o.port, dead=dead).encode("latin-1") for o in (o1, o2))
        eof = case in EOF_CASES or case == "refused-connect" or case.endswith("400")
        got_fast, got_general = await both(fast, general, (data[0], data[1]), eof=eof)
        assert normalize_date(got_fast) == normalize_date(got_general)
        # what the origins received (their ports aside)
        seen_fast = [(h.replace(b"%d" % o1.port, b"<o>"), b) for h, b in o1.requests]
        seen_general = [(h.replace(b"%d" % o2.port, b"<o>"), b) for h, b in o2.requests]
        assert seen_fast == seen_general
        records = await fast.observer.settle(), await general.observer.settle()
        assert record_diff(*records, ports=(o1.port, o2.port)) == []
        # a well-behaved request still works on both
        await good_request(fast.port, o1.port)
        await good_request(general.port, o2.port)


@pytest.mark.anyio
async def test_what_the_origin_receives() -> None:
    """Hop-by-hop fields stripped both ways, stale Host replaced, order and casing kept."""
    async with raw_origin() as o, proxy() as fast:
        got = await raw_exchange(fast.port, PARITY["hop-by-hop"].format(o=o.port).encode())
        head = o.requests[-1][0].decode()
        for name in ("x-private", "keep-alive", "proxy-connection", "te:", "trailer"):
            assert name not in head.lower(), head
        assert "proxy-authorization" not in head.lower()
        assert "X-End: 1\r\n" in head
        resp = got.partition(b"\r\n\r\n")[0].decode().lower()
        for name in ("x-drop", "keep-alive", "proxy-connection", "proxy-authenticate"):
            assert name not in resp, resp
        assert "x-keep: 1" in resp
        await raw_exchange(fast.port, PARITY["stale-host"].format(o=o.port).encode())
        head = o.requests[-1][0].decode()
        assert f"Host: 127.0.0.1:{o.port}\r\n" in head
        assert "stale" not in head
        await raw_exchange(fast.port, PARITY["header-order-casing"].format(o=o.port).encode())
        head = o.requests[-1][0].decode()
        assert head.startswith("GET /plain?q=1&r=%20 HTTP/1.1\r\n"), head
        names = [line.split(":")[0] for line in head.split("\r\n")[1:] if line]
        assert names[:6] == ["x-lower", "Host", "X-UPPER", "X-Mixed-Case", "x-lower", "Accept"]


@pytest.mark.anyio
async def test_chunked_response_is_rechunked_with_trailers() -> None:
    async with raw_origin() as o, proxy() as fast:
        got = await raw_exchange(fast.port, PARITY["chunked-response"].format(o=o.port).encode())
        head, _, body = got.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        assert b"content-length" not in head.lower()
        assert body == b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: v\r\n\r\n"
        got = await raw_exchange(
            fast.port, PARITY["chunked-and-length-response"].format(o=o.port).encode()
        )
        head, _, body = got.partition(b"\r\n\r\n")
        assert b"content-length" not in head.lower(), head
        assert body == b"3\r\nabc\r\n0\r\n\r\n"
        got = await raw_exchange(fast.port, PARITY["close-delimited"].format(o=o.port).encode())
        head, _, body = got.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        assert body == b"14\r\nclose-delimited body\r\n0\r\n\r\n"


@pytest.mark.anyio
async def test_records_of_the_fast_path() -> None:
    """The fast path really serves forwards and tunnels: its records say so."""
    async with raw_origin() as o, proxy(auth=[("u", "p")]) as fast:
        auth = "Proxy-Authorization: Basic dTpw\r\n"  # u:p
        await raw_exchange(fast.port, get(o.port, "/plain", auth))
        await raw_exchange(
            fast.port,
            (
                f"POST http://127.0.0.1:{o.port}/echo HTTP/1.1\r\nHost: a\r\n{auth}"
                "Content-Length: 5\r\nConnection: close\r\n\r\nhello"
            ).encode(),
        )
        async with await anyio.connect_tcp("127.0.0.1", fast.port) as s:
            await s.send(
                f"CONNECT 127.0.0.1:{o.port} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode()
                + get(o.port, "/plain")
            )
            data = b""
            with anyio.fail_after(BOUND):
                async for chunk in s:
                    data += chunk
        assert data.startswith(b"HTTP/1.1 200 Connection established\r\n")
        assert data.endswith(b"ok")
        await raw_exchange(fast.port, get(o.port, "/plain"))  # 407
        recs = await fast.observer.wait(4)
        r0, r1, r2, r3 = recs
        assert (r0.protocol, r0.method, r0.status, r0.user, r0.error) == (
            "http",
            "GET",
            200,
            "u",
            None,
        )
        assert r0.target == f"http://127.0.0.1:{o.port}/plain"
        assert (r0.bytes_in, r0.bytes_out) == (0, 2)
        assert r0.connect_time is None  # as on the general path: only tunnels record it
        assert r0.duration is not None
        assert r0.client is not None
        assert str(r0.client.ip) == "127.0.0.1"
        assert (r1.method, r1.bytes_in, r1.bytes_out, r1.status) == ("POST", 5, 5, 200)
        assert (r2.protocol, r2.method, r2.target, r2.status, r2.user) == (
            "connect",
            "CONNECT",
            f"127.0.0.1:{o.port}",
            200,
            "u",
        )
        assert r2.bytes_in == len(get(o.port, "/plain"))
        assert r2.bytes_out == len(RESPONSES["/plain"])
        assert r2.connect_time is not None
        assert (r3.status, r3.user) == (407, None)
        assert len(fast.observer.started_records) == 4


@pytest.mark.anyio
@pytest.mark.parametrize(
    "auth",
    [
        pytest.param("", id="none"),
        pytest.param("Proxy-Authorization: Basic dTp3cm9uZw==\r\n", id="wrong"),
        pytest.param("Proxy-Authorization: Basic dTpw\r\n", id="right"),
        pytest.param("Proxy-Authorization: Bearer xyz\r\n", id="not-basic"),
        pytest.param("Proxy-Authorization: Basic !!!\r\n", id="bad-base64"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "CONNECT"])
async def test_auth_parity(auth: str, method: str) -> None:
    async with raw_origin() as o, pair(auth=[("u", "p")]) as (fast, general):
        if method == "GET":
            data = get(o.port, "/plain", auth)
        else:
            data = f"CONNECT 127.0.0.1:{o.port} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode()
            data += get(o.port, "/plain")
        got_fast = await raw_exchange(fast.port, data)
        got_general = await raw_exchange(general.port, data)
        assert normalize_date(got_fast) == normalize_date(got_general)
        if "dTpw" in auth:
            assert got_fast.endswith(b"ok")
        else:
            assert got_fast.startswith(b"HTTP/1.1 407 ")
            assert b"Proxy-Authenticate: Basic" in got_fast
        assert record_diff(await fast.observer.settle(), await general.observer.settle()) == []


@pytest.mark.anyio
async def test_auth_is_remembered_on_a_keep_alive_connection() -> None:
    auth = "Proxy-Authorization: Basic dTpw\r\n"
    async with raw_origin() as o, pair(auth=[("u", "p")]) as (fast, general):
        data = get(o.port, "/plain", auth, close=False) * 2 + get(o.port, "/plain")  # no auth
        got_fast = await raw_exchange(fast.port, data)
        got_general = await raw_exchange(general.port, data)
        assert normalize_date(got_fast) == normalize_date(got_general)
        assert got_fast.count(b"HTTP/1.1 200 OK") == 2
        assert got_fast.count(b"HTTP/1.1 407") == 1


@pytest.mark.anyio
@pytest.mark.parametrize("split", ["whole", "tiny"])
async def test_connect_reply_and_forbidden_port(split: str) -> None:
    async with raw_origin() as o, pair(allow_connect_ports=[o.port]) as (fast, general):
        for p in (fast, general):
            async with await anyio.connect_tcp("127.0.0.1", p.port) as s:
                req = f"CONNECT 127.0.0.1:{o.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                if split == "whole":
                    await s.send(req)
                else:
                    for b in req:
                        await s.send(bytes([b]))
                head = await read_head(s)
                assert (
                    normalize_date(head)
                    == b"HTTP/1.1 200 Connection established\r\nDate: <date>\r\n\r\n"
                )
        bad = f"CONNECT 127.0.0.1:{o.port + 1 if o.port < 65535 else 1} HTTP/1.1\r\nHost: x\r\n\r\n"
        got_fast = await raw_exchange(fast.port, bad.encode(), eof=True)
        got_general = await raw_exchange(general.port, bad.encode(), eof=True)
        assert got_fast.startswith(b"HTTP/1.1 403 ")
        assert normalize_date(got_fast) == normalize_date(got_general)


@pytest.mark.anyio
async def test_pipelined_requests_answered_in_order() -> None:
    async with raw_origin() as o, proxy() as fast:
        paths = ["/plain", "/chunked", "/204", "/nothing", "/plain"]
        data = b"".join(get(o.port, p, close=False) for p in paths[:-1]) + get(o.port, paths[-1])
        got = await raw_exchange(fast.port, data)
        statuses = re.findall(rb"HTTP/1.1 (\d+)", got)
        assert statuses == [b"200", b"200", b"204", b"404", b"200"]
        assert [r[0].split(b" ")[1] for r in o.requests] == [p.encode() for p in paths]
        assert o.accepted == 1


# -- 3: keep-alive and pooling ---------------------------------------------------------------


@pytest.mark.anyio
async def test_one_upstream_connection_for_many_requests() -> None:
    async with raw_origin() as o, proxy() as fast:
        with anyio.fail_after(BOUND):
            async with await anyio.connect_tcp("127.0.0.1", fast.port) as s:
                for _ in range(50):
                    await s.send(get(o.port, "/plain", close=False))
                    buf = await read_head(s)
                    while not buf.endswith(b"ok"):
                        buf += await s.receive()
                    assert buf.startswith(b"HTTP/1.1 200 OK")
        # a second client reuses the pooled connection too
        await good_request(fast.port, o.port)
        assert o.accepted == 1
        assert len(o.requests) == 51


@pytest.mark.anyio
async def test_retry_on_a_pooled_connection_the_origin_closed() -> None:
    async with raw_origin(close_after_each=True) as o, proxy() as fast:
        async with await anyio.connect_tcp("127.0.0.1", fast.port) as s:
            for i in range(5):
                await s.send(get(o.port, "/plain", close=False))
                buf = await read_head(s)
                with anyio.fail_after(BOUND):
                    while not buf.endswith(b"ok"):
                        buf += await s.receive()
                assert buf.startswith(b"HTTP/1.1 200 OK"), (i, buf)
                # give the proxy no chance to see the close before the next request
        assert o.accepted == 5
        recs = await fast.observer.wait(5)
        assert all(r.status == 200 and r.error is None for r in recs)


@pytest.mark.anyio
async def test_retry_when_the_close_races_the_request() -> None:
    """The origin closes *after* the proxy wrote the next request on the pooled socket."""
    state = {"n": 0}

    async def racer(stream: SocketStream) -> None:
        state["n"] += 1
        reader = Reader(stream)
        async with stream:
            head = await reader.head()
            if head is None:
                return
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            if state["n"] == 1:
                # wait for the next request, then drop it unanswered
                await reader.head()
                return

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, racer)
        async with pair() as (fast, general):
            for p in (fast, general):
                state["n"] = 0
                got1 = await raw_exchange(p.port, get(port, "/a"))
                got2 = await raw_exchange(p.port, get(port, "/b"))
                assert got1.endswith(b"ok"), got1
                assert got2.endswith(b"ok"), got2
        tg.cancel_scope.cancel()


# -- 4: backpressure and integrity -----------------------------------------------------------


@pytest.mark.anyio
async def test_big_response_to_a_slow_client() -> None:
    async with raw_origin() as o, proxy(timeout=5.0) as fast:
        with anyio.fail_after(30):
            async with await anyio.connect_tcp("127.0.0.1", fast.port) as s:
                await s.send(get(o.port, "/big"))
                buf = await read_head(s)
                head, _, rest = buf.partition(b"\r\n\r\n")
                assert b"Content-Length: %d" % len(BIG) in head
                h = hashlib.sha256(rest)
                got = len(rest)
                reads = 0
                while True:
                    try:
                        chunk = await s.receive(65536)
                    except anyio.EndOfStream:
                        break
                    h.update(chunk)
                    got += len(chunk)
                    reads += 1
                    if reads % 8 == 0:
                        await anyio.sleep(0.002)
        assert got == len(BIG)
        assert h.digest() == hashlib.sha256(BIG).digest()
        recs = await fast.observer.wait(1)
        assert recs[0].bytes_out == len(BIG)


@pytest.mark.anyio
async def test_big_upload_to_a_slow_origin() -> None:
    body = BIG
    async with raw_origin(slow_body=True) as o, proxy(timeout=5.0) as fast:
        with anyio.fail_after(30):
            async with await anyio.connect_tcp("127.0.0.1", fast.port) as s:
                await s.send(
                    (
                        f"POST http://127.0.0.1:{o.port}/up HTTP/1.1\r\nHost: a\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                    ).encode()
                )
                view = memoryview(body)
                for i in range(0, len(body), 1 << 20):
                    await s.send(view[i : i + (1 << 20)])
                got = b""
                async for chunk in s:
                    got += chunk
        assert got.endswith(hashlib.sha256(body).hexdigest().encode()), got[:200]
        recs = await fast.observer.wait(1)
        assert recs[0].bytes_in == len(body)


@asynccontextmanager
async def tcp_origin(
    handler: Callable[[SocketStream], Awaitable[None]],
) -> AsyncIterator[int]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        try:
            yield port
        finally:
            tg.cancel_scope.cancel()


async def open_tunnel(proxy_port: int, port: int) -> SocketStream:
    s = await anyio.connect_tcp("127.0.0.1", proxy_port)
    await s.send(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await read_head(s)
    assert head.startswith(b"HTTP/1.1 200 Connection established\r\n")
    assert head.endswith(b"\r\n\r\n"), head
    assert head.count(b"\r\n\r\n") == 1, head
    return s


@pytest.mark.anyio
async def test_tunnel_50mb_each_way() -> None:
    size = 50 * 1024 * 1024
    up_data = os.urandom(size)
    down_data = os.urandom(size)
    result: dict[str, bytes] = {}

    async def send_all(s: SocketStream, data: bytes) -> None:
        view = memoryview(data)
        for i in range(0, len(data), 1 << 20):
            await s.send(view[i : i + (1 << 20)])
        await s.send_eof()

    async def recv_all(s: SocketStream, key: str) -> None:
        h = hashlib.sha256()
        n = 0
        try:
            async for chunk in s:
                h.update(chunk)
                n += len(chunk)
        except anyio.BrokenResourceError:
            pass
        result[key] = h.digest()
        result[key + "_n"] = str(n).encode()

    origin_done = anyio.Event()

    async def handler(s: SocketStream) -> None:
        async with s, anyio.create_task_group() as tg:
            tg.start_soon(send_all, s, down_data)
            tg.start_soon(recv_all, s, "origin")
        origin_done.set()

    async with tcp_origin(handler) as port, proxy(timeout=5.0) as fast:
        with anyio.fail_after(40):
            s = await open_tunnel(fast.port, port)
            async with s, anyio.create_task_group() as tg:
                tg.start_soon(send_all, s, up_data)
                tg.start_soon(recv_all, s, "client")
            # The proxy may finish (and log) while the tail of the upload still
            # sits in the origin's socket buffer; leaving tcp_origin would
            # cancel the origin mid-read.
            await origin_done.wait()
        recs = await fast.observer.wait(1)
    assert result["origin_n"] == str(size).encode()
    assert result["client_n"] == str(size).encode()
    assert result["origin"] == hashlib.sha256(up_data).digest()
    assert result["client"] == hashlib.sha256(down_data).digest()
    assert (recs[0].bytes_in, recs[0].bytes_out, recs[0].error) == (size, size, None)


@pytest.mark.anyio
async def test_tunnel_half_close() -> None:
    async def handler(s: SocketStream) -> None:
        async with s:
            got = b""
            async for chunk in s:  # until the client's half-close arrives
                got += chunk
            await anyio.sleep(0.1)
            await s.send(b"answer to " + got)

    async with tcp_origin(handler) as port, proxy() as fast:
        with anyio.fail_after(BOUND):
            s = await open_tunnel(fast.port, port)
            async with s:
                await s.send(b"question")
                await s.send_eof()
                data = b""
                async for chunk in s:
                    data += chunk
        assert data == b"answer to question"
        recs = await fast.observer.wait(1)
        assert (recs[0].bytes_in, recs[0].bytes_out, recs[0].error) == (8, 18, None)


@pytest.mark.anyio
async def test_tunnel_early_data_after_connect() -> None:
    """Bytes sent with the CONNECT head go to the target first."""

    async def handler(s: SocketStream) -> None:
        async with s:
            got = b""
            async for chunk in s:
                got += chunk
            await s.send(got[::-1])

    async with tcp_origin(handler) as port, pair() as (fast, general):
        for p in (fast, general):
            data = f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\nearly bytes".encode()
            got = await raw_exchange(p.port, data, eof=True)
            head, _, body = got.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 Connection established")
            assert body == b"setyb ylrae"


@pytest.mark.parametrize("via", ["connect", "socks5"])
@pytest.mark.anyio
async def test_tunnel_bytes_arriving_while_early_data_is_written_keep_their_order(
    via: str,
) -> None:
    """Bytes after the CONNECT head's (or SOCKS5 request's) early data, arriving
    before that data is upstream, follow it (they were once read into a buffer
    nobody sent)."""

    async def handler(s: SocketStream) -> None:
        async with s:
            got = b""
            async for chunk in s:
                got += chunk
            await s.send(got)

    async def one(port: int, target: int, i: int) -> bytes:
        with anyio.fail_after(BOUND):
            async with await anyio.connect_tcp("127.0.0.1", port) as s:
                if via == "connect":
                    head = f"CONNECT 127.0.0.1:{target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                else:  # greeting (no auth) and request, the client not waiting for answers
                    addr = socket.inet_aton("127.0.0.1") + target.to_bytes(2, "big")
                    head = b"\x05\x01\x00" + b"\x05\x01\x00\x01" + addr
                await s.send(head + f"early-{i}".encode())
                await s.send(b"-middle")  # its own segment, right behind the head's
                await anyio.sleep(0.001 * (i % 3))
                await s.send(b"-late")
                await s.send_eof()
                got = b""
                async for chunk in s:
                    got += chunk
        if via == "connect":
            return got.partition(b"\r\n\r\n")[2]
        assert got[:4] == b"\x05\x00\x05\x00", got  # method chosen, then succeeded
        return got[2 + 10 :]

    async with tcp_origin(handler) as port, proxy() as fast:
        for i in range(60):
            assert await one(fast.port, port, i) == f"early-{i}-middle-late".encode()


# -- 5: timeouts and bad input ---------------------------------------------------------------


async def on_both(
    fast: Running, general: Running, fn: Callable[[Running], Awaitable[None]]
) -> None:
    """Run ``fn`` against both servers at once (the timeout cases take their time)."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(fn, fast)
        tg.start_soon(fn, general)


@pytest.mark.anyio
async def test_partial_head_then_silence_gets_408() -> None:
    async with raw_origin() as o, pair() as (fast, general):
        answers: dict[bool, list[bytes]] = {}

        partials = [
            b"GET http://127.0.0.1:1/ HTTP/1.1\r\nHost:",
            b"GET http://127.0.0.1:1/ HTTP/1.1\r\n",
            b"G",
        ]

        async def one(p: Running, i: int, got: list[bytes]) -> None:
            start = anyio.current_time()
            got[i] = await raw_exchange(p.port, partials[i], bound=3.0)
            assert anyio.current_time() - start < 2.5
            assert got[i].startswith(b"HTTP/1.1 408 "), got[i]

        async def case(p: Running) -> None:
            got = [b""] * len(partials)
            async with anyio.create_task_group() as tg:
                for i in range(len(partials)):
                    tg.start_soon(one, p, i, got)
            answers[p.fast is not None] = [normalize_date(g) for g in got]
            await good_request(p.port, o.port)

        await on_both(fast, general, case)
        assert answers[True] == answers[False]


@pytest.mark.anyio
async def test_idle_keep_alive_connection_is_closed() -> None:
    async with raw_origin() as o, pair() as (fast, general):

        async def case(p: Running) -> None:
            with anyio.fail_after(3.0):
                async with await anyio.connect_tcp("127.0.0.1", p.port) as s:
                    await s.send(get(o.port, "/plain", close=False))
                    buf = await read_head(s)
                    while not buf.endswith(b"ok"):
                        buf += await s.receive()
                    start = anyio.current_time()
                    rest = b""
                    try:
                        async for chunk in s:
                            rest += chunk
                    except anyio.BrokenResourceError:
                        pass
                    assert rest == b""
                    assert 0.5 < anyio.current_time() - start < 2.5
            await good_request(p.port, o.port)

        await on_both(fast, general, case)


@pytest.mark.anyio
async def test_idle_connection_without_a_byte_is_closed() -> None:
    async with raw_origin() as o, pair() as (fast, general):

        async def case(p: Running) -> None:
            start = anyio.current_time()
            assert await raw_exchange(p.port, b"", bound=3.0) == b""
            assert anyio.current_time() - start < 2.5
            await good_request(p.port, o.port)

        await on_both(fast, general, case)


@pytest.mark.anyio
async def test_idle_tunnel_is_closed() -> None:
    async def handler(s: SocketStream) -> None:
        async with s:
            await anyio.sleep_forever()

    async with tcp_origin(handler) as port, raw_origin() as o, proxy(idle_timeout=0.5) as fast:
        with anyio.fail_after(3.0):
            s = await open_tunnel(fast.port, port)
            start = anyio.current_time()
            async with s:
                rest = b""
                try:
                    async for chunk in s:
                        rest += chunk
                except anyio.BrokenResourceError:
                    pass
            assert rest == b""
            assert 0.3 < anyio.current_time() - start < 2.0
        recs = await fast.observer.wait(1)
        assert recs[0].error == "idle timeout"
        await good_request(fast.port, o.port)


@pytest.mark.anyio
async def test_upstream_never_answers_504_in_time() -> None:
    async with raw_origin() as o, proxy() as fast:
        start = anyio.current_time()
        got = await raw_exchange(fast.port, get(o.port, "/hang"), bound=3.0)
        assert got.startswith(b"HTTP/1.1 504 ")
        assert anyio.current_time() - start < 2.5
        await good_request(fast.port, o.port)


@pytest.mark.anyio
async def test_client_leaving_mid_response_does_not_disturb_another() -> None:
    async with raw_origin() as o, proxy(timeout=5.0) as fast:
        with anyio.fail_after(10):
            a = await anyio.connect_tcp("127.0.0.1", fast.port)
            await a.send(get(o.port, "/big"))
            await read_head(a)
            a_sock = a.extra(anyio.abc.SocketAttribute.raw_socket)
            a_sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await a.aclose()
            # another client, meanwhile and after
            for _ in range(3):
                await good_request(fast.port, o.port)
        recs = await fast.observer.wait(4)
        errors = [r.error for r in recs if r.target and r.target.endswith("/big")]
        assert errors
        assert errors[0] is not None


@pytest.mark.anyio
async def test_upstream_dying_mid_body() -> None:
    async with raw_origin() as o, pair() as (fast, general):
        a = await raw_exchange(fast.port, get(o.port, "/reset-mid"))
        b = await raw_exchange(general.port, get(o.port, "/reset-mid"))
        assert normalize_date(a) == normalize_date(b)
        await good_request(fast.port, o.port)


# -- 6: hand-offs on the same port -----------------------------------------------------------


@pytest.mark.anyio
async def test_socks5_on_the_fast_port() -> None:
    async with raw_origin() as o, proxy() as fast:
        with anyio.fail_after(BOUND):
            async with await anyio.connect_tcp("127.0.0.1", fast.port) as s:
                await s.send(b"\x05\x01\x00")
                assert await s.receive() == b"\x05\x00"
                await s.send(
                    b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", o.port)
                )
                reply = b""
                while len(reply) < 10:
                    reply += await s.receive()
                assert reply[:2] == b"\x05\x00"
                await s.send(get(o.port, "/plain"))
                data = reply[10:]
                async for chunk in s:
                    data += chunk
        assert data.endswith(b"ok")
        recs = await fast.observer.wait(1)
        assert recs[0].protocol == "socks5"


async def _socks5_bind(port: int) -> tuple[bytes, bytes, bytes]:
    """SOCKS5 BIND through ``port``: the two replies (ports zeroed) and what came back."""
    with anyio.fail_after(BOUND):
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(b"\x05\x01\x00")
            assert await s.receive() == b"\x05\x00"
            # BIND expecting a connection from 127.0.0.1
            await s.send(b"\x05\x02\x00\x01" + socket.inet_aton("127.0.0.1") + b"\x00\x00")
            first = b""
            while len(first) < 10:
                first += await s.receive()
            assert first[:2] == b"\x05\x00", first
            bound_port = struct.unpack("!H", first[8:10])[0]
            async with await anyio.connect_tcp("127.0.0.1", bound_port) as peer:
                second = first[10:]
                while len(second) < 10:
                    second += await s.receive()
                await peer.send(b"from the peer")
                got = second[10:]
                while len(got) < len(b"from the peer"):
                    got += await s.receive()
        return first[:8] + b"\0\0", second[:8] + b"\0\0", got


@pytest.mark.anyio
async def test_socks5_bind_is_handed_to_the_socks_server_after_the_handshake() -> None:
    # the fast path speaks the greeting and reads the request; BIND then goes to
    # SocksProxy, which must answer exactly as on the general path
    async with proxy() as fast, proxy(fast_path=False) as general:
        assert fast.fast is not None
        got_fast = await _socks5_bind(fast.port)
        got_general = await _socks5_bind(general.port)
    assert got_fast == got_general
    assert got_fast[0][:4] == b"\x05\x00\x00\x01"
    assert got_fast[2] == b"from the peer"
    (rec,) = await fast.observer.wait(1)
    assert (rec.protocol, rec.method, rec.status) == ("socks5", "BIND", 0)


@pytest.mark.anyio
async def test_h2_prior_knowledge_on_the_fast_port() -> None:
    import h2.connection
    import h2.events

    @service_fn
    async def ok(ctx: Context, req: Request) -> Response:
        return Response(200, body=b"h2 ok")

    origin = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(origin, ok))
        async with proxy() as fast:
            conn = h2.connection.H2Connection()
            conn.initiate_connection()
            conn.send_headers(
                1,
                [
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":authority", f"127.0.0.1:{origin.local_addr.port}"),
                    (":path", "/"),
                ],
                end_stream=True,
            )
            body = b""
            status = None
            with anyio.fail_after(BOUND):
                async with await anyio.connect_tcp("127.0.0.1", fast.port) as s:
                    await s.send(conn.data_to_send())
                    done = False
                    while not done:
                        events = conn.receive_data(await s.receive())
                        for ev in events:
                            if isinstance(ev, h2.events.ResponseReceived):
                                status = dict(ev.headers)[b":status"]
                            elif isinstance(ev, h2.events.DataReceived):
                                body += ev.data
                                conn.acknowledge_received_data(len(ev.data), ev.stream_id)
                            elif isinstance(ev, h2.events.StreamEnded):
                                done = True
                        await s.send(conn.data_to_send())
            assert status == b"200"
            assert body == b"h2 ok"
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_tls_proxy_on_the_fast_port() -> None:
    async with raw_origin() as o, proxy(tls_self_signed=True) as fast:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
        with anyio.fail_after(BOUND):
            s = await anyio.connect_tcp(
                "127.0.0.1", fast.port, ssl_context=ctx, tls_standard_compatible=False
            )
            async with s:
                await s.send(get(o.port, "/plain"))
                data = b""
                try:
                    async for chunk in s:
                        data += chunk
                except anyio.BrokenResourceError:
                    pass
        assert data.startswith(b"HTTP/1.1 200 OK")
        assert data.endswith(b"ok")
        # the plain port still serves the fast path
        await good_request(fast.port, o.port)


@pytest.mark.anyio
async def test_chunked_upload_handed_off_still_works() -> None:
    async with raw_origin() as o, proxy() as fast:
        got = await raw_exchange(fast.port, PARITY["chunked-request"].format(o=o.port).encode())
        assert got.startswith(b"HTTP/1.1 200 OK")
        assert got.endswith(b"hi")
        # after a fast-path request on the same connection, too
        data = (
            get(o.port, "/plain", close=False) + PARITY["chunked-request"].format(o=o.port).encode()
        )
        got = await raw_exchange(fast.port, data)
        assert got.count(b"HTTP/1.1 200 OK") == 2, got
        assert got.endswith(b"hi")


# -- 7: shutdown -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_shutdown_closes_idle_and_lets_a_tunnel_finish() -> None:
    async def echo(s: SocketStream) -> None:
        async with s:
            try:
                async for chunk in s:
                    await s.send(chunk)
            except anyio.BrokenResourceError:
                pass

    async with tcp_origin(echo) as port, raw_origin() as o:
        async with Shutdown(grace=1.5, signals=()) as shutdown:
            async with proxy(ctx=shutdown.context(), timeout=10.0, idle_timeout=10.0) as fast:
                idle = await anyio.connect_tcp("127.0.0.1", fast.port)
                await idle.send(get(o.port, "/plain", close=False))
                buf = await read_head(idle)
                with anyio.fail_after(BOUND):
                    while not buf.endswith(b"ok"):
                        buf += await idle.receive()
                tunnel = await open_tunnel(fast.port, port)
                await tunnel.send(b"ping")
                with anyio.fail_after(BOUND):
                    assert await tunnel.receive() == b"ping"
                triggered = anyio.current_time()
                shutdown.trigger()
                with anyio.fail_after(0.8):  # the idle connection: promptly
                    with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                        await idle.receive()
                await idle.aclose()
                # the tunnel keeps relaying within the grace
                await anyio.sleep(0.3)
                await tunnel.send(b"still")
                with anyio.fail_after(1.0):
                    assert await tunnel.receive() == b"still"
                # then is closed when the grace ends
                with anyio.fail_after(4.0):
                    with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                        while True:
                            await tunnel.receive()
                elapsed = anyio.current_time() - triggered
                await tunnel.aclose()
                assert 1.2 < elapsed < 3.5, elapsed


@pytest.mark.anyio
@pytest.mark.parametrize("case", ["get", "refused-forward", "refused-connect-open"])
async def test_connect_time_parity(case: str) -> None:
    """Whether a record notes a connect time is the same on both paths."""
    async with raw_origin() as o1, raw_origin() as o2, pair() as (fast, general):
        dead = closed_port()
        data = [PARITY[case].format(o=o.port, dead=dead).encode() for o in (o1, o2)]
        await both(fast, general, (data[0], data[1]))
        records = await fast.observer.settle(), await general.observer.settle()
        assert record_diff(*records, ports=(o1.port, o2.port), connect_time=True) == []


@pytest.mark.anyio
async def test_connect_time_parity_for_a_tunnel() -> None:
    async with raw_origin() as o, pair() as (fast, general):
        req = f"CONNECT 127.0.0.1:{o.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        await both(fast, general, (req, req), eof=True)
        records = await fast.observer.settle(), await general.observer.settle()
        assert record_diff(*records, connect_time=True) == []
        assert records[0][0].connect_time is not None


@pytest.mark.anyio
async def test_shutdown_with_a_request_in_flight_parity() -> None:
    """A forward in flight when the shutdown comes is answered, the same way on both paths."""
    answers: dict[bool, bytes] = {}
    async with raw_origin() as o:
        for fast_path in (True, False):
            async with Shutdown(grace=3.0, signals=()) as shutdown:
                async with proxy(ctx=shutdown.context(), fast_path=fast_path) as p:
                    async with await anyio.connect_tcp("127.0.0.1", p.port) as s:
                        await s.send(get(o.port, "/slow", close=False))
                        await anyio.sleep(0.1)
                        shutdown.trigger()
                        data = b""
                        with anyio.fail_after(BOUND):
                            try:
                                async for chunk in s:
                                    data += chunk
                            except anyio.BrokenResourceError:
                                pass
                    answers[fast_path] = normalize_date(data)
    assert answers[True].startswith(b"HTTP/1.1 200 OK\r\n")
    assert answers[True].endswith(b"ok")
    assert answers[True] == answers[False]


SERVED_BY_FAST = ["get", "head", "post", "stale-host", "hop-by-hop", "pipelined", "userinfo"]
HANDED_OFF = ["http10", "chunked-request", "expect", "pipelined-then-http10"]


@pytest.mark.anyio
@pytest.mark.parametrize("case", SERVED_BY_FAST + HANDED_OFF)
async def test_which_path_served_it(case: str) -> None:
    """The general path's upstream pool (HttpProxy.pool) is used only for what the
    fast path hands over: proof that the fast path served the rest itself."""
    async with raw_origin() as o, proxy() as fast:
        data = PARITY[case].format(o=o.port, dead=closed_port()).encode()
        got = await raw_exchange(fast.port, data)
        assert b"HTTP/1.1 200 OK\r\n" in got, got
        with anyio.fail_after(BOUND):
            while len(await fast.observer.settle()) < 1:
                await anyio.sleep(0.01)
        stats = fast.server.http_proxy.pool.stats()
        used = stats.idle + stats.active
        if case in SERVED_BY_FAST:
            assert used == 0, stats
        else:
            assert used == 1, stats
