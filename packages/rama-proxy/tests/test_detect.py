"""One-port detection: the pure classifier and the ProxyDetector over raw sockets."""

from __future__ import annotations

import logging
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute
from hypothesis import given
from hypothesis import strategies as st

from rama_core import Context, Shutdown, service_fn
from rama_http import Request, Response
from rama_net import ForwardStats, TcpListener, connect_tcp, forward
from rama_proxy import DetectedProtocol, ProxyDetector, detect_proxy_protocol
from rama_tls import TlsAcceptorConfig, self_signed

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


# -- the classifier --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "want"),
    [
        (b"", None),
        (b"\x05", DetectedProtocol.SOCKS5),
        (b"\x05\x01\x00", DetectedProtocol.SOCKS5),
        (b"\x04\x01\x00\x50", DetectedProtocol.SOCKS4),
        (b"\x16", None),
        (b"\x16\x03\x01\x02\x00", DetectedProtocol.TLS),
        (b"\x16\x01", DetectedProtocol.UNKNOWN),
        (b"GET", None),
        (b"GET ", DetectedProtocol.HTTP1),
        (b"CONNECT example.com:443 HTTP/1.1\r\n", DetectedProtocol.HTTP1),
        (b"get / HTTP/1.1", DetectedProtocol.HTTP1),
        (b"P", None),
        (b"PRI * HTTP/2.0", None),
        (PREFACE, DetectedProtocol.H2),
        (PREFACE + b"\x00\x00\x00\x04", DetectedProtocol.H2),
        (b"POST / HTTP/1.1", DetectedProtocol.HTTP1),
        (b"PRIX / HTTP/1.1", DetectedProtocol.HTTP1),
        (b" GET", DetectedProtocol.UNKNOWN),
        (b"\r\nGET", DetectedProtocol.UNKNOWN),
        (b"\x00\x01", DetectedProtocol.UNKNOWN),
        (b"SSH-2.0-OpenSSH_9.2\r\n", DetectedProtocol.UNKNOWN),
        (b"A" * 24, None),
        (b"A" * 25, DetectedProtocol.UNKNOWN),
        (b"\xff\xfe", DetectedProtocol.UNKNOWN),
    ],
)
def test_detect_proxy_protocol(data: bytes, want: DetectedProtocol | None) -> None:
    assert detect_proxy_protocol(data) is want


@given(st.binary(max_size=40))
def test_detection_is_stable_once_decided(data: bytes) -> None:
    """A decision on a prefix never changes with more bytes, and 24+ bytes always decide."""
    for i in range(len(data) + 1):
        decided = detect_proxy_protocol(data[:i])
        if decided is not None:
            assert detect_proxy_protocol(data) is decided
            break
    if len(data) >= 25:
        assert detect_proxy_protocol(data) is not None


# -- the service -----------------------------------------------------------------------------
class _Recorder:
    def __init__(self) -> None:
        self.socks: list[bytes] = []
        self.forward_stats: list[ForwardStats] = []
        self.echo_port = 0


def _http_service(rec: _Recorder) -> Any:
    @service_fn
    async def http(ctx: Context, req: Request) -> Response:
        if req.method == "CONNECT":

            async def tunnel(stream: ByteStream) -> None:
                target = await connect_tcp(f"127.0.0.1:{rec.echo_port}")
                rec.forward_stats.append(await forward(stream, target))

            return Response(200, on_upgrade=tunnel)
        body = f"{req.method} {req.uri} {req.version}".encode()
        return Response(200, body=body)

    return http


def _socks_service(rec: _Recorder) -> Any:
    @service_fn
    async def socks(ctx: Context, stream: ByteStream) -> None:
        data = await stream.receive()
        rec.socks.append(data)
        await stream.send(b"socks:" + data)

    return socks


@asynccontextmanager
async def _serve(
    rec: _Recorder, *, ctx: Context | None = None, **kwargs: Any
) -> AsyncIterator[int]:
    kwargs.setdefault("http", _http_service(rec))
    kwargs.setdefault("socks", _socks_service(rec))
    kwargs.setdefault("peek_timeout", 0.3)
    detector = ProxyDetector(**kwargs)

    @service_fn
    async def echo(ctx: Context, stream: ByteStream) -> None:
        async for chunk in stream:
            await stream.send(chunk)

    async with (
        TcpListener.bind("127.0.0.1:0") as listener,
        TcpListener.bind("127.0.0.1:0") as echo_listener,
    ):
        rec.echo_port = echo_listener.local_addr.port
        async with anyio.create_task_group() as tg:
            tg.start_soon(echo_listener.serve, echo)
            tg.start_soon(lambda: listener.serve(detector, ctx=ctx))
            yield listener.local_addr.port
            tg.cancel_scope.cancel()


async def _read_all(stream: ByteStream, timeout: float = 3.0) -> bytes:
    data = b""
    with anyio.fail_after(timeout):
        try:
            async for chunk in stream:
                data += chunk
        except anyio.BrokenResourceError:
            pass
    return data


async def _read_until(stream: ByteStream, marker: bytes, timeout: float = 3.0) -> bytes:
    data = b""
    with anyio.fail_after(timeout):
        while marker not in data:
            data += await stream.receive()
    return data


@pytest.mark.anyio
async def test_http1_forward_request() -> None:
    rec = _Recorder()
    async with _serve(rec) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(
                b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n"
                b"Connection: close\r\n\r\n"
            )
            data = await _read_all(s)
    assert data.startswith(b"HTTP/1.1 200")
    assert data.endswith(b"GET http://example.com/x HTTP/1.1")


@pytest.mark.anyio
async def test_http1_split_method_and_keep_alive() -> None:
    rec = _Recorder()
    async with _serve(rec) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(b"PO")
            await anyio.sleep(0.05)
            await s.send(b"ST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n")
            first = await _read_until(s, b"HTTP/1.1")
            await s.send(
                b"GET http://b.test/ HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n"
            )
            data = first + await _read_all(s)
    assert b"POST http://a.test/ HTTP/1.1" in data
    assert data.endswith(b"GET http://b.test/ HTTP/1.1")


@pytest.mark.anyio
async def test_connect_tunnel_keeps_the_zero_copy_path() -> None:
    rec = _Recorder()
    async with _serve(rec) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
            head = await _read_until(s, b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            await s.send(b"ping through the tunnel")
            assert await _read_until(s, b"tunnel") == b"ping through the tunnel"
            await s.send_eof()
            await _read_all(s)
        with anyio.fail_after(3):
            while not rec.forward_stats:
                await anyio.sleep(0.01)
    assert rec.forward_stats[0].zero_copy is True


@pytest.mark.anyio
async def test_h2_prior_knowledge() -> None:
    rec = _Recorder()
    async with _serve(rec) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(PREFACE + struct.pack(">I", 0)[1:] + b"\x04\x00" + b"\x00" * 4)
            data = await _read_until(s, b"\x04", timeout=3)
    # the server's first frame is its SETTINGS (type 4, stream 0)
    assert data[3] == 0x04
    assert data[5:9] == b"\x00\x00\x00\x00"


@pytest.mark.anyio
async def test_h2_switched_off_closes() -> None:
    rec = _Recorder()
    async with _serve(rec, h2=False) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(PREFACE)
            assert await _read_all(s) == b""


@pytest.mark.anyio
async def test_tls_then_http() -> None:
    rec = _Recorder()
    cert = self_signed("localhost")
    client_ctx = ssl.create_default_context(cadata=cert.cert_pem().decode())
    client_ctx.set_alpn_protocols(["http/1.1"])
    async with _serve(rec, tls=TlsAcceptorConfig.single(cert)) as port:
        async with await anyio.connect_tcp(
            "127.0.0.1", port, tls=True, ssl_context=client_ctx, tls_hostname="localhost"
        ) as s:
            await s.send(
                b"GET http://example.com/tls HTTP/1.1\r\nHost: example.com\r\n"
                b"Connection: close\r\n\r\n"
            )
            data = await _read_all(s)
    assert data.startswith(b"HTTP/1.1 200")
    assert data.endswith(b"GET http://example.com/tls HTTP/1.1")


@pytest.mark.anyio
async def test_tls_offers_h2_by_alpn() -> None:
    rec = _Recorder()
    cert = self_signed("localhost")
    client_ctx = ssl.create_default_context(cadata=cert.cert_pem().decode())
    client_ctx.set_alpn_protocols(["h2", "http/1.1"])
    async with _serve(rec, tls=TlsAcceptorConfig.single(cert)) as port:
        async with await anyio.connect_tcp(
            "127.0.0.1",
            port,
            tls=True,
            ssl_context=client_ctx,
            tls_hostname="localhost",
            tls_standard_compatible=False,
        ) as s:
            assert s.extra(TLSAttribute.alpn_protocol) == "h2"
            await s.send(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            data = await _read_until(s, b"\x04")
            assert data[3] == 0x04


@pytest.mark.anyio
async def test_tls_without_a_certificate_closes() -> None:
    rec = _Recorder()
    async with _serve(rec) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(b"\x16\x03\x01\x00\x05hello")
            assert await _read_all(s) == b""


@pytest.mark.anyio
@pytest.mark.parametrize("greeting", [b"\x05\x01\x00", b"\x04\x01\x00\x50\x7f\x00\x00\x01u\x00"])
async def test_socks_gets_the_replayed_bytes(greeting: bytes) -> None:
    rec = _Recorder()
    async with _serve(rec) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(greeting)
            assert await _read_until(s, greeting) == b"socks:" + greeting
    assert rec.socks == [greeting]


@pytest.mark.anyio
async def test_socks4_switched_off_closes() -> None:
    rec = _Recorder()
    async with _serve(rec, socks4=False) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00")
            assert await _read_all(s) == b""
    assert rec.socks == []


@pytest.mark.anyio
async def test_no_socks_service_closes() -> None:
    rec = _Recorder()
    async with _serve(rec, socks=None) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(b"\x05\x01\x00")
            assert await _read_all(s) == b""


@pytest.mark.anyio
@pytest.mark.parametrize("garbage", [b"\x00\x00\x00", b"SSH-2.0-x\r\n", b"\r\n\r\n", b"\xff" * 64])
async def test_unknown_bytes_are_closed_and_logged_once(
    garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    rec = _Recorder()
    with caplog.at_level(logging.INFO, logger="rama.proxy.detect"):
        async with _serve(rec) as port:
            async with await anyio.connect_tcp("127.0.0.1", port) as s:
                await s.send(garbage)
                assert await _read_all(s, timeout=2) == b""
    lines = [r for r in caplog.records if r.name == "rama.proxy.detect"]
    assert len(lines) == 1
    assert "unrecognised" in lines[0].getMessage()
    assert rec.socks == []


@pytest.mark.anyio
async def test_silent_client_is_closed_after_the_peek_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = _Recorder()
    with caplog.at_level(logging.INFO, logger="rama.proxy.detect"):
        async with _serve(rec, peek_timeout=0.2) as port:
            async with await anyio.connect_tcp("127.0.0.1", port) as silent:
                # another connection is served meanwhile
                async with await anyio.connect_tcp("127.0.0.1", port) as other:
                    await other.send(b"\x05\x01\x00")
                    assert await _read_until(other, b"\x00") == b"socks:\x05\x01\x00"
                started = anyio.current_time()
                assert await _read_all(silent) == b""
                elapsed = anyio.current_time() - started
    assert elapsed < 1.5
    assert any("nothing sent within" in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_stalled_request_line_gets_an_http_answer() -> None:
    """A stalled method token is HTTP: the HTTP server answers it (408/400), not a silent close."""
    rec = _Recorder()
    async with _serve(rec, peek_timeout=0.2) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(b"GE")
            await s.send_eof()
            data = await _read_all(s)
    assert data.startswith(b"HTTP/1.1 400")


@pytest.mark.anyio
async def test_shutdown_closes_connections_that_sent_nothing() -> None:
    rec = _Recorder()
    async with Shutdown(grace=2, signals=()) as shutdown:
        async with _serve(rec, ctx=shutdown.context(), peek_timeout=30) as port:
            async with await anyio.connect_tcp("127.0.0.1", port) as s:
                await anyio.sleep(0.05)
                shutdown.trigger()
                assert await _read_all(s, timeout=2) == b""


def test_peek_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="peek_timeout"):
        ProxyDetector(peek_timeout=0)


@pytest.mark.anyio
async def test_request_bodies_are_not_capped_by_default() -> None:
    """A proxy streams uploads through: rama-http's 16 MiB default cap must not apply."""
    sizes: list[int] = []

    @service_fn
    async def count(ctx: Context, req: Request) -> Response:
        n = 0
        async for chunk in req.body:
            n += len(chunk)
        sizes.append(n)
        return Response(200, body=b"counted")

    rec = _Recorder()
    size = 17 << 20
    async with _serve(rec, http=count) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(
                f"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: {size}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            chunk = b"x" * (1 << 20)
            for _ in range(size >> 20):
                await s.send(chunk)
            data = await _read_all(s, timeout=20)
    assert data.startswith(b"HTTP/1.1 200"), data[:60]
    assert sizes == [size]
