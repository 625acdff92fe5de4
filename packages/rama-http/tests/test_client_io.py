"""StreamIO: the client's reads and writes, on the lean path (asyncio over a ProtocolStream,
TLS driven through the SSLObject's BIOs) and the portable one (trio), with one contract.

Real sockets and real TLS (a certificate made in the test): every byte arrives in order
whatever the record split, close_notify and a bare EOF both read as EndOfStream after
the data, a corrupt record is ConnectionLost after the data before it, a silent peer is
a TimeoutError within the timeout, and a large write arrives whole.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream
from rama_http_client_peer import RawServer, make_cert, server_ssl

from rama_core import Context
from rama_http.client._io import StreamIO
from rama_net import Authority, ConnectionLost, TcpConnector, on_asyncio
from rama_tls import TlsStream, wrap_tls

pytestmark = pytest.mark.anyio

TlsHandler = Callable[[TlsStream, SocketStream], Awaitable[None]]


@asynccontextmanager
async def tls_pair(tmp_path: Path, handler: TlsHandler) -> AsyncIterator[StreamIO]:
    """A TLS server running ``handler`` and the client's StreamIO connected to it."""
    ck = make_cert("localhost")
    sctx = server_ssl(ck, tmp_path)

    async def serve(stream: SocketStream, n: int) -> None:
        tls = await wrap_tls(stream, sctx, server_side=True)
        await handler(tls, stream)

    server = RawServer(serve)
    cctx = ssl.create_default_context(cadata=ck.cert_pem().decode())
    async with server.run():
        conn = await TcpConnector().serve(Context(), Authority.parse(f"127.0.0.1:{server.port}"))
        tls = await wrap_tls(conn.stream, cctx, server_side=False, server_hostname="localhost")
        try:
            yield StreamIO(tls)
        finally:
            await tls.aclose()


async def read_all(io: StreamIO, timeout: float = 5) -> tuple[bytes, BaseException | None]:
    got = bytearray()
    while True:
        try:
            got += await io.receive(1 << 20, timeout)
        except anyio.EndOfStream as e:
            return bytes(got), e
        except (ConnectionLost, anyio.BrokenResourceError) as e:
            return bytes(got), e


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, many records


async def test_lean_path_is_taken_on_asyncio(tmp_path: Path) -> None:
    async def handler(tls: TlsStream, raw: SocketStream) -> None:
        await tls.send(b"x")

    async with tls_pair(tmp_path, handler) as io:
        assert io.lean is on_asyncio()
        assert await io.receive(10, 5) == b"x"


async def test_records_then_close_notify(tmp_path: Path) -> None:
    async def handler(tls: TlsStream, raw: SocketStream) -> None:
        for i in range(0, len(PAYLOAD), 5000):  # odd sizes: records split everywhere
            await tls.send(PAYLOAD[i : i + 5000])
        await tls.aclose()  # close_notify

    async with tls_pair(tmp_path, handler) as io:
        data, end = await read_all(io)
    assert data == PAYLOAD
    assert isinstance(end, anyio.EndOfStream)


async def test_records_then_bare_eof_is_end_of_stream(tmp_path: Path) -> None:
    async def handler(tls: TlsStream, raw: SocketStream) -> None:
        await tls.send(PAYLOAD)
        await raw.aclose()  # no close_notify: HTTP framing decides about truncation

    async with tls_pair(tmp_path, handler) as io:
        data, end = await read_all(io)
    assert data == PAYLOAD
    assert isinstance(end, anyio.EndOfStream)


async def test_corrupt_record_is_connection_lost_after_the_data(tmp_path: Path) -> None:
    async def handler(tls: TlsStream, raw: SocketStream) -> None:
        await tls.send(b"good bytes")
        await raw.send(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # an application record, bad MAC
        await anyio.sleep(1)

    async with tls_pair(tmp_path, handler) as io:
        data, end = await read_all(io)
        assert data == b"good bytes"
        assert isinstance(end, (ConnectionLost, anyio.BrokenResourceError))
        # never data again (anyio's portable stream says EndOfStream from then on)
        with pytest.raises((ConnectionLost, anyio.BrokenResourceError, anyio.EndOfStream)):
            await io.receive(10, 1)


async def test_silent_peer_times_out(tmp_path: Path) -> None:
    async def handler(tls: TlsStream, raw: SocketStream) -> None:
        await anyio.sleep(3)

    async with tls_pair(tmp_path, handler) as io:
        start = anyio.current_time()
        with pytest.raises(TimeoutError):
            await io.receive(10, 0.2)
        assert anyio.current_time() - start < 1.5


async def test_large_write_arrives_whole_and_reply_is_read(tmp_path: Path) -> None:
    async def handler(tls: TlsStream, raw: SocketStream) -> None:
        got = bytearray()
        while len(got) < len(PAYLOAD):
            got += await tls.receive()
        await tls.send(b"ok %d" % (bytes(got) == PAYLOAD))

    async with tls_pair(tmp_path, handler) as io:
        await io.send(PAYLOAD, 5)
        assert io.send_nowait(b"") in (True, False)
        assert await io.receive(100, 5) == b"ok 1"


async def test_cleartext_protocol_stream() -> None:
    async def handler(stream: SocketStream, n: int) -> None:
        await stream.send(PAYLOAD)
        await stream.aclose()

    server = RawServer(handler)
    async with server.run():
        conn = await TcpConnector().serve(Context(), Authority.parse(f"127.0.0.1:{server.port}"))
        io = StreamIO(conn.stream)
        assert io.lean is on_asyncio()
        data, end = await read_all(io)
        assert data == PAYLOAD
        assert isinstance(end, anyio.EndOfStream)
        await conn.stream.aclose()
