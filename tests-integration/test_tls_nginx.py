"""rama-tls with a real nginx: the connector against nginx's TLS, the acceptor in front of it.

nginx (single process, every path under tmp_path) listens twice: with TLS
(certificate issued by a test CA, h2 + http/1.1, optional client certificates;
a page reports what nginx negotiated) and in plain text (a 4 MiB file). The
connector is checked against the first; a TLS-terminating relay (acceptor +
rama-net forwarder) in front of the second is checked with curl downloads
compared by sha256.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from rama_peer_process import free_port, start_nginx

from rama_core import Context
from rama_net import Authority, TcpForwarder, TcpListener
from rama_tls import (
    CertificateAuthority,
    CertificateVerificationError,
    IssuingCertResolver,
    LeafCertificateCache,
    NegotiatedTls,
    TlsAcceptorConfig,
    TlsAcceptorLayer,
    TlsClientConfig,
    TlsConnector,
)

pytestmark = [pytest.mark.anyio, pytest.mark.peer]

BIG = 4 * 1024 * 1024

REPORT = (
    "proto=$ssl_protocol alpn=$ssl_alpn_protocol sni=$ssl_server_name"
    " client=$ssl_client_s_dn verify=$ssl_client_verify"
)

NGINX_SERVERS = """\
    server {{
        listen 127.0.0.1:{tls_port} ssl http2;
        ssl_certificate {root}/leaf.pem;
        ssl_certificate_key {root}/leaf.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_client_certificate {root}/clients.pem;
        ssl_verify_client optional;
        location / {{
            return 200 "{report}\\n";
        }}
    }}
    server {{
        listen 127.0.0.1:{plain_port};
        root {root}/www;
    }}
"""


@dataclass
class Nginx:
    tls_port: int
    plain_port: int
    ca: CertificateAuthority
    client_ca: CertificateAuthority
    big_sha: str


@pytest.fixture
def nginx(tmp_path: Path, require_peer: Callable[[str], str]) -> Iterator[Nginx]:
    binary = require_peer("nginx")
    root = tmp_path / "nginx"
    (root / "www").mkdir(parents=True)
    big = os.urandom(BIG)
    (root / "www" / "big.bin").write_bytes(big)
    ca = CertificateAuthority.create("nginx test CA")
    ca.issue("localhost", "127.0.0.1").save(root / "leaf.pem", root / "leaf.key")
    client_ca = CertificateAuthority.create("nginx clients CA")
    (root / "clients.pem").write_bytes(client_ca.cert_pem())
    tls_port, plain_port = free_port(), free_port()
    body = NGINX_SERVERS.format(root=root, tls_port=tls_port, plain_port=plain_port, report=REPORT)
    with start_nginx(binary, root, body, ports=(tls_port, plain_port), worker_connections=256):
        yield Nginx(tls_port, plain_port, ca, client_ca, hashlib.sha256(big).hexdigest())


async def _http10_get(connector: TlsConnector, ctx: Context, port: int) -> bytes:
    conn = await connector.serve(ctx, Authority.new("localhost", port))
    page = b""
    with anyio.fail_after(10):
        await conn.stream.send(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        try:
            while True:
                page += await conn.stream.receive()
        except anyio.EndOfStream:
            pass
    await conn.stream.aclose()
    return page


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
async def test_connector_against_nginx(nginx: Nginx, version: str) -> None:
    tls_version = getattr(ssl.TLSVersion, version.replace(".", "_"))
    me = nginx.client_ca.issue("rama-client.example.test")
    config = TlsClientConfig(
        ca_pem=nginx.ca.cert_pem(),
        alpn_protocols=("http/1.1",),
        client_cert=me,
        minimum_version=tls_version,
        maximum_version=tls_version,
    )
    ctx = Context()
    page = await _http10_get(TlsConnector(config=config), ctx, nginx.tls_port)
    assert page.startswith(b"HTTP/1.1 200 OK")
    body = page.split(b"\r\n\r\n", 1)[1].decode()
    assert f"proto={version} alpn=http/1.1 sni=localhost" in body
    assert "client=CN=rama-client.example.test verify=SUCCESS" in body
    info = ctx.require(NegotiatedTls)
    assert info.version == version
    assert info.alpn == "http/1.1"
    peer = info.peer_certificate
    assert peer is not None
    assert peer.issuer == nginx.ca.cert.subject


async def test_connector_negotiates_h2_with_nginx(nginx: Nginx) -> None:
    config = TlsClientConfig(ca_pem=nginx.ca.cert_pem(), alpn_protocols=("h2", "http/1.1"))
    ctx = Context()
    conn = await TlsConnector(config=config).serve(ctx, Authority.new("localhost", nginx.tls_port))
    with anyio.fail_after(10):
        await conn.stream.send(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        )
        frame = await conn.stream.receive()
    await conn.stream.aclose()
    assert ctx.require(NegotiatedTls).alpn == "h2"
    assert frame[3] == 0x04  # nginx answers the preface with its SETTINGS frame


async def test_connector_rejects_nginx_with_an_unknown_ca(nginx: Nginx) -> None:
    stranger = CertificateAuthority.create("someone else")
    connector = TlsConnector(config=TlsClientConfig(ca_pem=stranger.cert_pem()))
    with pytest.raises(CertificateVerificationError):
        await connector.serve(Context(), Authority.new("localhost", nginx.tls_port))


async def test_acceptor_terminates_tls_in_front_of_nginx(
    nginx: Nginx, tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    ca = CertificateAuthority.create("relay CA")
    (tmp_path / "relay-ca.pem").write_bytes(ca.cert_pem())
    config = TlsAcceptorConfig(resolver=IssuingCertResolver(LeafCertificateCache(ca)))
    relay = TlsAcceptorLayer(config).layer(
        TcpForwarder(f"127.0.0.1:{nginx.plain_port}", idle_timeout=20)
    )
    listener = TcpListener.bind("127.0.0.1:0")
    port = listener.local_addr.port
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, relay)
        argv = [require_peer("curl"), "-sS", "--max-time", "30", "--parallel"]
        argv += ["--cacert", str(tmp_path / "relay-ca.pem")]
        outputs = [tmp_path / f"out{i}.bin" for i in range(3)]
        for out in outputs:
            argv += ["-o", str(out), f"https://localhost:{port}/big.bin"]
        with anyio.fail_after(40):
            proc = await anyio.run_process(argv, check=False)
        listener.close()
        tg.cancel_scope.deadline = anyio.current_time() + 5
    assert proc.returncode == 0, proc.stderr
    for out in outputs:
        assert hashlib.sha256(out.read_bytes()).hexdigest() == nginx.big_sha
