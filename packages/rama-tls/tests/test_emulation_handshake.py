"""Full handshakes of the emulation engine against real TLS servers, with a request over each.

Peers: openssl s_server (TLS 1.3 with each AEAD, TLS 1.2 with RSA and ECDSA,
HelloRetryRequest with and without a cookie), nginx (h2 and http/1.1, TLS 1.3
and TLS 1.2 only), haproxy, rama's own acceptor (the JA4 it records is the
profile's), a pyOpenSSL server on cryptography's OpenSSL (X25519MLKEM768) and
tlslite-ng (compressed certificates: zlib, brotli, zstd; KeyUpdate). Every
connection verifies the server's chain against the test CA.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import h2.config
import h2.connection
import h2.events
import pytest
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute
from rama_peer_process import free_port, spawn_peer, start_nginx

from rama_core import Context, service_fn
from rama_tls import (
    CertificateAuthority,
    CertificateVerificationError,
    ClientHello,
    ClientHelloComplete,
    IssuingCertResolver,
    LeafCertificateCache,
    TlsAcceptorConfig,
    TlsAcceptorLayer,
    ja3,
    ja4,
    parse_client_hello_records,
)
from rama_tls.emulation import ClientHelloSpec, EmulatedTlsStream, emulated_tls_connect

pytestmark = [pytest.mark.anyio, pytest.mark.peer]

PROFILES_PATH = Path(__file__).parents[2] / "rama-ua/src/rama_ua/data/ua_profiles.json"
PROFILES: list[dict[str, Any]] = json.loads(PROFILES_PATH.read_text())
BROWSERS = {"chrome": 46, "firefox": 40, "safari": 34, "edge": 47}
NAMES = list(BROWSERS)


def spec_for(browser: str) -> ClientHelloSpec:
    return ClientHelloSpec.from_profile(PROFILES[BROWSERS[browser]]["tls_client_hello"])


def _u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


def profile_hello(browser: str) -> ClientHello:
    """The profile's own hello (its literal bytes), parsed: the expected fingerprints."""
    spec = spec_for(browser)
    suites = b"".join(_u16(s) for s in spec.cipher_suites)
    block = b"".join(_u16(e.type) + _u16(len(e.data)) + e.data for e in spec.extensions)
    body = _u16(0x0303) + bytes(32) + b"\x20" + bytes(32) + _u16(len(suites)) + suites + b"\x01\x00"
    body += _u16(len(block)) + block
    msg = b"\x01" + len(body).to_bytes(3, "big") + body
    result = parse_client_hello_records(b"\x16\x03\x01" + _u16(len(msg)) + msg)
    assert isinstance(result, ClientHelloComplete)
    return result.client_hello


@dataclass(frozen=True)
class Certs:
    ca_pem: bytes
    ec_cert: Path
    ec_key: Path
    rsa_cert: Path
    rsa_key: Path
    combined_ec: Path
    ca: CertificateAuthority


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    root = tmp_path_factory.mktemp("emulation-certs")
    ca = CertificateAuthority.create("emulation test CA")
    ec = ca.issue("localhost", "127.0.0.1")
    ec.save(root / "ec.pem", root / "ec.key")
    ca.issue("localhost", "127.0.0.1", key_type="rsa").save(root / "rsa.pem", root / "rsa.key")
    (root / "combined.pem").write_bytes(ec.cert_pem() + ec.key_pem())
    return Certs(
        ca.cert_pem(),
        root / "ec.pem",
        root / "ec.key",
        root / "rsa.pem",
        root / "rsa.key",
        root / "combined.pem",
        ca,
    )


def _which(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        pytest.fail(f"required peer {name!r} is not installed (run tools/install-peers.sh)")
    return path


@contextmanager
def s_server(
    require_peer: Callable[[str], str], *args: str, cert: Path, key: Path
) -> Iterator[int]:
    port = free_port()
    argv = [require_peer("openssl"), "s_server", "-accept", f"127.0.0.1:{port}", "-www"]
    argv += ["-cert", str(cert), "-key", str(key), "-quiet", *args]
    with spawn_peer(argv, ports=(port,)):
        yield port


async def read_all(stream: ByteStream) -> bytes:
    out = b""
    try:
        while True:
            out += await stream.receive()
    except anyio.EndOfStream:
        pass
    return out


async def connect(port: int, spec: ClientHelloSpec, ca_pem: bytes) -> EmulatedTlsStream:
    tcp = await anyio.connect_tcp("127.0.0.1", port)
    return await emulated_tls_connect(
        tcp, server_name="localhost", spec=spec, ca=ca_pem, handshake_timeout=10
    )


async def http11(
    port: int, spec: ClientHelloSpec, ca_pem: bytes
) -> tuple[EmulatedTlsStream, bytes]:
    with anyio.fail_after(20):
        tls = await connect(port, spec, ca_pem)
        tls.extras = {  # type: ignore[attr-defined]
            attr: tls.extra(attr) for attr in (TLSAttribute.tls_version, TLSAttribute.cipher)
        }
        await tls.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        body = await read_all(tls)
        await tls.aclose()
    return tls, body


# -- openssl s_server -----------------------------------------------------------------------
@pytest.mark.parametrize("browser", NAMES)
@pytest.mark.parametrize(
    "suite", ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
)
async def test_openssl_tls13_each_aead(
    browser: str, suite: str, certs: Certs, require_peer: Callable[[str], str]
) -> None:
    with s_server(
        require_peer, "-tls1_3", "-ciphersuites", suite, cert=certs.ec_cert, key=certs.ec_key
    ) as port:
        tls, page = await http11(port, spec_for(browser), certs.ca_pem)
    assert tls.client.version == "TLSv1.3"
    assert tls.client.cipher_suite == suite
    assert page.startswith(b"HTTP/1.0 200 ok")
    assert f"TLSv1.3, Cipher is {suite}".encode() in page
    assert tls.extras[TLSAttribute.tls_version] == "TLSv1.3"
    assert tls.extras[TLSAttribute.cipher][0] == suite


@pytest.mark.parametrize("browser", NAMES)
@pytest.mark.parametrize(
    ("cipher", "kind"),
    [
        ("ECDHE-RSA-AES128-GCM-SHA256", "rsa"),
        ("ECDHE-RSA-AES256-GCM-SHA384", "rsa"),
        ("ECDHE-RSA-CHACHA20-POLY1305", "rsa"),
        ("ECDHE-ECDSA-AES128-GCM-SHA256", "ec"),
        ("ECDHE-ECDSA-AES256-GCM-SHA384", "ec"),
        ("ECDHE-ECDSA-CHACHA20-POLY1305", "ec"),
    ],
)
async def test_openssl_tls12(
    browser: str, cipher: str, kind: str, certs: Certs, require_peer: Callable[[str], str]
) -> None:
    cert, key = (certs.rsa_cert, certs.rsa_key) if kind == "rsa" else (certs.ec_cert, certs.ec_key)
    with s_server(require_peer, "-tls1_2", "-cipher", cipher, cert=cert, key=key) as port:
        tls, page = await http11(port, spec_for(browser), certs.ca_pem)
    assert tls.client.version == "TLSv1.2"
    assert tls.client.cipher_suite == cipher
    assert tls.client.extended_master_secret
    assert f"TLSv1.2, Cipher is {cipher}".encode() in page
    assert b"Secure Renegotiation IS supported" in page


@pytest.mark.parametrize("browser", NAMES)
@pytest.mark.parametrize("stateless", [False, True], ids=["hrr", "hrr-cookie"])
async def test_openssl_hello_retry_request(
    browser: str, stateless: bool, certs: Certs, require_peer: Callable[[str], str]
) -> None:
    """The profiles send X25519 (and ML-KEM) shares; a P-384-only server asks again."""
    extra = ["-stateless"] if stateless else []
    with s_server(
        require_peer, "-tls1_3", "-groups", "P-384", *extra, cert=certs.ec_cert, key=certs.ec_key
    ) as port:
        tls, page = await http11(port, spec_for(browser), certs.ca_pem)
    assert tls.client.hello_retried
    assert tls.client.group == 0x0018
    assert page.startswith(b"HTTP/1.0 200 ok")


@pytest.mark.parametrize("browser", ["chrome", "firefox"])
@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
async def test_openssl_certificate_request_gets_an_empty_certificate(
    browser: str, version: str, certs: Certs, require_peer: Callable[[str], str]
) -> None:
    """-verify asks for a client certificate (optional): the engine sends none and goes on."""
    with s_server(
        require_peer, version, "-verify", "1", cert=certs.ec_cert, key=certs.ec_key
    ) as port:
        tls, page = await http11(port, spec_for(browser), certs.ca_pem)
    assert tls.client.version == ("TLSv1.3" if version == "-tls1_3" else "TLSv1.2")
    assert page.startswith(b"HTTP/1.0 200 ok")
    assert b"no client certificate available" in page


async def test_openssl_ip_address_verified_without_sni(
    certs: Certs, require_peer: Callable[[str], str]
) -> None:
    """An IP literal is checked against the certificate's IP SAN and sends no SNI."""
    with s_server(require_peer, "-tls1_3", cert=certs.ec_cert, key=certs.ec_key) as port:
        with anyio.fail_after(20):
            tcp = await anyio.connect_tcp("127.0.0.1", port)
            tls = await emulated_tls_connect(
                tcp, server_name="127.0.0.1", spec=spec_for("firefox"), ca=certs.ca_pem
            )
            await tls.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            page = await read_all(tls)
            await tls.aclose()
            tcp = await anyio.connect_tcp("127.0.0.1", port)
            with pytest.raises(CertificateVerificationError):  # not in the IP SANs
                await emulated_tls_connect(
                    tcp, server_name="127.0.0.2", spec=spec_for("firefox"), ca=certs.ca_pem
                )
            await tcp.aclose()
    assert page.startswith(b"HTTP/1.0 200 ok")


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
async def test_openssl_stapled_ocsp_response(
    version: str, certs: Certs, tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    """status_request (every profile sends it) answered with a staple: CertificateStatus
    in TLS 1.2, a Certificate entry extension in TLS 1.3; kept (not checked)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp

    leaf = x509.load_pem_x509_certificate(certs.ec_cert.read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf,
            issuer=certs.ca.cert,
            algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + datetime.timedelta(days=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, certs.ca.cert)
        .sign(certs.ca.key, hashes.SHA256())
    )
    staple = tmp_path / "ocsp.der"
    staple.write_bytes(response.public_bytes(serialization.Encoding.DER))
    with s_server(
        require_peer, version, "-status_file", str(staple), cert=certs.ec_cert, key=certs.ec_key
    ) as port:
        tls, page = await http11(port, spec_for("chrome"), certs.ca_pem)
    assert tls.client.version == ("TLSv1.2" if version == "-tls1_2" else "TLSv1.3")
    assert tls.client.ocsp_response == staple.read_bytes()
    assert page.startswith(b"HTTP/1.0 200 ok")


# -- nginx ------------------------------------------------------------------------------------
REPORT = "proto=$ssl_protocol alpn=$ssl_alpn_protocol http=$server_protocol"
NGINX_SERVERS = """\
    server {{
        listen 127.0.0.1:{port13} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        location / {{ return 200 "{report}\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{port12} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2;
        location / {{ return 200 "{report}\\n"; }}
    }}
"""


@dataclass(frozen=True)
class NginxPorts:
    tls13: int
    tls12: int


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[NginxPorts]:
    root = tmp_path_factory.mktemp("emulation-nginx")
    port13, port12 = free_port(), free_port()
    body = NGINX_SERVERS.format(
        port13=port13, port12=port12, cert=certs.ec_cert, key=certs.ec_key, report=REPORT
    )
    with start_nginx(_which("nginx"), root, body, ports=(port13, port12), worker_connections=256):
        yield NginxPorts(port13, port12)


async def h2_get(tls: EmulatedTlsStream) -> tuple[int, bytes]:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(
        1,
        [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", "/")],
        end_stream=True,
    )
    await tls.send(conn.data_to_send())
    status, body = 0, b""
    while True:
        data = await tls.receive()
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                return status, body
        out = conn.data_to_send()
        if out:
            await tls.send(out)


@pytest.mark.parametrize("browser", NAMES)
@pytest.mark.parametrize("version", ["tls13", "tls12"])
async def test_nginx_h2(browser: str, version: str, nginx: NginxPorts, certs: Certs) -> None:
    port = nginx.tls13 if version == "tls13" else nginx.tls12
    with anyio.fail_after(20):
        tls = await connect(port, spec_for(browser), certs.ca_pem)
        assert tls.client.alpn_protocol == "h2"
        status, body = await h2_get(tls)
        await tls.aclose()
    proto = "TLSv1.3" if version == "tls13" else "TLSv1.2"
    assert status == 200
    assert body == f"proto={proto} alpn=h2 http=HTTP/2.0\n".encode()


@pytest.mark.parametrize("browser", NAMES)
@pytest.mark.parametrize("version", ["tls13", "tls12"])
async def test_nginx_http11(browser: str, version: str, nginx: NginxPorts, certs: Certs) -> None:
    port = nginx.tls13 if version == "tls13" else nginx.tls12
    spec = spec_for(browser).with_alpn(["http/1.1"])
    tls, page = await http11(port, spec, certs.ca_pem)
    proto = "TLSv1.3" if version == "tls13" else "TLSv1.2"
    assert tls.client.alpn_protocol == "http/1.1"
    assert page.startswith(b"HTTP/1.1 200 OK")
    assert page.endswith(f"proto={proto} alpn=http/1.1 http=HTTP/1.1\n".encode())


# -- haproxy ----------------------------------------------------------------------------------
HAPROXY_CONF = """\
global
    maxconn 100
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend tls
    bind 127.0.0.1:{port} ssl crt {pem} alpn {alpn}
    http-request return status 200 content-type text/plain lf-string "{report}\\n"
"""


@pytest.mark.parametrize("browser", NAMES)
@pytest.mark.parametrize("alpn", ["h2", "http/1.1"])
async def test_haproxy(
    browser: str, alpn: str, certs: Certs, tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    port = free_port()
    conf = tmp_path / "haproxy.cfg"
    report = "proto=%[ssl_fc_protocol] cipher=%[ssl_fc_cipher]"
    conf.write_text(HAPROXY_CONF.format(port=port, pem=certs.combined_ec, report=report, alpn=alpn))
    with spawn_peer([require_peer("haproxy"), "-f", str(conf), "-db"], ports=(port,)):
        if alpn == "h2":
            with anyio.fail_after(20):
                tls = await connect(port, spec_for(browser), certs.ca_pem)
                status, page = await h2_get(tls)
                await tls.aclose()
            assert status == 200
        else:
            tls, page = await http11(port, spec_for(browser), certs.ca_pem)
            assert page.startswith(b"HTTP/1.1 200")
    assert tls.client.alpn_protocol == alpn
    assert f"proto=TLSv1.3 cipher={tls.client.cipher_suite}".encode() in page


# -- rama's own acceptor ------------------------------------------------------------------------
@pytest.mark.parametrize("browser", NAMES)
async def test_rama_acceptor_sees_the_profile(browser: str, certs: Certs, serve_tcp: Any) -> None:
    @service_fn
    async def echo_fingerprint(ctx: Context, stream: ByteStream) -> None:
        hello = ctx.require(ClientHello)
        await stream.send(f"{ja4(hello).ja4} {ja3(hello).hash}\n".encode())
        await stream.aclose()

    config = TlsAcceptorConfig(
        resolver=IssuingCertResolver(LeafCertificateCache(certs.ca, max_size=8)),
        alpn_protocols=("http/1.1",),
    )
    plain = spec_for(browser).replace(permute_extensions=False)
    expected = profile_hello(browser)
    async with serve_tcp(TlsAcceptorLayer(config).layer(echo_fingerprint)) as listener:
        for spec in (spec_for(browser), plain):
            with anyio.fail_after(15):
                tls = await connect(listener.local_addr.port, spec, certs.ca_pem)
                seen_ja4, seen_ja3 = (await read_all(tls)).decode().split()
                await tls.aclose()
            assert seen_ja4 == ja4(expected).ja4
            if spec is plain:
                assert seen_ja3 == ja3(expected).hash
            assert tls.client.alpn_protocol == "http/1.1"


async def test_from_client_hello_replays_curl(
    certs: Certs, serve_tcp: Any, capture_client_hello: Any, require_peer: Callable[[str], str]
) -> None:
    """ "Send what this client sent": curl's captured hello, replayed, shows curl's JA3/JA4."""
    curl = require_peer("curl")
    captured = capture_client_hello(
        lambda port: subprocess.run(
            [curl, "-sk", "--max-time", "5", f"https://localhost:{port}/"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    )
    result = parse_client_hello_records(captured)
    assert isinstance(result, ClientHelloComplete)
    original = result.client_hello
    spec = ClientHelloSpec.from_client_hello(original)

    @service_fn
    async def echo_fingerprint(ctx: Context, stream: ByteStream) -> None:
        hello = ctx.require(ClientHello)
        await stream.send(f"{ja4(hello).ja4} {ja3(hello).hash}\n".encode())
        await stream.aclose()

    config = TlsAcceptorConfig(
        resolver=IssuingCertResolver(LeafCertificateCache(certs.ca, max_size=8)),
        alpn_protocols=("http/1.1",),
    )
    async with serve_tcp(TlsAcceptorLayer(config).layer(echo_fingerprint)) as listener:
        with anyio.fail_after(15):
            tls = await connect(listener.local_addr.port, spec, certs.ca_pem)
            seen_ja4, seen_ja3 = (await read_all(tls)).decode().split()
            await tls.aclose()
    assert seen_ja4 == ja4(original).ja4
    assert seen_ja3 == ja3(original).hash


# -- pyOpenSSL on cryptography's OpenSSL: X25519MLKEM768 ---------------------------------------
@contextmanager
def threaded_server(handler: Callable[[socket.socket], None], count: int) -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(15)
    errors: list[Exception] = []

    def run() -> None:
        for _ in range(count):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.settimeout(15)
            with conn:
                try:
                    handler(conn)
                except Exception as exc:  # the client side asserts what matters
                    errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()
        thread.join(timeout=20)
        if errors:
            print("server errors:", errors)


@pytest.mark.parametrize("browser", NAMES)
async def test_pyopenssl_x25519mlkem768(browser: str, certs: Certs) -> None:
    from OpenSSL import SSL

    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.use_certificate_file(str(certs.ec_cert))
    ctx.use_privatekey_file(str(certs.ec_key))
    ctx.set_alpn_select_callback(lambda conn, protos: b"h2" if b"h2" in protos else protos[0])

    def handle(sock: socket.socket) -> None:
        sock.settimeout(None)  # pyOpenSSL needs a blocking socket
        conn = SSL.Connection(ctx, sock)
        conn.set_accept_state()
        conn.do_handshake()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        conn.shutdown()

    with threaded_server(handle, 1) as port:
        tls, page = await http11(port, spec_for(browser), certs.ca_pem)
    expected_group = 0x001D if browser == "safari" else 0x11EC  # Safari has no ML-KEM
    assert tls.client.group == expected_group
    assert tls.client.alpn_protocol == "h2"
    assert page.endswith(b"\r\n\r\nok")


# -- tlslite-ng: compressed certificates, KeyUpdate ---------------------------------------------
def _tlslite_server(certs: Certs, **settings: Any) -> tuple[Any, Any, Any]:
    from tlslite.api import HandshakeSettings, X509CertChain, parsePEMKey

    chain = X509CertChain()
    chain.parsePemList(certs.ec_cert.read_text())
    key = parsePEMKey(certs.ec_key.read_text(), private=True)
    hs = HandshakeSettings()
    for name, value in settings.items():
        setattr(hs, name, value)
    return chain, key, hs


@pytest.mark.parametrize(
    ("browser", "algorithm"),
    [
        ("firefox", "zlib"),
        ("firefox", "brotli"),
        ("firefox", "zstd"),
        ("chrome", "brotli"),
        ("safari", "zlib"),
    ],
)
async def test_tlslite_compressed_certificate(browser: str, algorithm: str, certs: Certs) -> None:
    from tlslite.api import TLSConnection

    chain, key, hs = _tlslite_server(certs, certificate_compression_send=[algorithm])

    def handle(sock: socket.socket) -> None:
        conn = TLSConnection(sock)
        conn.handshakeServer(
            certChain=chain, privateKey=key, settings=hs, alpn=[bytearray(b"http/1.1")]
        )
        conn.read(max=4096)
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        conn.close()

    with threaded_server(handle, 1) as port:
        tls, page = await http11(port, spec_for(browser), certs.ca_pem)
    assert tls.client.certificate_compression == {"zlib": 1, "brotli": 2, "zstd": 3}[algorithm]
    assert page.endswith(b"\r\n\r\nok")


async def test_tlslite_record_size_limit(certs: Certs) -> None:
    """Firefox offers record_size_limit; a server that wants 1000-byte records gets them."""
    from tlslite.api import TLSConnection

    chain, key, hs = _tlslite_server(certs, record_size_limit=1000)
    got: list[bytes] = []

    def handle(sock: socket.socket) -> None:
        conn = TLSConnection(sock)
        conn.handshakeServer(
            certChain=chain, privateKey=key, settings=hs, alpn=[bytearray(b"http/1.1")]
        )
        data = b""
        while len(data) < 5000:
            data += bytes(conn.read(max=6000))
        got.append(data)
        conn.write(b"ok")
        conn.close()

    with threaded_server(handle, 1) as port:
        with anyio.fail_after(20):
            tls = await connect(port, spec_for("firefox"), certs.ca_pem)
            assert tls.client.max_plaintext == 999
            await tls.send(b"x" * 5000)
            assert await tls.receive() == b"ok"
            await tls.aclose()
    assert got == [b"x" * 5000]


async def test_tlslite_key_update_both_ways(certs: Certs) -> None:
    from tlslite.api import TLSConnection
    from tlslite.constants import KeyUpdateMessageType

    chain, key, hs = _tlslite_server(certs)
    got: list[bytes] = []

    def handle(sock: socket.socket) -> None:
        conn = TLSConnection(sock)
        conn.handshakeServer(
            certChain=chain, privateKey=key, settings=hs, alpn=[bytearray(b"http/1.1")]
        )
        got.append(bytes(conn.read(max=100)))
        for _ in conn.send_keyupdate_request(KeyUpdateMessageType.update_requested):
            pass
        conn.write(b"after-update")
        got.append(bytes(conn.read(max=100)))  # the client's next key
        conn.write(b"bye")
        conn.close()

    with threaded_server(handle, 1) as port:
        with anyio.fail_after(20):
            tls = await connect(port, spec_for("firefox"), certs.ca_pem)
            await tls.send(b"hello")
            assert await tls.receive() == b"after-update"
            await tls.send(b"second")
            assert await tls.receive() == b"bye"
            tls.client.key_update(request_peer=False)  # ours, unrequested, then close
            await tls.send_eof()
            await tls.aclose()
    assert got == [b"hello", b"second"]


# -- as a rama connector ------------------------------------------------------------------------
@pytest.mark.parametrize("browser", ["chrome", "safari"])
async def test_emulated_connector_against_nginx(
    browser: str, nginx: NginxPorts, certs: Certs
) -> None:
    from rama_net import Authority, TcpConnector
    from rama_tls import NegotiatedTls
    from rama_tls.emulation import EmulatedTlsConnectorLayer

    connector = EmulatedTlsConnectorLayer(spec_for(browser), ca=certs.ca_pem).layer(TcpConnector())
    ctx = Context()
    with anyio.fail_after(20):
        conn = await connector.serve(ctx, Authority.new("localhost", nginx.tls13))
        status, body = await h2_get(conn.stream)  # type: ignore[arg-type]
        await conn.stream.aclose()
    assert status == 200
    assert body.startswith(b"proto=TLSv1.3 alpn=h2")
    negotiated = ctx.require(NegotiatedTls)
    assert negotiated.side == "client"
    assert negotiated.alpn == "h2"
    assert negotiated.version == "TLSv1.3"
    assert negotiated.server_name == "localhost"
    assert negotiated.peer_certificate is not None


async def test_emulated_connector_rejects_an_unknown_ca(nginx: NginxPorts) -> None:
    from rama_net import Authority, TcpConnector
    from rama_tls import CertificateVerificationError
    from rama_tls.emulation import EmulatedTlsConnector

    other = CertificateAuthority.create("not nginx's CA")
    connector = EmulatedTlsConnector(spec_for("firefox"), TcpConnector(), ca=other.cert_pem())
    with anyio.fail_after(20), pytest.raises(CertificateVerificationError):
        await connector.serve(Context(), Authority.new("localhost", nginx.tls13))
