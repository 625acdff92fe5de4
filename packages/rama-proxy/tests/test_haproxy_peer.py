"""PROXY protocol against the real haproxy, both directions.

- haproxy ``send-proxy`` / ``send-proxy-v2`` (with ``proxy-v2-options``
  authority, unique-id, crc32c, ssl and the SSL sub-TLVs, from a TLS frontend
  with a client certificate) to a rama server behind :class:`ProxyProtocolLayer`:
  the server sees the real client address and every TLV.
- rama's :class:`ProxyProtocolConnectorLayer` (v1, v2 with TLVs and CRC32C)
  to an haproxy ``accept-proxy`` bind in http mode with ``option forwardfor``:
  the origin behind haproxy gets ``X-Forwarded-For`` = the address rama
  claimed (and haproxy's view of the v2 TLVs); a corrupted CRC32C is refused
  by haproxy, so the checksum rama computes is the one haproxy verifies.

haproxy 2.6 (Debian 12) has no ``set-proxy-v2-tlv-fmt`` (custom TLVs, 2.9+);
custom kinds are covered by the loopback tests.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSStream

from rama_core import Context, service_fn
from rama_http import Request, Response
from rama_http.client import HttpClient
from rama_http.server import Http1Server, ServerConfig
from rama_net import SocketAddress, SocketInfo, TcpConnector, TcpListener
from rama_proxy import (
    ProxyProtocolConnectorLayer,
    ProxyProtocolHeader,
    ProxyProtocolLayer,
    Tlv,
    TransportSocketInfo,
    encode_v2,
)
from rama_tls import (
    CertificateAuthority,
    IssuingCertResolver,
    LeafCertificateCache,
    TlsAcceptorConfig,
    TlsAcceptorLayer,
)

pytestmark = [pytest.mark.anyio, pytest.mark.peer]


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def haproxy_binary() -> str:
    path = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if path is None:
        pytest.fail("required peer 'haproxy' is not installed (run tools/install-peers.sh)")
    return path


def wait_listening(proc: subprocess.Popen[bytes], host: str, port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else b""
            pytest.fail(f"haproxy exited: {err.decode(errors='replace')}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"haproxy not listening on {host}:{port}")
            time.sleep(0.05)


def start_haproxy(
    conf: str, path: Path, listen: list[tuple[str, int]]
) -> Iterator[subprocess.Popen[bytes]]:
    path.write_text(conf)
    check = subprocess.run(
        [haproxy_binary(), "-c", "-q", "-f", str(path)], capture_output=True, check=False
    )
    assert check.returncode == 0, check.stderr.decode(errors="replace")
    proc = subprocess.Popen(
        [haproxy_binary(), "-f", str(path), "-db"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for host, port in listen:
            wait_listening(proc, host, port)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- haproxy sends, rama receives ------------------------------------------------------------------
SEND_CONF = """\
global
    maxconn 100
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend v1
    bind 127.0.0.1:{v1}
    bind [::1]:{v1_6}
    default_backend be_v1
frontend v2
    bind 127.0.0.1:{v2}
    default_backend be_v2
frontend tlspass
    bind 127.0.0.1:{tlspass}
    default_backend be_v2
frontend v2tls
    bind 127.0.0.1:{tls} ssl crt {pem} ca-file {ca} verify optional alpn h2,http/1.1
    unique-id-format uid-%[src_port]
    default_backend be_v2tls
backend be_v1
    server rama 127.0.0.1:{rama} send-proxy
backend be_v2
    server rama 127.0.0.1:{rama} send-proxy-v2 proxy-v2-options crc32c
backend be_v2tls
    server rama 127.0.0.1:{rama} send-proxy-v2 \
        proxy-v2-options authority,unique-id,crc32c,ssl,cert-cn,ssl-cipher,cert-sig,cert-key
"""


@dataclass
class Sender:
    ports: dict[str, int]
    ca: CertificateAuthority
    client_pem: Path
    client_key: Path
    ca_pem: Path


@pytest.fixture(scope="module")
def sender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sender]:
    root = tmp_path_factory.mktemp("haproxy-send")
    ca = CertificateAuthority.create("haproxy test CA")
    leaf = ca.issue("app.example", "127.0.0.1")
    (root / "leaf.pem").write_bytes(leaf.chain_pem() + leaf.key_pem())
    (root / "ca.pem").write_bytes(ca.cert_pem())
    ca.issue("alice.client").save(root / "client.pem", root / "client.key")
    ports = {
        "v1": free_port(),
        "v1_6": free_port("::1"),
        "v2": free_port(),
        "tls": free_port(),
        "tlspass": free_port(),
        "rama": free_port(),
    }
    conf = SEND_CONF.format(pem=root / "leaf.pem", ca=root / "ca.pem", **ports)
    listen = [("127.0.0.1", ports["v1"]), ("::1", ports["v1_6"]), ("127.0.0.1", ports["v2"])]
    listen += [("127.0.0.1", ports["tls"]), ("127.0.0.1", ports["tlspass"])]
    for _ in start_haproxy(conf, root / "haproxy.cfg", listen):
        yield Sender(ports, ca, root / "client.pem", root / "client.key", root / "ca.pem")


@service_fn
async def report(ctx: Context, stream: ByteStream) -> None:
    """Read one line; answer (JSON) what the Context says about the connection."""
    data = b""
    while not data.endswith(b"\n"):
        data += await stream.receive()
    info = ctx.require(SocketInfo)
    header = ctx.require(ProxyProtocolHeader)
    transport = ctx.require(TransportSocketInfo)
    ssl_info = header.ssl
    out: dict[str, Any] = {
        "peer": str(info.peer_addr),
        "local": str(info.local_addr),
        "transport": str(transport.peer_addr),
        "version": header.version,
        "authority": header.authority,
        "alpn": header.alpn.decode() if header.alpn else None,
        "unique_id": header.unique_id.decode() if header.unique_id else None,
        "crc": header.crc32c,
        "data": data.decode(),
        "stream": type(stream).__name__,
    }
    if ssl_info is not None:
        out["ssl"] = {
            "client_ssl": ssl_info.client_ssl,
            "cert_conn": ssl_info.client_cert_conn,
            "verified": ssl_info.verified,
            "version": ssl_info.version,
            "cn": ssl_info.cn,
            "cipher": ssl_info.cipher,
            "sig_alg": ssl_info.sig_alg,
            "key_alg": ssl_info.key_alg,
        }
    await stream.send(json.dumps(out).encode())


@asynccontextmanager
async def rama_server(port: int, layer: ProxyProtocolLayer) -> AsyncIterator[None]:
    listener = TcpListener.bind(f"127.0.0.1:{port}")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, layer.layer(report))
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


async def read_all(stream: ByteStream) -> bytes:
    data = b""
    try:
        while True:
            data += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        pass
    return data


def strict_layer() -> ProxyProtocolLayer:
    # haproxy is the only peer allowed to claim addresses, and it must
    return ProxyProtocolLayer(trusted=["127.0.0.1/32"], require_header=True, header_timeout=3)


async def test_send_proxy_v1(sender: Sender) -> None:
    async with rama_server(sender.ports["rama"], strict_layer()):
        with anyio.fail_after(5):
            # from 127.0.0.2: an address only the PROXY header can tell
            s = await anyio.connect_tcp("127.0.0.1", sender.ports["v1"], local_host="127.0.0.2")
            async with s:
                client_port = s.extra(SocketAttribute.local_port)
                await s.send(b"hello v1\n")
                got = json.loads(await read_all(s))
    assert got["version"] == 1
    assert got["peer"] == f"127.0.0.2:{client_port}"
    assert got["local"] == f"127.0.0.1:{sender.ports['v1']}"
    assert got["transport"].startswith("127.0.0.1:")
    assert got["data"] == "hello v1\n"
    assert got["stream"] != "PeekStream"  # nothing past the line was read


async def test_send_proxy_v1_tcp6(sender: Sender) -> None:
    async with rama_server(sender.ports["rama"], strict_layer()):
        with anyio.fail_after(5):
            async with await anyio.connect_tcp("::1", sender.ports["v1_6"]) as s:
                client_port = s.extra(SocketAttribute.local_port)
                await s.send(b"six\n")
                got = json.loads(await read_all(s))
    assert got["peer"] == f"[::1]:{client_port}"
    assert got["local"] == f"[::1]:{sender.ports['v1_6']}"


async def test_send_proxy_v2_crc(sender: Sender) -> None:
    layer = ProxyProtocolLayer(
        trusted=["127.0.0.1/32"], require_header=True, require_checksum=True, versions=(2,)
    )
    async with rama_server(sender.ports["rama"], layer):
        with anyio.fail_after(5):
            s = await anyio.connect_tcp("127.0.0.1", sender.ports["v2"], local_host="127.0.0.3")
            async with s:
                client_port = s.extra(SocketAttribute.local_port)
                await s.send(b"hello v2\n")
                got = json.loads(await read_all(s))
    assert got["version"] == 2
    assert got["peer"] == f"127.0.0.3:{client_port}"
    assert got["crc"] is not None  # present, and verified by the layer
    assert got["data"] == "hello v2\n"


async def test_send_proxy_v2_tls_tlvs(sender: Sender) -> None:
    layer = ProxyProtocolLayer(trusted=["127.0.0.1/32"], require_header=True, require_checksum=True)
    ctx = ssl.create_default_context(cadata=sender.ca.cert_pem().decode())
    ctx.load_cert_chain(sender.client_pem, sender.client_key)
    ctx.set_alpn_protocols(["h2"])
    async with rama_server(sender.ports["rama"], layer):
        with anyio.fail_after(5):
            tcp = await anyio.connect_tcp("127.0.0.1", sender.ports["tls"], local_host="127.0.0.4")
            client_port = tcp.extra(SocketAttribute.local_port)
            tls = await TLSStream.wrap(tcp, hostname="app.example", ssl_context=ctx)
            async with tls:
                cipher = tls.extra(TLSAttribute.cipher)[0]
                await tls.send(b"over tls\n")
                got = json.loads(await read_all(tls))
    assert got["peer"] == f"127.0.0.4:{client_port}"
    assert got["authority"] == "app.example"
    assert got["alpn"] == "h2"
    assert got["unique_id"] == f"uid-{client_port}"
    assert got["crc"] is not None
    s = got["ssl"]
    assert s["client_ssl"] is True
    assert s["cert_conn"] is True
    assert s["verified"] is True
    assert s["version"] == "TLSv1.3"
    assert s["cn"] == "alice.client"
    assert s["cipher"] == cipher
    assert s["sig_alg"] == "ecdsa-with-SHA256"
    assert s["key_alg"] == "EC256"
    assert got["data"] == "over tls\n"


async def test_send_proxy_from_untrusted_haproxy(
    sender: Sender, caplog: pytest.LogCaptureFixture
) -> None:
    """haproxy's header, but haproxy is not in the trusted list: closed, logged once."""
    caplog.set_level(logging.INFO, "rama.proxy.haproxy")
    layer = ProxyProtocolLayer(trusted=["10.0.0.0/8"])
    async with rama_server(sender.ports["rama"], layer):
        with anyio.fail_after(5):
            async with await anyio.connect_tcp("127.0.0.1", sender.ports["v2"]) as s:
                await s.send(b"spoofed?\n")
                assert await read_all(s) == b""
    logged = [r for r in caplog.records if r.name == "rama.proxy.haproxy"]
    assert len(logged) == 1
    assert "untrusted peer 127.0.0.1" in logged[0].getMessage()


async def test_send_proxy_v2_before_rama_tls_and_http(
    sender: Sender, require_peer: Callable[[str], str]
) -> None:
    """haproxy passes TLS through (tcp mode): PROXY header, then rama terminates TLS, then HTTP."""
    curl = require_peer("curl")

    @service_fn
    async def client_ip(ctx: Context, req: Request) -> Response:
        return Response.from_text(f"{ctx.require(SocketInfo).peer_addr}\n")

    tls = TlsAcceptorLayer(
        TlsAcceptorConfig(
            resolver=IssuingCertResolver(LeafCertificateCache(sender.ca, max_size=8)),
            alpn_protocols=("http/1.1",),
        )
    )
    stack = ProxyProtocolLayer(trusted=["127.0.0.1/32"], require_header=True).layer(
        tls.layer(Http1Server(client_ip, ServerConfig()))
    )
    listener = TcpListener.bind(f"127.0.0.1:{sender.ports['rama']}")
    port = sender.ports["tlspass"]
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, stack)
        result = await anyio.run_process(
            [
                curl, "-sS", "--max-time", "5", "--interface", "127.0.0.9",
                "--cacert", str(sender.ca_pem),
                "--resolve", f"app.example:{port}:127.0.0.1",
                f"https://app.example:{port}/",
            ],
            check=False,
        )  # fmt: skip
        tg.cancel_scope.cancel()
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith("127.0.0.9:")


# -- rama sends, haproxy receives ------------------------------------------------------------------
ACCEPT_CONF = """\
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:{fe} accept-proxy
    option forwardfor
    http-request set-header X-Src-Port %[src_port]
    http-request set-header X-Dst %[dst]:%[dst_port]
    http-request set-header X-PP-Authority %[fc_pp_authority]
    http-request set-header X-PP-Unique-Id %[fc_pp_unique_id]
    default_backend origin
backend origin
    server origin 127.0.0.1:{origin}
"""


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    root = tmp_path_factory.mktemp("haproxy-accept")
    ports = {"fe": free_port(), "origin": free_port()}
    conf = ACCEPT_CONF.format(**ports)
    for _ in start_haproxy(conf, root / "haproxy.cfg", [("127.0.0.1", ports["fe"])]):
        yield ports


@service_fn
async def echo_headers(ctx: Context, stream: ByteStream) -> None:
    """A tiny HTTP origin: answers the request's headers as JSON."""
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive()
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    body = json.dumps(headers).encode()
    await stream.send(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )


@asynccontextmanager
async def origin(port: int) -> AsyncIterator[None]:
    listener = TcpListener.bind(f"127.0.0.1:{port}")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo_headers)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


async def get_through(port: int, layer: ProxyProtocolConnectorLayer) -> Any:
    """GET through the high-level client whose TCP connector sends the PROXY header."""
    async with HttpClient(tcp=layer.layer(TcpConnector())) as client:
        r = await client.get(f"http://127.0.0.1:{port}/")
        assert r.status == 200
        return await r.json()


CLAIMED = SocketAddress.parse("203.0.113.9:4242")
CLAIMED_DST = SocketAddress.parse("198.51.100.80:8080")
CLAIMED6 = SocketAddress.parse("[2001:db8::9]:4243")
CLAIMED6_DST = SocketAddress.parse("[2001:db8::80]:443")


async def test_accept_proxy_v1(receiver: dict[str, int]) -> None:
    async with origin(receiver["origin"]):
        got = await get_through(
            receiver["fe"], ProxyProtocolConnectorLayer(1, source=CLAIMED, destination=CLAIMED_DST)
        )
    assert got["x-forwarded-for"] == "203.0.113.9"
    assert got["x-src-port"] == "4242"
    assert got["x-dst"] == "198.51.100.80:8080"


async def test_accept_proxy_v2_tlvs_crc(receiver: dict[str, int]) -> None:
    layer = ProxyProtocolConnectorLayer(
        2,
        source=CLAIMED6,
        destination=CLAIMED6_DST,
        tlvs=[Tlv.authority("front.example"), Tlv.unique_id("rama-1"), Tlv.noop(4)],
        crc=True,
    )
    async with origin(receiver["origin"]):
        got = await get_through(receiver["fe"], layer)
    assert got["x-forwarded-for"] == "2001:db8::9"
    assert got["x-src-port"] == "4243"
    assert got["x-pp-authority"] == "front.example"
    assert got["x-pp-unique-id"] == "rama-1"


async def test_accept_proxy_client_from_context(receiver: dict[str, int]) -> None:
    """As inside a proxy: the downstream client in the Context is what rama claims."""
    ctx = Context()
    ctx.insert(SocketInfo(peer_addr=CLAIMED, local_addr=CLAIMED_DST))
    layer = ProxyProtocolConnectorLayer(2, crc=True)
    async with origin(receiver["origin"]):
        conn = await layer.layer(TcpConnector()).serve(
            ctx, SocketAddress.parse(f"127.0.0.1:{receiver['fe']}").authority
        )
        async with conn.stream:
            await conn.stream.send(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            raw = await read_all(conn.stream)
    got = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert got["x-forwarded-for"] == "203.0.113.9"
    assert got["x-dst"] == "198.51.100.80:8080"


async def test_haproxy_refuses_bad_crc(receiver: dict[str, int]) -> None:
    """haproxy verifies PP2_TYPE_CRC32C: ours passes, a corrupted one is refused."""
    good = encode_v2(CLAIMED, CLAIMED_DST, tlvs=[Tlv.authority("a.example")], crc=True)
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    request = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    async with origin(receiver["origin"]):
        results = []
        for header in (good, bytes(bad)):
            with anyio.fail_after(5):
                async with await anyio.connect_tcp("127.0.0.1", receiver["fe"]) as s:
                    await s.send(header + request)
                    results.append(await read_all(s))
    assert results[0].startswith(b"HTTP/1.1 200")
    assert b"203.0.113.9" in results[0]
    assert not results[1].startswith(b"HTTP/1.1 200")
