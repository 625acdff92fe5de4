"""Bad input against the assembled one-port server, over raw sockets.

Each case gets its protocol's error answer or a close within its timeout, and
a well-behaved client on the same server is served meanwhile.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from rama_raw_exchange import exchange as raw_exchange

from rama_core import Context, service_fn
from rama_http import Request, Response
from rama_http.server import serve
from rama_net import SocketAddress, TcpListener
from rama_proxy import ProxyServer, ProxyServerConfig
from rama_proxy.haproxy import encode_v2

pytestmark = [
    pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"]),
]

BOUND = 4.0  # every case must end within this (the server's timeouts are 1 s)


async def exchange(port: int, data: bytes, *, eof: bool = False) -> bytes:
    """Send ``data``, read until the server closes; fails past BOUND."""
    return await raw_exchange(port, data, eof=eof, bound=BOUND)


@asynccontextmanager
async def setup(**kwargs: Any) -> AsyncIterator[tuple[ProxyServer, int]]:
    """A server with short timeouts, and an origin answering ``ok``."""

    @service_fn
    async def ok(ctx: Context, req: Request) -> Response:
        return Response(200, body=b"ok")

    kwargs.setdefault("bind", "127.0.0.1:0")
    kwargs.setdefault("peek_timeout", 1.0)
    kwargs.setdefault("timeout", 1.0)
    kwargs.setdefault("connect_timeout", 1.0)
    server = ProxyServer(ProxyServerConfig(**kwargs))
    server.bind()
    origin = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(origin, ok))
        tg.start_soon(server.serve)
        yield server, origin.local_addr.port
        tg.cancel_scope.cancel()


async def a_good_request(port: int, origin: int) -> None:
    got = await exchange(
        port,
        f"GET http://127.0.0.1:{origin}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
    )
    assert got.startswith(b"HTTP/1.1 200")
    assert got.endswith(b"ok")


HEAD_END = b" HTTP/1.1\r\nHost: x\r\n\r\n"
HTTP_CASES = [
    pytest.param(b"GET nonsense\r\n\r\n", id="malformed-request-line"),
    pytest.param(b"CONNECT example.com:https" + HEAD_END, id="connect-port-not-numeric"),
    pytest.param(b"CONNECT [::1" + HEAD_END, id="bad-authority"),
    pytest.param(b"GET http://exa mple.com/" + HEAD_END, id="bad-absolute-uri"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("data", HTTP_CASES)
async def test_http_bad_input_gets_400(data: bytes) -> None:
    async with setup() as (server, origin):
        port = server.local_addr.port
        got = await exchange(port, data)
        assert got.startswith(b"HTTP/1.1 400"), got[:80]
        await a_good_request(port, origin)


NO_AUTH = b"\x05\x01\x00"
LOCAL_80 = b"\x01\x7f\x00\x00\x01\x00\x50"
SOCKS_CASES = [
    # a greeting listing no method, or 255 methods none of them acceptable: 0xFF, close
    pytest.param(b"\x05\x00", b"\x05\xff", id="greeting-zero-methods"),
    pytest.param(b"\x05\xff" + bytes(range(1, 256)), b"\x05\xff", id="greeting-255-methods"),
    # unknown address type: reply 08
    pytest.param(NO_AUTH + b"\x05\x01\x00\x09\x00\x00", b"\x05\x00\x05\x08", id="atyp"),
    # unknown command: reply 07
    pytest.param(NO_AUTH + b"\x05\x09\x00" + LOCAL_80, b"\x05\x00\x05\x07", id="cmd"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("data", "want"), SOCKS_CASES)
async def test_socks_bad_input_gets_its_reply(data: bytes, want: bytes) -> None:
    async with setup() as (server, origin):
        port = server.local_addr.port
        got = await exchange(port, data)
        assert got.startswith(want), got
        await a_good_request(port, origin)


@pytest.mark.anyio
async def test_socks_255_byte_domain_is_answered() -> None:
    """A 255-byte name is valid on the wire but not resolvable: an error reply, not a crash."""
    async with setup() as (server, origin):
        port = server.local_addr.port
        name = b"a" * 63 + b"." + b"b" * 63 + b"." + b"c" * 63 + b"." + b"d" * 63
        name = name[:255]
        request = b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", 80)
        got = await exchange(port, b"\x05\x01\x00" + request)
        assert got[:2] == b"\x05\x00"
        assert got[2:4] == b"\x05" + got[3:4]
        assert got[3] != 0  # not succeeded
        await a_good_request(port, origin)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="silent"),
        pytest.param(b"\x05", id="greeting-truncated"),
        pytest.param(b"\x05\x01\x00\x05\x01\x00\x03\x10abc", id="request-truncated"),
        pytest.param(b"GET http://x/ HTTP/1.1\r\nHost:", id="http-head-stalled"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01", id="tls-hello-stalled"),
    ],
)
async def test_slow_clients_are_closed_within_their_timeout(data: bytes) -> None:
    async with setup() as (server, origin):
        port = server.local_addr.port
        started = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(exchange, port, data)
            await anyio.sleep(0.1)
            await a_good_request(port, origin)  # served while the slow one waits
        assert anyio.current_time() - started < BOUND


@pytest.mark.anyio
async def test_garbage_is_closed_silently() -> None:
    async with setup() as (server, origin):
        port = server.local_addr.port
        assert await exchange(port, b"\x00\x01\x02\x03garbage") == b""
        assert await exchange(port, b"\r\n\r\n\r\n") == b""
        await a_good_request(port, origin)


@pytest.mark.anyio
async def test_an_upstream_that_never_answers_gives_504() -> None:
    """The target accepts and never answers: the forward request ends with 504 in time."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        mute_port = mute.getsockname()[1]
        async with setup() as (server, origin):
            port = server.local_addr.port
            got = await exchange(
                port,
                f"GET http://127.0.0.1:{mute_port}/ HTTP/1.1\r\nHost: x\r\n"
                "Connection: close\r\n\r\n".encode(),
            )
            assert got.startswith(b"HTTP/1.1 504"), got[:80]
            await a_good_request(port, origin)


@pytest.mark.anyio
async def test_proxy_header_from_an_untrusted_peer_is_refused() -> None:
    async with setup(proxy_protocol="accept", proxy_protocol_trusted=["10.0.0.0/8"]) as (
        server,
        origin,
    ):
        port = server.local_addr.port
        got = await exchange(
            port, b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\nGET / HTTP/1.1\r\n\r\n"
        )
        assert not got.startswith(b"HTTP/1.1 200")
        await a_good_request(port, origin)  # no header: served as usual


@pytest.mark.anyio
async def test_proxy_v2_header_with_a_bad_crc_is_refused() -> None:
    header = bytearray(
        encode_v2(
            SocketAddress.parse("203.0.113.7:40000"),
            SocketAddress.parse("127.0.0.1:80"),
            crc=True,
        )
    )
    header[-1] ^= 0xFF  # corrupt the CRC32C value (the last TLV)
    async with setup(proxy_protocol="accept") as (server, origin):
        port = server.local_addr.port
        got = await exchange(port, bytes(header) + b"GET / HTTP/1.1\r\n\r\n")
        assert got == b""
        await a_good_request(port, origin)
