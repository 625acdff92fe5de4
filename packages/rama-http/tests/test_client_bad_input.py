"""A hostile or broken server ends in a typed error for that request only, in time, no leak."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream
from rama_http_client_peer import RawServer, echo, make_cert, rama_server, read_head, server_ssl

from rama_http import RemoteProtocolError
from rama_http.client import (
    ConnectError,
    ConnectTimeout,
    HttpClient,
    ReadError,
    ReadTimeout,
    Timeout,
    WriteTimeout,
)
from rama_tls import TlsClientConfig

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["fast", "h11", "httptools"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _no_leak(c: HttpClient) -> None:
    s = c.pool_stats()
    assert (s.idle, s.active, s.connecting, s.waiting) == (0, 0, 0, 0), s


def _sends(payload: bytes, *, linger_reset: bool = False, then_wait: float = 0.0):  # type: ignore[no-untyped-def]
    closed = anyio.Event()

    async def handler(stream: SocketStream, n: int) -> None:
        head, _ = await read_head(stream)
        if not head:
            return
        await stream.send(payload)
        if then_wait:
            await anyio.sleep(then_wait)
        if linger_reset:
            sock = stream.extra(SocketAttribute.raw_socket)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            # wait for the client to close its end: proves it does not keep the socket
            try:
                with anyio.fail_after(5):
                    while await stream.receive():
                        pass
            except (anyio.EndOfStream, anyio.BrokenResourceError, TimeoutError):
                pass
            closed.set()

    return handler, closed


CASES = [
    (
        "invalid chunk size",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n",
        RemoteProtocolError,
    ),
    (
        "oversized header block",
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 900) for i in range(100))
        + b"\r\n",
        RemoteProtocolError,
    ),
    (
        "CR in a header line",
        b"HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: x\r\nContent-Length: 0\r\n\r\n",
        RemoteProtocolError,
    ),
    (
        "LF in a header line",
        b"HTTP/1.1 200 OK\r\nX-A: a\nSet-Cookie: x\r\nContent-Length: 0\r\n\r\n",
        RemoteProtocolError,
    ),
    ("garbage", b"\x16\x03\x01\x00\x00garbage\r\n\r\n", RemoteProtocolError),
]


@pytest.mark.parametrize(("name", "payload", "error"), CASES, ids=[c[0] for c in CASES])
async def test_broken_response(
    engine: str, name: str, payload: bytes, error: type[Exception]
) -> None:
    handler, closed = _sends(payload)
    srv = RawServer(handler)
    async with srv.run(), HttpClient(http1_engine=engine, timeout=2) as c:
        with anyio.fail_after(5):
            with pytest.raises(error):
                await c.get(f"http://127.0.0.1:{srv.port}/")
            with anyio.fail_after(3):
                await closed.wait()
        _no_leak(c)


async def test_truncated_body_then_close(engine: str) -> None:
    async def handler(stream: SocketStream, n: int) -> None:
        await read_head(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")

    srv = RawServer(handler)
    async with srv.run(), HttpClient(http1_engine=engine) as c:
        with anyio.fail_after(5), pytest.raises(RemoteProtocolError):
            await c.get(f"http://127.0.0.1:{srv.port}/")
        _no_leak(c)


async def test_stall_times_out(engine: str) -> None:
    handler, _ = _sends(b"", then_wait=30)
    srv = RawServer(handler)
    async with srv.run(), HttpClient(http1_engine=engine, timeout=Timeout(read=0.3)) as c:
        with anyio.fail_after(5), pytest.raises(ReadTimeout):
            await c.get(f"http://127.0.0.1:{srv.port}/")
        _no_leak(c)


async def test_stall_mid_body_times_out_in_stream(engine: str) -> None:
    handler, _ = _sends(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", then_wait=30)
    srv = RawServer(handler)
    async with srv.run(), HttpClient(http1_engine=engine, timeout=Timeout(read=0.3)) as c:
        with anyio.fail_after(5), pytest.raises(ReadTimeout):
            async with c.stream("GET", f"http://127.0.0.1:{srv.port}/") as r:
                await r.read()
        _no_leak(c)


async def test_reset_mid_body(engine: str) -> None:
    handler, _ = _sends(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10, linger_reset=True
    )
    srv = RawServer(handler)
    async with srv.run(), HttpClient(http1_engine=engine, timeout=3) as c:
        with anyio.fail_after(5), pytest.raises((ReadError, RemoteProtocolError)):
            await c.get(f"http://127.0.0.1:{srv.port}/")
        _no_leak(c)


async def test_tls_certificate_for_another_name(tmp_path: Path) -> None:
    ck = make_cert("other.example")
    async with rama_server(echo, ssl_context=server_ssl(ck, tmp_path)) as port:
        async with HttpClient(tls=TlsClientConfig(ca_pem=ck.cert_pem()), timeout=3) as c:
            with anyio.fail_after(5), pytest.raises(ConnectError) as ei:
                await c.get(f"https://localhost:{port}/")
            assert "certificate" in str(ei.value).lower() or "verif" in str(ei.value).lower()
            _no_leak(c)
        good = make_cert("localhost")
    async with rama_server(echo, ssl_context=server_ssl(good, tmp_path)) as port:
        async with HttpClient(tls=TlsClientConfig(ca_pem=good.cert_pem()), timeout=3) as c:
            r = await c.get(f"https://localhost:{port}/x")
            assert (await r.json())["target"] == "/x"
            conn = next(iter(c.pool._conns.values()))[0]
            assert type(conn).__name__ == "Http1Connection"


async def test_upload_to_a_server_that_never_reads_is_a_write_timeout(engine: str) -> None:
    # a listener that never accepts: the kernel completes the handshake and
    # buffers until its windows are full, then the client's writes stall
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        async with HttpClient(http1_engine=engine, timeout=Timeout(write=0.5)) as c:
            with anyio.fail_after(10), pytest.raises(WriteTimeout):
                await c.put(f"http://127.0.0.1:{port}/", content=b"x" * (64 << 20))
            _no_leak(c)


async def test_tls_server_that_never_answers_is_a_connect_timeout() -> None:
    async def silent(stream: SocketStream, n: int) -> None:
        await anyio.sleep(30)

    srv = RawServer(silent)
    async with srv.run(), HttpClient(timeout=Timeout(connect=0.3)) as c:
        with anyio.fail_after(5), pytest.raises(ConnectTimeout):
            await c.get(f"https://localhost:{srv.port}/")
        _no_leak(c)


async def test_server_answering_before_the_upload_ends_gets_its_answer_read(engine: str) -> None:
    async def reject_early(stream: SocketStream, n: int) -> None:
        await read_head(stream)
        await stream.send(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig"
        )
        await anyio.sleep(0.2)

    srv = RawServer(reject_early)
    async with srv.run(), HttpClient(http1_engine=engine, timeout=5) as c:
        with anyio.fail_after(10):
            r = await c.put(f"http://127.0.0.1:{srv.port}/", content=b"x" * (64 << 20))
        assert r.status == 413
        assert await r.read() == b"big"
        _no_leak(c)


@pytest.mark.parametrize("ragged", [False, True])
async def test_tls_close_delimited_body_is_read_to_the_end(tmp_path: Path, ragged: bool) -> None:
    """Records buffered with the EOF behind them: every byte arrives before the end (or error)."""
    from anyio.streams.tls import TLSListener

    ck = make_cert("localhost")
    body = bytes(range(256)) * 1024  # 256 KiB: many records

    async def handler(stream) -> None:  # type: ignore[no-untyped-def]
        async with stream:
            await read_head(stream)
            await stream.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
            if ragged:  # no close_notify: the transport just closes
                await stream.transport_stream.aclose()

    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(SocketAttribute.local_port)
    listener = TLSListener(tcp, server_ssl(ck, tmp_path), standard_compatible=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        async with HttpClient(tls=TlsClientConfig(ca_pem=ck.cert_pem()), timeout=5) as c:
            with anyio.fail_after(10):
                if ragged:
                    try:
                        r = await c.get(f"https://localhost:{port}/")
                        assert await r.read() == body  # accepted as the end of the body
                    except (ReadError, RemoteProtocolError):
                        pass  # or a typed error: never a hang, never a short body
                else:
                    r = await c.get(f"https://localhost:{port}/")
                    assert await r.read() == body
            _no_leak(c)
        tg.cancel_scope.cancel()
