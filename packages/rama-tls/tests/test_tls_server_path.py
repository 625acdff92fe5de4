"""The acceptor as a server path: failure logging and metrics, ConnectionLost after the
handshake, peek_client_hello's result and timeout, linear cost of a dripped ClientHello.

Real loopback sockets and real TLS clients (Python's ssl, curl) throughout.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream, SocketStream
from anyio.streams.tls import TLSStream
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from rama_core import Context, service_fn
from rama_net import ConnectionLost, PeekStream, TcpListener
from rama_tls import (
    CertificateAuthority,
    ClientHello,
    HandshakeTimeout,
    IssuingCertResolver,
    LeafCertificateCache,
    TlsAcceptorConfig,
    TlsAcceptorLayer,
    TlsMetrics,
    peek_client_hello,
)

pytestmark = pytest.mark.anyio

ACCEPTOR_LOG = "rama.tls.acceptor"


def _points(reader: InMemoryMetricReader) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(metric name, sorted attributes): value}``."""
    data = reader.get_metrics_data()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    attrs = tuple(sorted((k, str(v)) for k, v in point.attributes.items()))
                    out[(metric.name, attrs)] = point.value  # type: ignore[union-attr]
    return out


def failures(reader: InMemoryMetricReader) -> dict[str, float]:
    """``{reason: count}`` of ``rama.tls.handshake_failures``."""
    return {
        dict(attrs)["reason"]: value
        for (name, attrs), value in _points(reader).items()
        if name == "rama.tls.handshake_failures"
    }


@pytest.fixture
def metered() -> Iterator[tuple[InMemoryMetricReader, TlsMetrics]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield reader, TlsMetrics(provider.get_meter("test"))
    provider.shutdown()


def client_hello_bytes(ca: CertificateAuthority, server_name: str = "localhost") -> bytes:
    """The records of a real ClientHello from Python's ssl (about 500 bytes; more with padding)."""
    ctx = ssl.create_default_context(cadata=ca.cert_pem().decode())
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


async def read_until_closed(stream: ByteStream) -> None:
    with anyio.fail_after(5):
        try:
            while await stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            return


@asynccontextmanager
async def tls_server(
    ca: CertificateAuthority, inner: Any, **options: Any
) -> AsyncIterator[tuple[int, list[BaseException]]]:
    """A rama TcpListener with the acceptor in front of ``inner``; yields (port, errors)."""
    config = TlsAcceptorConfig(
        resolver=IssuingCertResolver(LeafCertificateCache(ca, max_size=8)), **options
    )
    acceptor = TlsAcceptorLayer(config).layer(inner)
    errors: list[BaseException] = []

    @service_fn
    async def recording(ctx: Context, stream: ByteStream) -> None:
        try:
            await acceptor.serve(ctx, stream)
        except Exception as exc:
            errors.append(exc)
            raise

    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, recording)
        try:
            yield listener.local_addr.port, errors
        finally:
            tg.cancel_scope.cancel()


@service_fn
async def echo(ctx: Context, stream: ByteStream) -> None:
    while True:
        try:
            data = await stream.receive()
        except anyio.EndOfStream:
            return
        await stream.send(data)


# -- item: failures are logged at INFO with the peer, counted, never ERROR ------------------
def acceptor_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCEPTOR_LOG]


async def test_non_tls_and_malformed_hellos_are_logged_at_info_with_the_peer_and_counted(
    ca: CertificateAuthority,
    metered: tuple[InMemoryMetricReader, TlsMetrics],
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader, metrics = metered
    caplog.set_level(logging.DEBUG)
    good = client_hello_bytes(ca)
    # a real hello whose extensions length runs past the message: malformed, not "not TLS"
    body_start = 5 + 4 + 2 + 32
    sid_len = good[body_start]
    pos = body_start + 1 + sid_len
    cs_len = struct.unpack("!H", good[pos : pos + 2])[0]
    pos += 2 + cs_len
    pos += 1 + good[pos]  # compression methods
    corrupt = good[:pos] + struct.pack("!H", 0xFFF0) + good[pos + 2 :]
    async with tls_server(ca, echo, metrics=metrics) as (port, errors):
        for payload in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", corrupt, b"\x16\x03\x01\x00\x00"):
            peer = await anyio.connect_tcp("127.0.0.1", port)
            async with peer:
                local = peer.extra(anyio.abc.SocketAttribute.local_address)
                await peer.send(payload)
                await read_until_closed(peer)
            with anyio.fail_after(5):
                while len(acceptor_records(caplog)) < len(errors) or not errors:
                    await anyio.sleep(0.01)
            record = acceptor_records(caplog)[-1]
            assert record.levelno == logging.INFO
            assert record.exc_info is None
            assert f"127.0.0.1:{local[1]}" in record.getMessage()
    assert failures(reader) == {"not_tls": 1, "malformed_client_hello": 2}
    infos = [r.getMessage() for r in acceptor_records(caplog)]
    assert "(not_tls)" in infos[0]
    assert "(malformed_client_hello)" in infos[1]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_handshake_timeout_is_info_without_traceback(
    ca: CertificateAuthority,
    metered: tuple[InMemoryMetricReader, TlsMetrics],
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader, metrics = metered
    caplog.set_level(logging.DEBUG)
    half = client_hello_bytes(ca)[:100]
    async with tls_server(ca, echo, metrics=metrics, handshake_timeout=0.3) as (port, errors):
        peer = await anyio.connect_tcp("127.0.0.1", port)
        async with peer:
            await peer.send(half)
            await read_until_closed(peer)
    assert [type(e) for e in errors] == [HandshakeTimeout]
    (record,) = acceptor_records(caplog)
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert "(timeout)" in record.getMessage()
    assert "127.0.0.1:" in record.getMessage()
    assert failures(reader) == {"timeout": 1}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_a_client_refusing_our_certificate_is_counted_not_an_error(
    ca: CertificateAuthority,
    metered: tuple[InMemoryMetricReader, TlsMetrics],
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader, metrics = metered
    caplog.set_level(logging.DEBUG)
    async with tls_server(ca, echo, metrics=metrics) as (port, errors):
        # curl without our CA aborts the handshake with an alert
        proc = await anyio.run_process(
            ["curl", "-sS", "--max-time", "5", f"https://localhost:{port}/"], check=False
        )
        with anyio.fail_after(5):
            while not errors:
                await anyio.sleep(0.01)
    assert proc.returncode != 0
    assert sum(failures(reader).values()) == 1
    assert set(failures(reader)) <= {"handshake", "peer_closed"}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


# -- item: after the handshake, transport and ssl failures are ConnectionLost ----------------
async def established_client(port: int, ca: CertificateAuthority) -> TLSStream:
    tcp = await anyio.connect_tcp("127.0.0.1", port)
    ctx = ssl.create_default_context(cadata=ca.cert_pem().decode())
    return await TLSStream.wrap(
        tcp, hostname="localhost", ssl_context=ctx, standard_compatible=False
    )


def seen_by(errors: list[BaseException]) -> Any:
    """A stream service that records what its receive and send raise."""

    @service_fn
    async def app(ctx: Context, stream: ByteStream) -> None:
        try:
            await stream.send(b"ready")
            while True:
                await stream.receive()
        except BaseException as exc:
            errors.append(exc)
            raise

    return app


async def test_a_corrupt_record_after_the_handshake_is_connection_lost(
    ca: CertificateAuthority,
) -> None:
    seen: list[BaseException] = []
    async with tls_server(ca, seen_by(seen)) as (port, _):
        client = await established_client(port, ca)
        assert await client.receive() == b"ready"
        # an application-data record with a bad MAC, straight onto the TCP stream
        await client.transport_stream.send(b"\x17\x03\x03\x00\x20" + os.urandom(32))
        await read_until_closed(client.transport_stream)
        with anyio.fail_after(5):
            while not seen:
                await anyio.sleep(0.01)
        await client.transport_stream.aclose()
    assert isinstance(seen[0], ConnectionLost), repr(seen[0])
    assert isinstance(seen[0].__cause__, ssl.SSLError)


async def test_a_reset_under_a_plain_anyio_socket_is_connection_lost(
    ca: CertificateAuthority,
) -> None:
    """Not only over rama's streams: anyio's own socket stream's errors are mapped too."""
    seen: list[BaseException] = []
    config = TlsAcceptorConfig(resolver=IssuingCertResolver(LeafCertificateCache(ca, max_size=8)))
    acceptor = TlsAcceptorLayer(config).layer(seen_by(seen))

    async def handle(stream: SocketStream) -> None:
        try:
            await acceptor.serve(Context(), stream)
        except Exception:
            pass

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        client = await established_client(port, ca)
        assert await client.receive() == b"ready"
        raw = client.transport_stream.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await client.transport_stream.aclose()  # RST
        with anyio.fail_after(5):
            while not seen:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert isinstance(seen[0], ConnectionLost), repr(seen[0])


async def test_sending_to_a_reset_peer_is_connection_lost(ca: CertificateAuthority) -> None:
    seen: list[BaseException] = []
    gone = anyio.Event()

    @service_fn
    async def sender(ctx: Context, stream: ByteStream) -> None:
        await stream.send(b"ready")
        await gone.wait()
        try:
            for _ in range(1000):
                await stream.send(b"x" * 16384)
                await anyio.sleep(0.001)
        except BaseException as exc:
            seen.append(exc)
            raise

    async with tls_server(ca, sender) as (port, _):
        client = await established_client(port, ca)
        assert await client.receive() == b"ready"
        raw = client.transport_stream.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await client.transport_stream.aclose()
        gone.set()
        with anyio.fail_after(5):
            while not seen:
                await anyio.sleep(0.01)
    assert isinstance(seen[0], ConnectionLost), repr(seen[0])


# -- item: peek_client_hello returns the ClientHello and takes a timeout -----------------------
@asynccontextmanager
async def raw_pair() -> AsyncIterator[tuple[SocketStream, PeekStream]]:
    """A connected loopback (client, PeekStream over the server side)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener:
        client = await anyio.connect_tcp("127.0.0.1", port)
        server = await listener.listeners[0].accept()
        async with client, server:
            yield client, PeekStream(server)


async def test_peek_client_hello_returns_the_hello_and_keeps_the_bytes(
    ca: CertificateAuthority,
) -> None:
    data = client_hello_bytes(ca, "example.test")
    async with raw_pair() as (client, peek):
        await client.send(data)
        hello = await peek_client_hello(peek, timeout=5)
        assert isinstance(hello, ClientHello)
        assert hello.server_name == "example.test"
        assert peek.peeked == data  # nothing consumed: the TLS engine gets it all


async def test_peek_client_hello_times_out_on_half_a_hello(ca: CertificateAuthority) -> None:
    data = client_hello_bytes(ca)
    async with raw_pair() as (client, peek):
        await client.send(data[: len(data) // 2])
        started = anyio.current_time()
        with pytest.raises(HandshakeTimeout):
            await peek_client_hello(peek, timeout=0.3)
        assert 0.25 <= anyio.current_time() - started < 3
        assert peek.peeked == data[: len(data) // 2]


# -- item: a dripped hello is parsed in linear time ------------------------------------------
class OneByteAtATime(ByteStream):
    """A real socket stream read one byte per receive (as a hello dripped per segment)."""

    def __init__(self, inner: ByteStream) -> None:
        self.inner = inner
        self.receives = 0

    async def receive(self, max_bytes: int = 65536) -> bytes:
        self.receives += 1
        return await self.inner.receive(1)

    async def send(self, item: bytes) -> None:
        await self.inner.send(item)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


class CountingPeek(PeekStream):
    """Counts the bytes ``fill`` shows its callback: what the parser is handed to look at."""

    shown = 0

    async def fill(self, done: Callable[[bytes], bool], **options: Any) -> bytes:
        def counted(data: bytes) -> bool:
            self.shown += len(data)
            return done(data)

        return await super().fill(counted, **options)


async def test_a_hello_dripped_byte_by_byte_is_looked_at_once(ca: CertificateAuthority) -> None:
    data = client_hello_bytes(ca, ".".join(["x" * 60] * 3) + ".example.test")
    assert len(data) > 500
    async with raw_pair() as (client, peek):
        await client.send(data)
        dripping = OneByteAtATime(peek.inner)
        counting = CountingPeek(dripping)
        hello = await peek_client_hello(counting, timeout=10)
        assert hello.server_name == ".".join(["x" * 60] * 3) + ".example.test"
        assert dripping.receives == len(data)
        # linear: every byte shown to the parser once (quadratic would be ~len²/2)
        assert counting.shown == len(data)
        assert counting.peeked == data


async def test_fill_incremental_hands_over_only_new_bytes() -> None:
    async with raw_pair() as (client, peek):
        await client.send(b"abc")
        await peek.peek(3)
        await client.send(b"defgh")
        seen: list[bytes] = []

        def done(new: bytes) -> bool:
            seen.append(new)
            return sum(map(len, seen)) >= 8

        assert await peek.fill(done, incremental=True) == b"abcdefgh"
        assert seen[0] == b"abc"
        assert b"".join(seen) == b"abcdefgh"
