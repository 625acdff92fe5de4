"""The TLS connector against the rama acceptor and against ``openssl s_server``."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream

from rama_core import Context, service_fn
from rama_net import (
    Authority,
    ConnectionLost,
    EstablishedConnection,
    TcpConnector,
    TcpForwarder,
    TcpListener,
)
from rama_tls import (
    CertificateAuthority,
    CertificateVerificationError,
    ClientAuth,
    ClientHello,
    HandshakeError,
    HandshakeTimeout,
    IssuingCertResolver,
    LeafCertificateCache,
    MissingServerNameError,
    NegotiatedTls,
    TlsAcceptorConfig,
    TlsAcceptorLayer,
    TlsClientConfig,
    TlsConnector,
    TlsConnectorLayer,
    TlsStream,
    self_signed,
    tls_connect,
)

pytestmark = pytest.mark.anyio


class Server:
    """Records what the acceptor put in each connection's Context."""

    def __init__(self) -> None:
        self.contexts: list[Context] = []

    def app(self) -> Any:
        @service_fn
        async def echo(ctx: Context, stream: ByteStream) -> None:
            self.contexts.append(ctx)
            try:
                while True:
                    await stream.send(await stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass

        return echo


def acceptor(server: Server, ca: CertificateAuthority, **options: Any) -> Any:
    config = TlsAcceptorConfig(
        resolver=IssuingCertResolver(LeafCertificateCache(ca)),
        alpn_protocols=("h2", "http/1.1"),
        **options,
    )
    return TlsAcceptorLayer(config).layer(server.app())


async def roundtrip(stream: ByteStream, payload: bytes = b"ping") -> bytes:
    with anyio.fail_after(5):
        await stream.send(payload)
        return await stream.receive()


async def get_page(stream: ByteStream) -> bytes:
    """Send an HTTP/1.0 GET, read the answer to EOF, close: what s_server -www serves."""
    with anyio.fail_after(10):
        await stream.send(b"GET / HTTP/1.0\r\n\r\n")
        page = b""
        try:
            while True:
                page += await stream.receive()
        except anyio.EndOfStream:
            pass
    await stream.aclose()
    return page


async def test_connects_verifies_and_records_the_result(
    serve_tcp: Any, ca: CertificateAuthority
) -> None:
    server = Server()
    connector = TlsConnector(
        config=TlsClientConfig(ca_pem=ca.cert_pem(), alpn_protocols=("http/1.1", "h2"))
    )
    async with serve_tcp(acceptor(server, ca)) as listener:
        ctx = Context()
        conn = await connector.serve(ctx, Authority.new("localhost", listener.local_addr.port))
        assert isinstance(conn.stream, TlsStream)
        assert await roundtrip(conn.stream) == b"ping"
        await conn.stream.aclose()
    info = ctx.require(NegotiatedTls)
    assert info.side == "client"
    assert info.version == "TLSv1.3"
    assert info.alpn == "h2"  # the server's preference wins
    assert info.server_name == "localhost"
    assert info.cipher.startswith("TLS_")
    assert info.session_reused is False
    peer = info.peer_certificate
    assert peer is not None
    assert peer.issuer == ca.cert.subject
    server_info = server.contexts[0].require(NegotiatedTls)
    assert (server_info.cipher, server_info.session_reused) == (info.cipher, False)
    hello = server.contexts[0].require(ClientHello)
    assert hello.server_name == "localhost"
    assert hello.alpn_protocols == (b"http/1.1", b"h2")


async def test_default_trust_store_rejects_a_private_ca(
    serve_tcp: Any, ca: CertificateAuthority
) -> None:
    async with serve_tcp(acceptor(Server(), ca)) as listener:
        with pytest.raises(CertificateVerificationError) as info:
            await TlsConnector().serve(
                Context(), Authority.new("localhost", listener.local_addr.port)
            )
    # the acceptor sends the CA with the leaf: a self-signed root nobody trusts
    assert info.value.verify_code == 19
    assert "self-signed certificate in certificate chain" in info.value.verify_message


async def test_wrong_host_name_is_a_verification_error(
    serve_tcp: Any, ca: CertificateAuthority
) -> None:
    """The SNI override is also the verified name: a cert for another name is refused."""
    server = Server()
    resolver = IssuingCertResolver(LeafCertificateCache(ca))

    class FixedName:
        async def resolve(self, ctx: Context, hello: ClientHello) -> Any:
            return resolver.cache.get("somewhere-else.test")

    config = TlsAcceptorConfig(resolver=FixedName())
    async with serve_tcp(TlsAcceptorLayer(config).layer(server.app())) as listener:
        stream = await anyio.connect_tcp("127.0.0.1", listener.local_addr.port)
        with pytest.raises(CertificateVerificationError) as info:
            await tls_connect(stream, "expected.test", TlsClientConfig(ca_pem=ca.cert_pem()))
        await stream.aclose()
    assert info.value.verify_code == 62  # hostname mismatch


async def test_no_server_name_with_verification_on_is_refused(
    serve_tcp: Any, ca: CertificateAuthority
) -> None:
    """No name to check: a leaf the trusted CA signed for another host must not pass.

    Without the guard the stdlib verifies only the chain and the handshake succeeds.
    """
    server = Server()
    elsewhere = TlsAcceptorConfig.single(ca.issue("somewhere-else.test"))
    config = TlsClientConfig(ca_pem=ca.cert_pem())
    async with serve_tcp(TlsAcceptorLayer(elsewhere).layer(server.app())) as listener:
        stream = await anyio.connect_tcp("127.0.0.1", listener.local_addr.port)
        with pytest.raises(MissingServerNameError, match="verify_hostname=False"):
            await tls_connect(stream, None, config)
        with pytest.raises(MissingServerNameError):
            await tls_connect(stream, "", config, ssl_context=config.build_ssl_context())
        with pytest.raises(MissingServerNameError):
            await TlsConnector(config=config).handshake(Context(), stream, None)
        # raised before anything was sent: the stream is still usable for a named handshake
        with pytest.raises(CertificateVerificationError) as info:
            await tls_connect(stream, "expected.test", config)
        await stream.aclose()
    assert info.value.verify_code == 62  # hostname mismatch
    assert server.contexts == []


async def test_verify_hostname_off_still_verifies_the_chain(
    serve_tcp: Any, ca: CertificateAuthority
) -> None:
    """The explicit opt-out accepts any name, but only from a trusted CA."""
    server = Server()
    elsewhere = TlsAcceptorConfig.single(ca.issue("somewhere-else.test"))
    config = TlsClientConfig(ca_pem=ca.cert_pem(), verify_hostname=False)
    async with serve_tcp(TlsAcceptorLayer(elsewhere).layer(server.app())) as listener:
        port = listener.local_addr.port
        ctx = Context()
        for name in (None, "expected.test"):
            stream = await anyio.connect_tcp("127.0.0.1", port)
            tls = await tls_connect(stream, name, config, ctx=ctx)
            assert await roundtrip(tls) == b"ping"
            await tls.aclose()
        stranger = TlsAcceptorConfig.single(CertificateAuthority.create("nobody").issue("x.test"))
        async with serve_tcp(TlsAcceptorLayer(stranger).layer(server.app())) as untrusted:
            stream = await anyio.connect_tcp("127.0.0.1", untrusted.local_addr.port)
            with pytest.raises(CertificateVerificationError) as info:
                await tls_connect(stream, None, config)
            await stream.aclose()
    peer = ctx.require(NegotiatedTls).peer_certificate
    assert peer is not None
    assert peer.issuer == ca.cert.subject
    assert [c.require(ClientHello).server_name for c in server.contexts] == [None, "expected.test"]
    assert info.value.verify_code == 19  # self-signed certificate in certificate chain


async def test_ip_targets_are_verified_against_ip_sans(
    serve_tcp: Any, ca: CertificateAuthority
) -> None:
    """An IP target matches IP SANs only: a leaf with just DNS names is refused."""
    dns_only = TlsAcceptorConfig.single(ca.issue("localhost", "127.0.0.1.example.test"))
    config = TlsClientConfig(ca_pem=ca.cert_pem())
    async with serve_tcp(TlsAcceptorLayer(dns_only).layer(Server().app())) as listener:
        with pytest.raises(CertificateVerificationError) as info:
            await TlsConnector(config=config).serve(
                Context(), Authority.new("127.0.0.1", listener.local_addr.port)
            )
    assert info.value.verify_code == 64  # IP address mismatch

    # a bracketed IPv6 literal is an IP, not a host name to send as SNI
    server = Server()
    with_ip = TlsAcceptorConfig.single(ca.issue("::1"))
    listener6 = TcpListener.bind("[::1]:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener6.serve, TlsAcceptorLayer(with_ip).layer(server.app()))
        stream = await anyio.connect_tcp("::1", listener6.local_addr.port)
        ctx = Context()
        tls = await tls_connect(stream, "[::1]", config, ctx=ctx)
        assert await roundtrip(tls) == b"ping"
        await tls.aclose()
        listener6.close()
        tg.cancel_scope.cancel()
    assert ctx.require(NegotiatedTls).server_name == "::1"
    assert server.contexts[0].require(ClientHello).server_name is None  # no SNI for IPs


async def test_sni_override_and_ip_targets(serve_tcp: Any, ca: CertificateAuthority) -> None:
    server = Server()
    async with serve_tcp(acceptor(server, ca)) as listener:
        port = listener.local_addr.port
        # an IP target: no SNI is sent, the certificate's IP SAN is verified
        plain = TlsConnector(config=TlsClientConfig(ca_pem=ca.cert_pem()))
        conn = await plain.serve(Context(), Authority.new("127.0.0.1", port))
        assert await roundtrip(conn.stream) == b"ping"
        await conn.stream.aclose()
        override = TlsConnector(
            config=TlsClientConfig(ca_pem=ca.cert_pem(), server_name="api.example.test")
        )
        conn = await override.serve(Context(), Authority.new("127.0.0.1", port))
        assert await roundtrip(conn.stream) == b"ping"
        await conn.stream.aclose()
    names = [c.require(ClientHello).server_name for c in server.contexts]
    assert names == [None, "api.example.test"]


async def test_ca_file_bundle_on_disk(
    serve_tcp: Any, ca: CertificateAuthority, tmp_path: Path
) -> None:
    """``ca_file``: a PEM bundle of several CAs; with ``ca_pem`` both are trusted."""
    unrelated, second = CertificateAuthority.create("unrelated"), CertificateAuthority.create("2nd")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(unrelated.cert_pem() + ca.cert_pem())
    only_unrelated = tmp_path / "unrelated.pem"
    only_unrelated.write_bytes(unrelated.cert_pem())
    by_second = TlsAcceptorConfig.single(second.issue("localhost"))
    async with (
        serve_tcp(acceptor(Server(), ca)) as first_server,
        serve_tcp(TlsAcceptorLayer(by_second).layer(Server().app())) as second_server,
    ):
        at_first = Authority.new("localhost", first_server.local_addr.port)
        at_second = Authority.new("localhost", second_server.local_addr.port)
        for ca_file in (bundle, str(bundle)):
            conn = await TlsConnector(config=TlsClientConfig(ca_file=ca_file)).serve(
                Context(), at_first
            )
            assert await roundtrip(conn.stream) == b"ping"
            await conn.stream.aclose()
        with pytest.raises(CertificateVerificationError) as info:
            await TlsConnector(config=TlsClientConfig(ca_file=only_unrelated)).serve(
                Context(), at_first
            )
        assert info.value.verify_code == 19  # our CA, sent in the chain, is not in the file
        both = TlsConnector(config=TlsClientConfig(ca_file=bundle, ca_pem=second.cert_pem()))
        for target in (at_first, at_second):
            conn = await both.serve(Context(), target)
            assert await roundtrip(conn.stream) == b"ping"
            await conn.stream.aclose()
        with pytest.raises(CertificateVerificationError):
            await TlsConnector(config=TlsClientConfig(ca_file=bundle)).serve(Context(), at_second)


async def test_verify_off_accepts_anything(serve_tcp: Any) -> None:
    stranger = CertificateAuthority.create("not trusted")
    async with serve_tcp(acceptor(Server(), stranger)) as listener:
        conn = await TlsConnector(config=TlsClientConfig(verify=False)).serve(
            Context(), Authority.new("localhost", listener.local_addr.port)
        )
        assert await roundtrip(conn.stream) == b"ping"
        await conn.stream.aclose()


async def test_client_certificate(serve_tcp: Any, ca: CertificateAuthority) -> None:
    client_ca = CertificateAuthority.create("clients")
    me = client_ca.issue("me.example.test")
    server = Server()
    app = acceptor(server, ca, client_auth=ClientAuth(client_ca.cert_pem()))
    async with serve_tcp(app) as listener:
        target = Authority.new("localhost", listener.local_addr.port)
        with_cert = TlsConnector(config=TlsClientConfig(ca_pem=ca.cert_pem(), client_cert=me))
        conn = await with_cert.serve(Context(), target)
        assert await roundtrip(conn.stream) == b"ping"
        await conn.stream.aclose()
        # TLS 1.3: the client's handshake ends before the server checks; the alert comes next
        without = TlsConnector(config=TlsClientConfig(ca_pem=ca.cert_pem()))
        conn = await without.serve(Context(), target)
        # after the handshake the alert ends the connection: ConnectionLost, cause kept
        with pytest.raises(ConnectionLost, match="CERTIFICATE_REQUIRED") as lost:
            await roundtrip(conn.stream)
        assert isinstance(lost.value.__cause__, ssl.SSLError)
        await conn.stream.aclose()
    peer = server.contexts[0].require(NegotiatedTls).peer_certificate
    assert peer is not None
    assert peer.subject == me.cert.subject
    assert len(server.contexts) == 1


async def test_through_a_relay_and_tls_in_tls(serve_tcp: Any, ca: CertificateAuthority) -> None:
    """TLS over any stream: through a TCP relay, and nested in another TLS session."""
    server = Server()
    async with serve_tcp(acceptor(server, ca)) as inner:
        relay_target = f"127.0.0.1:{inner.local_addr.port}"
        async with serve_tcp(TcpForwarder(relay_target, idle_timeout=5)) as relay:
            layered = TlsConnectorLayer(TlsClientConfig(ca_pem=ca.cert_pem())).layer(
                _Redirect(relay.local_addr.port)
            )
            conn = await layered.serve(Context(), Authority.new("localhost", 443))
            assert await roundtrip(conn.stream) == b"ping"
            await conn.stream.aclose()
        # a TLS terminating relay (the acceptor in front of a forwarder) carries TLS inside TLS
        outer_app = TlsAcceptorLayer(
            TlsAcceptorConfig(resolver=IssuingCertResolver(LeafCertificateCache(ca)))
        ).layer(TcpForwarder(relay_target, idle_timeout=5))
        async with serve_tcp(outer_app) as outer:
            tcp = await anyio.connect_tcp("127.0.0.1", outer.local_addr.port)
            config = TlsClientConfig(ca_pem=ca.cert_pem())
            first = await tls_connect(tcp, "relay.example.test", config)
            ctx = Context()
            second = await tls_connect(first, "localhost", config, ctx=ctx)
            assert await roundtrip(second, b"nested") == b"nested"
            await second.aclose()
    assert ctx.require(NegotiatedTls).server_name == "localhost"
    assert [c.require(ClientHello).server_name for c in server.contexts] == ["localhost"] * 2


class _Redirect:
    """A connector that dials a fixed port whatever the authority (like a proxy would)."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def serve(self, ctx: Context, req: Authority) -> EstablishedConnection:
        conn = await TcpConnector().serve(ctx, Authority.new("127.0.0.1", self.port))
        return EstablishedConnection(conn.stream, req, conn.info)


async def test_silent_server_times_out(serve_tcp: Any) -> None:
    closed = anyio.Event()

    @service_fn
    async def silent(ctx: Context, stream: ByteStream) -> None:
        with anyio.fail_after(5):
            while True:
                try:
                    await stream.receive()  # the ClientHello, then EOF
                except anyio.EndOfStream:
                    closed.set()
                    return

    async with serve_tcp(silent) as listener:
        connector = TlsConnector(config=TlsClientConfig(handshake_timeout=0.3))
        started = anyio.current_time()
        with pytest.raises(HandshakeTimeout):
            await connector.serve(Context(), Authority.new("localhost", listener.local_addr.port))
        assert anyio.current_time() - started < 2
        with anyio.fail_after(2):
            await closed.wait()  # the connector closed the TCP connection it opened


async def test_plaintext_server_is_a_handshake_error(serve_tcp: Any) -> None:
    @service_fn
    async def http(ctx: Context, stream: ByteStream) -> None:
        await stream.receive()
        await stream.send(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    async with serve_tcp(http) as listener:
        with pytest.raises(HandshakeError) as info:
            await TlsConnector().serve(
                Context(), Authority.new("localhost", listener.local_addr.port)
            )
    assert not isinstance(info.value, CertificateVerificationError)


# -- against openssl s_server ------------------------------------------------------------------
@pytest.fixture
def s_server(tmp_path: Path, ca: CertificateAuthority, require_peer: Callable[[str], str]) -> Any:
    processes: list[subprocess.Popen[str]] = []

    def start(*extra: str) -> int:
        leaf = ca.issue("localhost", "127.0.0.1")
        leaf.save(tmp_path / "leaf.pem", tmp_path / "leaf.key")
        proc = subprocess.Popen(
            [
                require_peer("openssl"),
                "s_server",
                "-accept",
                "0",
                "-cert",
                str(tmp_path / "leaf.pem"),
                "-key",
                str(tmp_path / "leaf.key"),
                "-www",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        processes.append(proc)
        assert proc.stdout is not None
        for _ in range(5):
            line = proc.stdout.readline()
            if line.startswith("ACCEPT"):
                return int(line.rsplit(":", 1)[1])
        raise AssertionError("s_server did not start")

    yield start
    for proc in processes:
        proc.kill()
        proc.wait(timeout=5)


@pytest.mark.parametrize(
    ("version", "expected"),
    [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")],
)
async def test_against_openssl_s_server(
    s_server: Any, ca: CertificateAuthority, version: ssl.TLSVersion, expected: str
) -> None:
    port = s_server("-alpn", "h2,http/1.1")
    config = TlsClientConfig(
        ca_pem=ca.cert_pem(),
        alpn_protocols=("http/1.1",),
        minimum_version=version,
        maximum_version=version,
    )
    ctx = Context()
    conn = await TlsConnector(config=config).serve(ctx, Authority.new("localhost", port))
    page = await get_page(conn.stream)
    info = ctx.require(NegotiatedTls)
    assert info.version == expected
    assert info.alpn == "http/1.1"
    assert page.startswith(b"HTTP/1.0 200 ok")
    assert f"Protocol  : {expected}".encode() in page
    # s_server's own report of the cipher and of a full (not resumed) handshake
    assert info.cipher
    assert f"{expected}, Cipher is {info.cipher}\n".encode() in page
    assert b"---\nNew, " in page
    assert info.session_reused is False  # the connector keeps no sessions to resume


async def test_pinned_tls12_cipher_against_openssl_s_server(
    s_server: Any, ca: CertificateAuthority
) -> None:
    port = s_server()
    config = TlsClientConfig(
        ca_pem=ca.cert_pem(),
        maximum_version=ssl.TLSVersion.TLSv1_2,
        ciphers="ECDHE-ECDSA-CHACHA20-POLY1305",
    )
    ctx = Context()
    conn = await TlsConnector(config=config).serve(ctx, Authority.new("localhost", port))
    page = await get_page(conn.stream)
    assert ctx.require(NegotiatedTls).cipher == "ECDHE-ECDSA-CHACHA20-POLY1305"
    assert b"TLSv1.2, Cipher is ECDHE-ECDSA-CHACHA20-POLY1305\n" in page


async def test_client_cert_against_openssl_s_server(
    s_server: Any, ca: CertificateAuthority, tmp_path: Path
) -> None:
    client_ca = CertificateAuthority.create("clients")
    (tmp_path / "clients.pem").write_bytes(client_ca.cert_pem())
    port = s_server("-Verify", "1", "-CAfile", str(tmp_path / "clients.pem"))
    me = client_ca.issue("me.example.test")
    config = TlsClientConfig(ca_pem=ca.cert_pem(), client_cert=me)
    conn = await TlsConnector(config=config).serve(Context(), Authority.new("127.0.0.1", port))
    page = await get_page(conn.stream)
    assert page.startswith(b"HTTP/1.0 200 ok")
    assert b"CN = me.example.test" in page or b"CN=me.example.test" in page


async def test_self_signed_certificate_as_its_own_trust_anchor(serve_tcp: Any) -> None:
    cert = self_signed()
    server = Server()
    app = TlsAcceptorLayer(TlsAcceptorConfig.single(cert)).layer(server.app())
    async with serve_tcp(app) as listener:
        for host in ("localhost", "127.0.0.1"):
            connector = TlsConnector(config=TlsClientConfig(ca_pem=cert.cert_pem()))
            conn = await connector.serve(Context(), Authority.new(host, listener.local_addr.port))
            assert await roundtrip(conn.stream) == b"ping"
            await conn.stream.aclose()


async def test_concurrent_handshakes_share_issued_certificates(
    serve_tcp: Any, ca: CertificateAuthority
) -> None:
    server = Server()
    cache = LeafCertificateCache(ca, max_size=8)
    config = TlsAcceptorConfig(resolver=IssuingCertResolver(cache))
    names = [f"n{i % 4}.example.test" for i in range(40)]
    received: list[bytes] = []
    async with serve_tcp(TlsAcceptorLayer(config).layer(server.app())) as listener:
        port = listener.local_addr.port

        async def one(name: str) -> None:
            connector = TlsConnector(
                _Redirect(port), TlsClientConfig(ca_pem=ca.cert_pem(), server_name=name)
            )
            conn = await connector.serve(Context(), Authority.new(name, 443))
            received.append(await roundtrip(conn.stream, name.encode()))
            await conn.stream.aclose()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for name in names:
                    tg.start_soon(one, name)
    assert sorted(received) == sorted(n.encode() for n in names)
    assert cache.issued == 4
    assert sorted(c.require(ClientHello).server_name or "" for c in server.contexts) == sorted(
        names
    )


async def test_concurrent_handshakes_for_one_new_name_issue_one_certificate(
    serve_tcp: Any, ca: CertificateAuthority
) -> None:
    """Issuance runs in a worker thread; handshakes arriving meanwhile wait for it."""
    server = Server()
    cache = LeafCertificateCache(ca, max_size=8, key_type="rsa")
    config = TlsAcceptorConfig(resolver=IssuingCertResolver(cache))
    serials: list[int] = []
    async with serve_tcp(TlsAcceptorLayer(config).layer(server.app())) as listener:
        connector = TlsConnector(
            _Redirect(listener.local_addr.port),
            TlsClientConfig(ca_pem=ca.cert_pem(), server_name="fresh.example.test"),
        )

        async def one() -> None:
            ctx = Context()
            conn = await connector.serve(ctx, Authority.new("fresh.example.test", 443))
            assert await roundtrip(conn.stream) == b"ping"
            await conn.stream.aclose()
            peer = ctx.require(NegotiatedTls).peer_certificate
            assert peer is not None
            serials.append(peer.serial_number)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(one)
    assert cache.issued == 1
    assert len(serials) == 20
    assert len(set(serials)) == 1
