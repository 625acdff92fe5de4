"""Units of the proxy fast path: the wire helpers, the Tunnel and Dial, over socketpairs.

The Tunnel and Dial run on the event loop's readiness callbacks, so these run
on asyncio (and uvloop) only, as the fast path itself does.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rama_raw_exchange import exchange, normalize_date

from rama_http.client._h1_engine import ResponseHead
from rama_http.server._h1_engine import EngineLimits
from rama_proxy import ProxyServer, ProxyServerConfig
from rama_proxy._fast import _tunnel
from rama_proxy._fast._dial import Dial
from rama_proxy._fast._tunnel import SPLICE_AFTER, Tunnel
from rama_proxy._fast._wire import (
    connect_established,
    error_response,
    parse_request_head,
    request_fields,
    response_head,
    text_response,
)

BACKENDS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
]
LIMITS = EngineLimits()
DATE = re.compile(r"Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT")

# -- _wire -----------------------------------------------------------------------------------


def head(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("latin-1")


@pytest.mark.parametrize(
    "block",
    [
        pytest.param("GET http://a/ HTTP/1.0\n\n", id="http10"),
        pytest.param("GET http://a/ HTTP/2.0\n\n", id="http2-version"),
        pytest.param(
            "POST http://a/ HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n", id="chunked"
        ),
        pytest.param(
            "POST http://a/ HTTP/1.1\nHost: a\nExpect: 100-continue\nContent-Length: 1\n\n",
            id="expect",
        ),
        pytest.param(
            "GET http://a/ HTTP/1.1\nHost: a\nConnection: Upgrade\nUpgrade: websocket\n\n",
            id="upgrade",
        ),
        pytest.param("GET http://a/ HTTP/1.1\nHost: a\nUpgrade: h2c\n\n", id="upgrade-alone"),
        pytest.param("GET http://a/ HTTP/1.1\n\n", id="no-host"),
        pytest.param("GET http://a/ HTTP/1.1\nHost: a\nContent-Length: x\n\n", id="bad-length"),
        pytest.param(
            "GET http://a/ HTTP/1.1\nHost: a\nContent-Length: 1\nContent-Length: 2\n\n",
            id="two-lengths",
        ),
        pytest.param("GET http://a/ HTTP/1.1\nHost: a\nBad Name: x\n\n", id="bad-field-name"),
        pytest.param("GET http://a/ HTTP/1.1\nHost: a\n folded\n\n", id="obs-fold"),
        pytest.param("GET\n\n", id="no-target"),
        pytest.param("GET  http://a/ HTTP/1.1\nHost: a\n\n", id="double-space"),
        pytest.param("get http://a/ HTTP/1.1 extra\nHost: a\n\n", id="extra-token"),
    ],
)
def test_parse_request_head_hands_these_over(block: str) -> None:
    assert parse_request_head(head(block), LIMITS) is None


def test_parse_request_head_serves_these() -> None:
    h = parse_request_head(head("GET http://a:8/x?y HTTP/1.1\nHost: a:8\nX-A: 1\n\n"), LIMITS)
    assert h is not None
    assert (h.method, h.target) == ("GET", "http://a:8/x?y")
    assert h.headers == [("Host", "a:8"), ("X-A", "1")]
    assert h.keys == ["host", "x-a"]
    assert h.keep_alive
    c = parse_request_head(head("CONNECT a:443 HTTP/1.1\nHost: a:443\n\n"), LIMITS)
    assert c is not None
    assert c.method == "CONNECT"
    p = parse_request_head(head("POST http://a/ HTTP/1.1\nHost: a\nContent-Length: 3\n\n"), LIMITS)
    assert p is not None
    assert p.content_length == 3
    close = parse_request_head(
        head("GET http://a/ HTTP/1.1\nHost: a\nConnection: close\n\n"), LIMITS
    )
    assert close is not None
    assert not close.keep_alive


def test_parse_request_head_limits() -> None:
    long = head("GET http://a/" + "x" * 100 + " HTTP/1.1\nHost: a\n\n")
    assert parse_request_head(long, EngineLimits(max_request_line=50)) is None
    many = head("GET http://a/ HTTP/1.1\nHost: a\n" + "X: 1\n" * 5 + "\n")
    assert parse_request_head(many, EngineLimits(max_headers=3)) is None
    assert parse_request_head(many, EngineLimits(max_headers=10)) is not None


def test_parse_request_head_refuses_a_head_over_max_header_size() -> None:
    # a head over max_header_size: the general path answers 431, so it is not the fast path's
    big = head("GET http://a/ HTTP/1.1\nHost: a\nX-Big: " + "b" * 200 + "\n\n")
    assert parse_request_head(big, EngineLimits(max_header_size=100)) is None
    huge = head("GET http://a/ HTTP/1.1\nHost: a\nX-Big: " + "b" * 70000 + "\n\n")
    assert parse_request_head(huge, LIMITS) is None


def test_request_fields() -> None:
    h = parse_request_head(
        head(
            "GET http://Target:81/p HTTP/1.1\nx-a: 1\nHost: stale\nConnection: close, X-Hop\n"
            "X-Hop: 1\nKeep-Alive: 1\nProxy-Connection: x\nTE: trailers\nTrailer: X\n"
            "Proxy-Authorization: Basic eA==\nUpgrade-Insecure-Requests: 1\nX-B: 2\n\n"
        ),
        LIMITS,
    )
    assert h is not None
    assert h.uri is not None
    fields = request_fields(h, h.uri, "target")
    assert fields == [
        ("x-a", "1"),
        ("Host", "Target:81"),
        ("Upgrade-Insecure-Requests", "1"),
        ("X-B", "2"),
    ]
    # a Host that already names the target (any case) is kept as sent
    h = parse_request_head(head("GET http://a:1/ HTTP/1.1\nHOST: A:1\n\n"), LIMITS)
    assert h is not None
    assert h.uri is not None
    assert request_fields(h, h.uri, "a") == [("HOST", "A:1")]


def resp(fields: list[tuple[str, str]], *, status: int = 200, length: int | None = None) -> Any:
    return ResponseHead(
        status,
        "OK",
        "HTTP/1.1",
        fields,
        [n.lower() for n, _ in fields],
        content_length=length,
        chunked=length is None,
        has_body=True,
        keep_alive=True,
    )


def test_response_head_drops_content_length_when_rechunking() -> None:
    h = resp([("Content-Length", "99"), ("Transfer-Encoding", "chunked"), ("X", "1")])
    data, chunked = response_head(h, chunked=True, close=False)
    assert chunked
    text = data.decode()
    assert "content-length" not in text.lower()
    assert text.startswith("HTTP/1.1 200 OK\r\nX: 1\r\nDate: ")
    assert text.endswith(" GMT\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert text.count("Transfer-Encoding") == 1


def test_response_head_keeps_length_and_order_and_origin_date() -> None:
    h = resp(
        [
            ("x-lower", "a"),
            ("Content-Length", "2"),
            ("Date", "Mon, 01 Jan 2001 00:00:00 GMT"),
            ("Connection", "X-Hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "5"),
            ("Proxy-Connection", "x"),
            ("X-UP", "b"),
        ],
        length=2,
    )
    data, chunked = response_head(h, chunked=False, close=True)
    assert not chunked
    assert data == (
        b"HTTP/1.1 200 OK\r\nx-lower: a\r\nContent-Length: 2\r\n"
        b"Date: Mon, 01 Jan 2001 00:00:00 GMT\r\nX-UP: b\r\nConnection: close\r\n\r\n"
    )


def test_text_response_format() -> None:
    got = text_response(502, "connection refused")
    text = got.decode()
    assert DATE.search(text)
    assert DATE.sub("Date: D", text) == (
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Date: D\r\nContent-Length: 19\r\n\r\nconnection refused\n"
    )
    got = text_response(
        407,
        "proxy authentication required",
        (("Proxy-Authenticate", 'Basic realm="r"'),),
        close=True,
    )
    text = DATE.sub("Date: D", got.decode())
    assert text == (
        "HTTP/1.1 407 Proxy Authentication Required\r\n"
        'Proxy-Authenticate: Basic realm="r"\r\n'
        "Content-Type: text/plain; charset=utf-8\r\nDate: D\r\nContent-Length: 30\r\n"
        "Connection: close\r\n\r\nproxy authentication required\n"
    )
    body = text_response(200, "é").partition(b"\r\n\r\n")[2]
    assert body == "é\n".encode()
    assert b"Content-Length: 3\r\n" in text_response(200, "é")


def test_error_response_and_connect_established() -> None:
    text = DATE.sub("Date: D", error_response(408).decode())
    assert text == (
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 16\r\nConnection: close\r\nDate: D\r\n\r\nRequest Timeout\n"
    )
    assert DATE.sub("Date: D", connect_established().decode()) == (
        "HTTP/1.1 200 Connection established\r\nDate: D\r\n\r\n"
    )


# -- Tunnel ----------------------------------------------------------------------------------


class Pairs:
    """client <-> [a  Tunnel  b] <-> origin, two socketpairs."""

    def __init__(self) -> None:
        self.client, self.a = socket.socketpair()
        self.b, self.origin = socket.socketpair()
        for s in (self.a, self.b):
            s.setblocking(False)
        for s in (self.client, self.origin):
            s.setblocking(False)
        self.ended = asyncio.Event()
        self.tunnel: Tunnel | None = None

    def start(self, idle: float | None = None, early: bytes = b"", reply: bytes = b"") -> Tunnel:
        loop = asyncio.get_running_loop()
        self.tunnel = Tunnel(loop, self.a, self.b, idle, lambda t: self.ended.set())
        self.tunnel.start(early, reply)
        return self.tunnel

    def close(self) -> None:
        for s in (self.client, self.origin, self.a, self.b):
            s.close()


@asynccontextmanager
async def pairs() -> AsyncIterator[Pairs]:
    p = Pairs()
    try:
        yield p
    finally:
        if p.tunnel is not None and not p.tunnel.ended:
            p.tunnel.abort()
        p.close()


async def send_all(sock: socket.socket, data: bytes, *, eof: bool = True) -> None:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, data)
    if eof:
        sock.shutdown(socket.SHUT_WR)


async def recv_all(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    out = bytearray()
    while True:
        try:
            chunk = await loop.sock_recv(sock, 1 << 20)
        except ConnectionResetError:
            raise
        if not chunk:
            return bytes(out)
        out += chunk


async def recv_n(sock: socket.socket, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    out = b""
    while len(out) < n:
        chunk = await loop.sock_recv(sock, n - len(out))
        if not chunk:
            break
        out += chunk
    return out


@pytest.mark.parametrize("anyio_backend", BACKENDS)
@pytest.mark.anyio
async def test_tunnel_relays_both_ways_with_early_and_reply_bytes() -> None:
    async with pairs() as p:
        with anyio.fail_after(5):
            t = p.start(early=b"early->", reply=b"reply<-")
            assert await recv_n(p.origin, 7) == b"early->"
            assert await recv_n(p.client, 7) == b"reply<-"
            await send_all(p.client, b"hello", eof=False)
            assert await recv_n(p.origin, 5) == b"hello"
            await send_all(p.origin, b"world", eof=False)
            assert await recv_n(p.client, 5) == b"world"
            p.client.shutdown(socket.SHUT_WR)
            p.origin.shutdown(socket.SHUT_WR)
            assert await recv_all(p.origin) == b""
            assert await recv_all(p.client) == b""
            await p.ended.wait()
        assert t.error is None
        assert not t.timed_out
        assert (t.bytes_up, t.bytes_down) == (7 + 5, 5)  # the reply is not counted
        assert p.a.fileno() == -1
        assert p.b.fileno() == -1


@pytest.mark.parametrize("anyio_backend", BACKENDS)
@pytest.mark.anyio
async def test_tunnel_half_close_propagates() -> None:
    async with pairs() as p:
        with anyio.fail_after(5):
            t = p.start()
            await send_all(p.client, b"question")  # and EOF
            assert await recv_all(p.origin) == b"question"  # EOF passed on
            assert not p.ended.is_set()
            # the other way keeps going after the half-close
            await send_all(p.origin, b"answer 1, ", eof=False)
            await asyncio.sleep(0.05)
            await send_all(p.origin, b"answer 2")
            assert await recv_all(p.client) == b"answer 1, answer 2"
            await p.ended.wait()
        assert t.error is None
        assert (t.bytes_up, t.bytes_down) == (8, 18)


@pytest.mark.parametrize("anyio_backend", BACKENDS)
@pytest.mark.anyio
async def test_tunnel_reset_propagates() -> None:
    # socketpairs are AF_UNIX: a reset needs TCP; use a loopback TCP pair for the origin side
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    b = socket.create_connection(lsock.getsockname())
    origin, _ = lsock.accept()
    lsock.close()
    lc = socket.socket()
    lc.bind(("127.0.0.1", 0))
    lc.listen()
    client = socket.create_connection(lc.getsockname())
    a, _ = lc.accept()
    lc.close()
    for s in (a, b, client, origin):
        s.setblocking(False)
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    t = Tunnel(loop, a, b, None, lambda _: ended.set())
    t.start()
    try:
        with anyio.fail_after(5):
            await send_all(client, b"x", eof=False)
            assert await recv_n(origin, 1) == b"x"
            origin.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            origin.close()  # RST to b
            await ended.wait()
            assert t.error is not None
            with pytest.raises(ConnectionResetError):
                await recv_all(client)  # the client side is reset too, not closed cleanly
    finally:
        if not t.ended:
            t.abort()
        client.close()


@pytest.mark.parametrize("anyio_backend", BACKENDS)
@pytest.mark.anyio
async def test_tunnel_splices_after_threshold_intact() -> None:
    size = SPLICE_AFTER * 5 + 12345
    up = os.urandom(size)
    down = os.urandom(size)
    # TCP pairs: what the fast path splices between
    pairs_tcp = []
    for _ in range(2):
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen()
        c = socket.create_connection(ls.getsockname())
        s, _ = ls.accept()
        ls.close()
        c.setblocking(False)
        s.setblocking(False)
        pairs_tcp.append((c, s))
    (client, a), (b, origin) = pairs_tcp
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    t = Tunnel(loop, a, b, None, lambda _: ended.set())
    t.start()
    took: list[bool] = []
    try:
        with anyio.fail_after(20):
            results: dict[str, bytes] = {}

            async def rx(sock: socket.socket, key: str) -> None:
                results[key] = hashlib.sha256(await recv_all(sock)).digest()

            async def watch() -> None:
                while not ended.is_set():
                    took.append(t.up.pipe is not None or t.down.pipe is not None)
                    await asyncio.sleep(0.005)

            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                tg.start_soon(send_all, client, up)
                tg.start_soon(send_all, origin, down)
                tg.start_soon(rx, origin, "origin")
                tg.start_soon(rx, client, "client")
            await ended.wait()
        assert results["origin"] == hashlib.sha256(up).digest()
        assert results["client"] == hashlib.sha256(down).digest()
        assert (t.bytes_up, t.bytes_down) == (size, size)
        assert t.error is None
        if _tunnel._CAN_SPLICE:
            assert any(took), "a direction switched to splice"
    finally:
        if not t.ended:
            t.abort()
        client.close()
        origin.close()


@pytest.mark.parametrize("anyio_backend", BACKENDS)
@pytest.mark.anyio
async def test_tunnel_backpressure_and_expire() -> None:
    async with pairs() as p:
        t = p.start(idle=0.2)
        loop = asyncio.get_running_loop()
        # the origin never reads: the client side stops being read once buffers fill
        blob = b"x" * (8 * 1024 * 1024)
        sent = 0
        with anyio.fail_after(5):
            while True:
                try:
                    sent += p.client.send(blob[: 1 << 16])
                except BlockingIOError:
                    await asyncio.sleep(0.05)
                    try:
                        sent += p.client.send(blob[: 1 << 16])
                    except BlockingIOError:
                        break
        assert sent < len(blob)
        assert t.up.pending or t.up.in_pipe or sent > 0
        # the deadline is the owner's to check: expire() ends it
        assert t.deadline < loop.time() + 0.3
        t.expire()
        await p.ended.wait()
        assert t.timed_out
        assert p.a.fileno() == -1


# -- Dial ------------------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", BACKENDS)
@pytest.mark.anyio
async def test_dial_a_listening_port() -> None:
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[Any, Any]] = loop.create_future()
    d = Dial(loop, [(socket.AF_INET, ls.getsockname())], 1.0, lambda s, e: done.set_result((s, e)))
    d.start()
    with anyio.fail_after(2):
        sock, exc = await done
    try:
        assert exc is None
        assert sock is not None
        assert sock.getblocking() is False
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        peer, _ = ls.accept()
        peer.close()
    finally:
        ls.close()
        if sock is not None:
            sock.close()


@pytest.mark.parametrize("anyio_backend", BACKENDS)
@pytest.mark.anyio
async def test_dial_a_closed_port_then_falls_over_to_the_next() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()
    s.close()
    loop = asyncio.get_running_loop()
    results: list[tuple[Any, Any]] = []
    d = Dial(loop, [(socket.AF_INET, dead)], 1.0, lambda s, e: results.append((s, e)))
    d.start()
    with anyio.fail_after(2):
        while not results:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert len(results) == 1
    sock, exc = results[0]
    assert sock is None
    assert isinstance(exc, OSError)
    assert exc.errno == errno.ECONNREFUSED
    # a refused first address, a listening second one
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen()
    results.clear()
    d = Dial(
        loop,
        [(socket.AF_INET, dead), (socket.AF_INET, ls.getsockname())],
        1.0,
        lambda s, e: results.append((s, e)),
    )
    d.start()
    with anyio.fail_after(2):
        while not results:
            await asyncio.sleep(0.01)
    sock, exc = results[0]
    assert exc is None
    assert sock is not None
    sock.close()
    ls.close()
    # no address at all
    results.clear()
    Dial(loop, [], 1.0, lambda s, e: results.append((s, e))).start()
    assert results[0][0] is None
    assert isinstance(results[0][1], OSError)


@pytest.mark.parametrize("anyio_backend", BACKENDS)
@pytest.mark.anyio
async def test_dial_expire_and_cancel() -> None:
    loop = asyncio.get_running_loop()
    results: list[tuple[Any, Any]] = []
    # 192.0.2.1 (TEST-NET-1) never answers: the connect stays in progress
    d = Dial(loop, [(socket.AF_INET, ("192.0.2.1", 9))], 0.1, lambda s, e: results.append((s, e)))
    d.start()
    if results:  # no route here: refused at once, nothing to expire
        assert results[0][0] is None
        pytest.skip("no route to TEST-NET-1 on this host")
    assert d.deadline <= loop.time() + 0.1
    d.expire()
    assert len(results) == 1
    assert results[0][0] is None
    assert isinstance(results[0][1], TimeoutError)
    d.expire()  # once only
    assert len(results) == 1
    results.clear()
    d = Dial(loop, [(socket.AF_INET, ("192.0.2.1", 9))], 0.1, lambda s, e: results.append((s, e)))
    d.start()
    d.cancel()
    await asyncio.sleep(0.05)
    assert results == []


# -- property: pipelined requests split anywhere ---------------------------------------------

ORIGIN_BODY = b"hello"


@asynccontextmanager
async def proxy_and_origin() -> AsyncIterator[tuple[int, int]]:
    async def handler(stream: Any) -> None:
        buf = b""
        async with stream:
            try:
                while True:
                    while b"\r\n\r\n" not in buf:
                        buf += await stream.receive()
                    h, _, buf = buf.partition(b"\r\n\r\n")
                    m = re.search(rb"(?im)^content-length:\s*(\d+)", h)
                    n = int(m.group(1)) if m else 0
                    while len(buf) < n:
                        buf += await stream.receive()
                    body, buf = buf[:n], buf[n:]
                    if re.search(rb"(?im)^transfer-encoding:.*chunked", h):
                        while b"0\r\n\r\n" not in buf:  # (the bodies here: no trailers)
                            buf += await stream.receive()
                        raw, _, buf = buf.partition(b"0\r\n\r\n")
                        body = b""
                        while raw:
                            size, _, raw = raw.partition(b"\r\n")
                            k = int(size, 16)
                            body, raw = body + raw[:k], raw[k + 2 :]
                    path = h.split(b" ")[1]
                    out = path + b":" + body
                    await stream.send(
                        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(out), out)
                    )
                    if re.search(rb"(?im)^connection:\s*close", h):
                        return
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    oport = listener.extra(anyio.abc.SocketAttribute.local_port)
    server = ProxyServer(ProxyServerConfig(bind="127.0.0.1:0", timeout=2.0, peek_timeout=2.0))
    server.bind()
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        tg.start_soon(server.serve)
        try:
            yield server.local_addr.port, oport
        finally:
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("anyio_backend", BACKENDS[:1])
@pytest.mark.anyio
async def test_pipelined_requests_split_anywhere() -> None:
    async with proxy_and_origin() as (port, oport):
        reqs = [
            f"GET http://127.0.0.1:{oport}/a HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
            (
                f"POST http://127.0.0.1:{oport}/b HTTP/1.1\r\nHost: x\r\n"
                "Content-Length: 4\r\n\r\nbody"
            ).encode(),
            (
                f"GET http://127.0.0.1:{oport}/c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            ).encode(),
        ]
        data = b"".join(reqs)
        whole = normalize_date(await exchange(port, data))
        assert whole.count(b"HTTP/1.1 200 OK") == 3
        assert whole.endswith(b"/c:")
        # hypothesis draws the split points; the exchanges run on this loop afterwards
        cases: list[list[int]] = []

        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(st.lists(st.integers(min_value=1, max_value=len(data) - 1), max_size=8))
        def draw(cuts: list[int]) -> None:
            cases.append(cuts)

        draw()
        for cuts in cases:
            got = normalize_date(await exchange(port, data, cuts=cuts))
            assert got == whole, cuts


@pytest.mark.parametrize("anyio_backend", BACKENDS[:1])
@pytest.mark.anyio
async def test_handed_off_and_tunnelled_requests_split_anywhere() -> None:
    """A request the general path serves (chunked body) after a fast one, then a
    CONNECT carrying a request: split anywhere, the same bytes come back."""
    async with proxy_and_origin() as (port, oport):
        tunnelled = b"GET /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        data = (
            f"GET http://127.0.0.1:{oport}/a HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            + f"CONNECT 127.0.0.1:{oport} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            + tunnelled
        )
        chunked = (
            f"POST http://127.0.0.1:{oport}/c HTTP/1.1\r\nHost: x\r\n"
            "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            f"GET http://127.0.0.1:{oport}/d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ).encode()
        whole = normalize_date(await exchange(port, data))
        assert whole.count(b"HTTP/1.1 200") == 3, whole
        assert whole.endswith(b"/t:")
        whole_chunked = normalize_date(await exchange(port, chunked))
        assert whole_chunked.count(b"HTTP/1.1 200 OK") == 2, whole_chunked
        assert b"/c:abc" in whole_chunked
        cases: list[list[int]] = []

        @settings(max_examples=20, deadline=None)
        @given(st.lists(st.integers(min_value=1, max_value=len(chunked) - 1), max_size=6))
        def draw(cuts: list[int]) -> None:
            cases.append(cuts)

        draw()
        for cuts in cases:
            assert (
                normalize_date(await exchange(port, data, cuts=[c % len(data) for c in cuts]))
                == whole
            )
            assert normalize_date(await exchange(port, chunked, cuts=cuts)) == whole_chunked, cuts


@pytest.mark.parametrize("anyio_backend", BACKENDS)
@pytest.mark.anyio
async def test_serving_a_closed_listener_returns_cleanly() -> None:
    # serve() on a listener closed before it started: the fast path never started
    # either, and tearing it down must not fail
    server = ProxyServer(ProxyServerConfig(bind="127.0.0.1:0"))
    server.bind().close()
    with anyio.fail_after(5):
        await server.serve()
