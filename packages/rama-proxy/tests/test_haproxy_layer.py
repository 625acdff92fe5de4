"""PROXY protocol layers over real loopback sockets: server knobs, bad input, the client layer."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream

from rama_core import Context, service_fn
from rama_net import Authority, SocketAddress, SocketInfo, TcpConnector, TcpListener
from rama_proxy import (
    Egress,
    ProxyCommand,
    ProxyProtocolConnectorLayer,
    ProxyProtocolHeader,
    ProxyProtocolLayer,
    SslInfo,
    Tlv,
    TransportSocketInfo,
    UnixAddress,
    encode_v1,
    encode_v2,
)

pytestmark = pytest.mark.anyio

LOG = "rama.proxy.haproxy"
CLIENT = SocketAddress.parse("203.0.113.7:40000")
FRONT = SocketAddress.parse("198.51.100.1:443")
CLIENT6 = SocketAddress.parse("[2001:db8::7]:40000")
FRONT6 = SocketAddress.parse("[2001:db8::1]:443")


@service_fn
async def report(ctx: Context, stream: ByteStream) -> None:
    """Read one line, answer what the Context says about the connection (JSON)."""
    data = b""
    while not data.endswith(b"\n"):
        data += await stream.receive()
    info = ctx.require(SocketInfo)
    header = ctx.get(ProxyProtocolHeader)
    transport = ctx.get(TransportSocketInfo)
    ssl = header.ssl if header is not None else None
    out: dict[str, Any] = {
        "peer": str(info.peer_addr),
        "local": str(info.local_addr),
        "transport": str(transport.peer_addr) if transport else None,
        "version": header.version if header else None,
        "local_cmd": header.is_local if header else None,
        "authority": header.authority if header else None,
        "alpn": header.alpn.decode() if header and header.alpn else None,
        "unique_id": header.unique_id.decode() if header and header.unique_id else None,
        "crc": header.crc32c if header else None,
        "ssl_version": ssl.version if ssl else None,
        "ssl_cn": ssl.cn if ssl else None,
        "custom": [t.value.decode() for t in header.tlvs if t.type == 0xE0] if header else [],
        "data": data.decode(),
        "stream": type(stream).__name__,
    }
    await stream.send(json.dumps(out).encode())


@service_fn
async def greeter(ctx: Context, stream: ByteStream) -> None:
    """A server-speaks-first protocol (SMTP-like)."""
    await stream.send(b"220 hello " + str(ctx.require(SocketInfo).peer_addr).encode() + b"\r\n")


@asynccontextmanager
async def serving(
    layer: ProxyProtocolLayer, app: Any = report, host: str = "127.0.0.1"
) -> AsyncIterator[SocketAddress]:
    listener = TcpListener.bind(f"{host}:0" if ":" not in host else f"[{host}]:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, layer.layer(app))
        try:
            yield listener.local_addr
        finally:
            tg.cancel_scope.cancel()


async def exchange(
    addr: SocketAddress, chunks: Sequence[bytes], *, pause: float = 0.0, timeout: float = 3.0
) -> dict[str, Any] | None:
    """Send the chunks (``pause`` apart), return the server's JSON, None when it closed first."""
    with anyio.fail_after(timeout):
        async with await anyio.connect_tcp(str(addr.ip), addr.port) as s:
            try:
                for chunk in chunks:
                    await s.send(chunk)
                    if pause:
                        await anyio.sleep(pause)
            except (anyio.BrokenResourceError, OSError):
                pass
            data = b""
            try:
                while True:
                    data += await s.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                pass
    return json.loads(data) if data else None


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOG]


# -- accepted headers ----------------------------------------------------------------------
async def test_v1_header_and_data_in_one_segment() -> None:
    async with serving(ProxyProtocolLayer()) as addr:
        got = await exchange(addr, [encode_v1(CLIENT, FRONT) + b"hello\n"])
    assert got is not None
    assert got["peer"] == "203.0.113.7:40000"
    assert got["local"] == "198.51.100.1:443"
    assert got["transport"].startswith("127.0.0.1:")
    assert got["version"] == 1
    assert got["data"] == "hello\n"
    # no byte past the header was read: the inner service gets the socket's own stream
    assert got["stream"] != "PeekStream"


async def test_v2_with_tlvs_byte_by_byte() -> None:
    tlvs = [
        Tlv.authority("www.example.com"),
        Tlv.alpn("h2"),
        Tlv.unique_id("req-42"),
        SslInfo.build(version="TLSv1.3", cn="alice").to_tlv(),
        Tlv(0xE0, b"custom"),
    ]
    payload = encode_v2(CLIENT6, FRONT6, tlvs=tlvs, crc=True) + b"data\n"
    async with serving(ProxyProtocolLayer(require_header=True, require_checksum=True)) as addr:
        got = await exchange(addr, [payload[i : i + 1] for i in range(len(payload))])
    assert got is not None
    assert got["peer"] == "[2001:db8::7]:40000"
    assert got["local"] == "[2001:db8::1]:443"
    assert got["version"] == 2
    assert (got["authority"], got["alpn"], got["unique_id"]) == ("www.example.com", "h2", "req-42")
    assert (got["ssl_version"], got["ssl_cn"]) == ("TLSv1.3", "alice")
    assert got["custom"] == ["custom"]
    assert got["crc"] is not None
    assert got["data"] == "data\n"
    assert got["stream"] != "PeekStream"


@pytest.mark.parametrize(
    "first", [b"GET / HTTP/1.1\n", b"POST /x\n", b"PRI * HTTP/2.0\n", b"P\n", b"\r\nGET /\n"]
)
async def test_optional_without_header(first: bytes) -> None:
    async with serving(ProxyProtocolLayer()) as addr:
        got = await exchange(addr, [first])
    assert got is not None
    assert got["peer"].startswith("127.0.0.1:")
    assert got["version"] is None
    assert got["transport"] is None
    assert got["data"] == first.decode()
    assert got["stream"] == "PeekStream"  # the peeked bytes are replayed


async def test_optional_server_speaks_first() -> None:
    async with serving(ProxyProtocolLayer(header_timeout=0.2), greeter) as addr:
        with anyio.fail_after(3):
            async with await anyio.connect_tcp(str(addr.ip), addr.port) as s:
                started = anyio.current_time()
                line = await s.receive()
    assert line.startswith(b"220 hello 127.0.0.1:")
    assert 0.15 < anyio.current_time() - started < 2


async def test_local_keeps_transport_addresses() -> None:
    async with serving(ProxyProtocolLayer()) as addr:
        got = await exchange(addr, [encode_v2(CLIENT, FRONT, command=ProxyCommand.LOCAL) + b"hc\n"])
        unknown = await exchange(addr, [b"PROXY UNKNOWN\r\nx\n"])
    assert got is not None
    assert got["local_cmd"] is True
    assert got["peer"].startswith("127.0.0.1:")
    assert unknown is not None
    assert unknown["version"] == 1
    assert unknown["peer"].startswith("127.0.0.1:")


async def test_ipv6_listener() -> None:
    async with serving(ProxyProtocolLayer(trusted=["::1/128"]), host="::1") as addr:
        got = await exchange(addr, [encode_v1(CLIENT, FRONT) + b"six\n"])
    assert got is not None
    assert got["peer"] == "203.0.113.7:40000"
    assert got["transport"].startswith("[::1]:")


# -- refused headers: closed within the timeout, logged once, others unaffected ----------
BAD_CRC = bytearray(encode_v2(CLIENT, FRONT, tlvs=[Tlv.authority("a.example")], crc=True))
BAD_CRC[-1] ^= 0xFF
OVERRUN = (
    encode_v2(CLIENT, FRONT)[:15]
    + bytes([12 + 5])
    + encode_v2(CLIENT, FRONT)[16:]
    + b"\x02\x00\x09ab"
)


@pytest.mark.parametrize(
    ("layer", "payload", "message"),
    [
        (ProxyProtocolLayer(), bytes(BAD_CRC) + b"x\n", "CRC32C does not match"),
        (ProxyProtocolLayer(), OVERRUN + b"x\n", "claims 9 bytes"),
        (ProxyProtocolLayer(), b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\nx\n", "port"),
        (ProxyProtocolLayer(), b"PROXY UNKNOWN " + b"x" * 120, "no CRLF"),
        (ProxyProtocolLayer(), b"PROXY HTTP/1.1 x\r\n", "TCP4, TCP6 or UNKNOWN"),
        (
            ProxyProtocolLayer(max_header_size=64),
            encode_v2(CLIENT, FRONT, tlvs=[Tlv(0xE0, bytes(100))]),
            "limit is 64",
        ),
        (
            ProxyProtocolLayer(require_header=True),
            b"GET / HTTP/1.1\r\n\r\n",
            "required PROXY header",
        ),
        (ProxyProtocolLayer(require_checksum=True), encode_v2(CLIENT, FRONT) + b"x\n", "CRC32C"),
        (
            ProxyProtocolLayer(allow_local=False),
            encode_v2(None, None, command=ProxyCommand.LOCAL),
            "LOCAL",
        ),
        (ProxyProtocolLayer(allow_unspec=False), b"PROXY UNKNOWN\r\nx\n", "UNKNOWN"),
        (ProxyProtocolLayer(versions=(2,)), encode_v1(CLIENT, FRONT) + b"x\n", "v1"),
    ],
)
async def test_refused_headers(
    layer: ProxyProtocolLayer, payload: bytes, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOG)
    async with serving(layer) as addr:
        assert await exchange(addr, [payload]) is None
        # the listener and other connections carry on
        good = await exchange(addr, [encode_v2(CLIENT, FRONT, crc=True) + b"ok\n"])
    assert good is not None
    assert good["peer"] == "203.0.113.7:40000"
    logged = records(caplog)
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert message in logged[0].getMessage()
    assert logged[0].levelno == logging.INFO
    assert "127.0.0.1" in logged[0].getMessage()


async def test_slow_header_closed_within_timeout_others_unaffected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, LOG)
    async with serving(ProxyProtocolLayer(header_timeout=0.3)) as addr:
        async with anyio.create_task_group() as tg:
            results: dict[str, Any] = {}

            async def slow() -> None:
                started = anyio.current_time()
                results["slow"] = await exchange(addr, [b"PROXY TCP4 1.2."], timeout=3)
                results["slow_took"] = anyio.current_time() - started

            async def slow_v2() -> None:
                results["slow_v2"] = await exchange(
                    addr, [encode_v2(CLIENT, FRONT)[:20]], timeout=3
                )

            async def good() -> None:
                await anyio.sleep(0.05)
                results["good"] = await exchange(addr, [encode_v1(CLIENT, FRONT) + b"fine\n"])

            tg.start_soon(slow)
            tg.start_soon(slow_v2)
            tg.start_soon(good)
    assert results["slow"] is None
    assert results["slow_v2"] is None
    assert 0.25 < results["slow_took"] < 2
    assert results["good"]["data"] == "fine\n"
    logged = [r.getMessage() for r in records(caplog)]
    assert len(logged) == 2, logged
    assert all("not received within 0.3s" in m for m in logged)


async def test_untrusted_peer_rejected_and_logged_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, LOG)
    layer = ProxyProtocolLayer(trusted=["10.0.0.0/8", "192.168.0.0/16"])
    async with serving(layer) as addr:
        for _ in range(3):
            assert await exchange(addr, [encode_v1(CLIENT, FRONT) + b"spoof\n"]) is None
        assert await exchange(addr, [encode_v2(CLIENT, FRONT)[:12]]) is None  # just the signature
        # without a header an untrusted peer is served with its own address
        direct = await exchange(addr, [b"direct\n"])
    assert direct is not None
    assert direct["peer"].startswith("127.0.0.1:")
    assert direct["version"] is None
    logged = records(caplog)
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert logged[0].levelno == logging.WARNING
    assert "untrusted peer 127.0.0.1" in logged[0].getMessage()


async def test_untrusted_ignore_passes_stream_untouched() -> None:
    layer = ProxyProtocolLayer(trusted=["10.0.0.0/8"], untrusted="ignore")
    async with serving(layer) as addr:
        got = await exchange(addr, [encode_v1(CLIENT, FRONT) + b"x\n"])
    assert got is not None
    assert got["peer"].startswith("127.0.0.1:")
    assert got["data"] == "PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\nx\n"


async def test_trusted_loopback() -> None:
    async with serving(ProxyProtocolLayer(trusted=["127.0.0.0/8"])) as addr:
        got = await exchange(addr, [encode_v1(CLIENT, FRONT) + b"x\n"])
    assert got is not None
    assert got["peer"] == "203.0.113.7:40000"


def test_layer_config_validation() -> None:
    with pytest.raises(ValueError, match="untrusted"):
        ProxyProtocolLayer(untrusted="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_header_size"):
        ProxyProtocolLayer(max_header_size=8)
    with pytest.raises(ValueError, match="versions"):
        ProxyProtocolLayer(versions=(3,))
    with pytest.raises(ValueError, match="does not appear"):
        ProxyProtocolLayer(trusted=["10.0.0.0/33"])
    with pytest.raises(ValueError, match="1 or 2"):
        ProxyProtocolConnectorLayer(3)


# -- the client layer ----------------------------------------------------------------------
async def send_line(
    connector: Any, addr: SocketAddress, ctx: Context | None = None
) -> dict[str, Any]:
    conn = await connector.serve(ctx or Context(), addr.authority)
    async with conn.stream:
        await conn.stream.send(b"via client layer\n")
        data = b""
        try:
            while True:
                data += await conn.stream.receive()
        except anyio.EndOfStream:
            pass
    return json.loads(data)  # type: ignore[no-any-return]


async def test_client_layer_v1_from_context_client() -> None:
    ctx = Context()
    ctx.insert(SocketInfo(peer_addr=CLIENT, local_addr=FRONT))
    async with serving(ProxyProtocolLayer(require_header=True)) as addr:
        got = await send_line(ProxyProtocolConnectorLayer(1).layer(TcpConnector()), addr, ctx)
    assert got["version"] == 1
    assert got["peer"] == "203.0.113.7:40000"
    assert got["local"] == "198.51.100.1:443"
    assert got["data"] == "via client layer\n"


async def test_client_layer_v2_tlvs_crc_per_target() -> None:
    layer = ProxyProtocolConnectorLayer(
        2,
        tlvs=lambda ctx, target: [Tlv.authority(str(target.host)), Tlv.alpn("http/1.1")],
        crc=True,
        source=CLIENT6,
        destination=FRONT6,
    )
    async with serving(ProxyProtocolLayer(require_header=True, require_checksum=True)) as addr:
        got = await send_line(layer.layer(TcpConnector()), addr)
    assert got["version"] == 2
    assert got["peer"] == "[2001:db8::7]:40000"
    assert got["authority"] == "127.0.0.1"
    assert got["alpn"] == "http/1.1"
    assert got["crc"] is not None


async def test_client_layer_without_context_uses_own_addresses() -> None:
    async with serving(ProxyProtocolLayer(require_header=True)) as addr:
        got = await send_line(ProxyProtocolConnectorLayer().layer(TcpConnector()), addr)
        local = await send_line(
            ProxyProtocolConnectorLayer(command=ProxyCommand.LOCAL).layer(TcpConnector()), addr
        )
    assert got["version"] == 2
    # the header claims what the connection really is: the transport peer
    assert got["peer"] == got["transport"]
    assert local["local_cmd"] is True


async def test_client_layer_failed_connect_raises() -> None:
    listener = TcpListener.bind("127.0.0.1:0")
    port = listener.local_addr.port
    listener.close()
    with pytest.raises(ConnectionRefusedError):
        await (
            ProxyProtocolConnectorLayer()
            .layer(TcpConnector())
            .serve(Context(), Authority.parse(f"127.0.0.1:{port}"))
        )


async def test_unix_source_keeps_transport_socket_info() -> None:
    src, dst = UnixAddress(b"/run/client.sock"), UnixAddress(b"/run/lb.sock")
    seen: list[ProxyProtocolHeader | None] = []

    @service_fn
    async def app(ctx: Context, stream: ByteStream) -> None:
        seen.append(ctx.get(ProxyProtocolHeader))
        await report.serve(ctx, stream)

    async with serving(ProxyProtocolLayer(), app) as addr:
        got = await exchange(addr, [encode_v2(src, dst) + b"unix\n"])
    assert got is not None
    assert got["peer"].startswith("127.0.0.1:")  # no IP to claim: the transport's stays
    header = seen[0]
    assert header is not None
    assert header.source == src


async def test_egress_sends_the_context_client() -> None:
    """What a proxy does: the Egress dials through the client layer; the origin learns who asked."""
    ctx = Context()
    ctx.insert(SocketInfo(peer_addr=CLIENT, local_addr=FRONT))
    egress = Egress(tcp=ProxyProtocolConnectorLayer(2, crc=True).layer(TcpConnector()))
    async with serving(ProxyProtocolLayer(require_header=True, require_checksum=True)) as addr:
        conn = await egress.serve(ctx, addr.authority)
        async with conn.stream:
            await conn.stream.send(b"through egress\n")
            data = b""
            try:
                while True:
                    data += await conn.stream.receive()
            except anyio.EndOfStream:
                pass
    got = json.loads(data)
    assert got["peer"] == "203.0.113.7:40000"
    assert got["data"] == "through egress\n"
