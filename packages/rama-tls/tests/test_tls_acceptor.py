"""The TLS acceptor against real clients (curl, openssl s_client, httpx, Python ssl) on loopback."""

from __future__ import annotations

import json
import random
import re
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import ByteStream

from rama_core import Context, service_fn
from rama_net import SocketInfo
from rama_tls import (
    CertificateAuthority,
    CertificateVerificationError,
    ClientAuth,
    ClientHello,
    HandshakeError,
    HandshakeTimeout,
    IssuingCertResolver,
    LeafCertificateCache,
    NegotiatedTls,
    NotTlsError,
    StaticCertResolver,
    TlsAcceptorConfig,
    TlsAcceptorLayer,
    TlsAcceptorService,
    TlsError,
    encode_handshake_records,
    ja3,
    ja4,
    parse_client_hello_records,
)
from rama_tls._record import ClientHelloComplete

pytestmark = pytest.mark.anyio

Run = Callable[..., Awaitable[Any]]


class Seen:
    """What the inner service observed, and the errors the acceptor raised."""

    def __init__(self) -> None:
        self.infos: list[NegotiatedTls] = []
        self.hellos: list[ClientHello] = []
        self.errors: list[BaseException] = []


async def _read_head(stream: ByteStream) -> bytes:
    data = b""
    with anyio.fail_after(5):
        while b"\r\n\r\n" not in data:
            data += await stream.receive()
    return data


def info_app(seen: Seen) -> Any:
    """HTTP/1.1 app answering with what the handshake negotiated (h2 connections are closed)."""

    @service_fn
    async def app(ctx: Context, stream: ByteStream) -> None:
        info = ctx.require(NegotiatedTls)
        hello = ctx.require(ClientHello)
        seen.infos.append(info)
        seen.hellos.append(hello)
        if info.alpn == "h2":
            return
        await _read_head(stream)
        cert = info.peer_certificate
        body = json.dumps(
            {
                "version": info.version,
                "cipher": info.cipher,
                "alpn": info.alpn,
                "sni": info.server_name,
                "ja3": ja3(hello).hash,
                "ja4": str(ja4(hello)),
                "client_cert": cert.subject.rfc4514_string() if cert is not None else None,
            }
        ).encode()
        head = f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
        await stream.send(head.encode() + body)

    return app


def recording(acceptor: TlsAcceptorService[Any], seen: Seen) -> Any:
    """Wrap the acceptor to record the typed errors the listener would only log."""

    @service_fn
    async def svc(ctx: Context, stream: ByteStream) -> None:
        try:
            await acceptor.serve(ctx, stream)
        except Exception as exc:
            seen.errors.append(exc)
            raise

    return svc


def acceptor_for(config: TlsAcceptorConfig, seen: Seen) -> Any:
    return recording(TlsAcceptorLayer(config).layer(info_app(seen)), seen)


def issuing(ca: CertificateAuthority, **options: Any) -> TlsAcceptorConfig:
    cache = LeafCertificateCache(ca, max_size=16)
    return TlsAcceptorConfig(
        resolver=IssuingCertResolver(cache), alpn_protocols=("h2", "http/1.1"), **options
    )


async def curl(run_async: Run, curl_path: str, port: int, *args: str) -> Any:
    return await run_async(
        [curl_path, "-sS", "--max-time", "10", "--http1.1", *args, f"https://localhost:{port}/"]
    )


# -- real clients ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "version"),
    [(["--tlsv1.2", "--tls-max", "1.2"], "TLSv1.2"), (["--tlsv1.3"], "TLSv1.3")],
)
async def test_curl_versions_and_context(
    serve_tcp: Any,
    ca: CertificateAuthority,
    ca_file: Path,
    run_async: Run,
    require_peer: Callable[[str], str],
    flags: list[str],
    version: str,
) -> None:
    seen = Seen()
    async with serve_tcp(acceptor_for(issuing(ca), seen)) as listener:
        port = listener.local_addr.port
        out = await curl(
            run_async, require_peer("curl"), port, "--cacert", str(ca_file), "--http1.1", *flags
        )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["version"] == version
    assert answer["alpn"] == "http/1.1"
    assert answer["sni"] == "localhost"
    hello = seen.hellos[0]
    assert hello.server_name == "localhost"
    assert b"http/1.1" in hello.alpn_protocols
    assert answer["ja3"] == ja3(hello).hash
    assert answer["ja4"].startswith("t1")
    assert seen.errors == []


@pytest.mark.parametrize(
    ("flags", "version"),
    [(["--tlsv1.2", "--tls-max", "1.2"], "TLSv1.2"), (["--tlsv1.3"], "TLSv1.3")],
)
async def test_cipher_and_session_resumption_with_curl(
    serve_tcp: Any,
    ca: CertificateAuthority,
    ca_file: Path,
    run_async: Run,
    require_peer: Callable[[str], str],
    flags: list[str],
    version: str,
) -> None:
    """Two URLs, two connections (the app closes each): curl resumes the first session."""
    seen = Seen()
    async with serve_tcp(acceptor_for(issuing(ca), seen)) as listener:
        url = f"https://localhost:{listener.local_addr.port}"
        out = await run_async(
            [
                require_peer("curl"),
                "-sSv",
                "--max-time",
                "10",
                "--http1.1",
                "--cacert",
                str(ca_file),
                *flags,
                f"{url}/one",
                f"{url}/two",
            ]
        )
    assert out.returncode == 0, out.stderr
    assert "SSL re-using session ID" in out.stderr
    ciphers = re.findall(rf"SSL connection using {version} / (\S+)", out.stderr)
    assert len(ciphers) == 2
    assert [(i.version, i.cipher) for i in seen.infos] == [(version, c) for c in ciphers]
    assert [i.session_reused for i in seen.infos] == [False, True]
    bodies = out.stdout.replace("}{", "}\n{").splitlines()  # the two JSON answers
    assert [json.loads(body)["cipher"] for body in bodies] == ciphers
    assert seen.errors == []


async def test_curl_alpn_h2(
    serve_tcp: Any,
    ca: CertificateAuthority,
    ca_file: Path,
    run_async: Run,
    require_peer: Callable[[str], str],
) -> None:
    seen = Seen()
    async with serve_tcp(acceptor_for(issuing(ca), seen)) as listener:
        out = await curl(
            run_async,
            require_peer("curl"),
            listener.local_addr.port,
            "-v",
            "--cacert",
            str(ca_file),
            "--http2",
        )
    # the test app closes h2 connections right away: only the negotiation matters here
    assert "ALPN: server accepted h2" in out.stderr
    assert [i.alpn for i in seen.infos] == ["h2"]
    assert seen.hellos[0].alpn_protocols[:1] == (b"h2",)


async def test_openssl_s_client_sni_alpn(
    serve_tcp: Any,
    ca: CertificateAuthority,
    ca_file: Path,
    run_async: Run,
    require_peer: Callable[[str], str],
) -> None:
    seen = Seen()
    async with serve_tcp(acceptor_for(issuing(ca), seen)) as listener:
        port = listener.local_addr.port
        out = await run_async(
            [
                require_peer("openssl"),
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-servername",
                "shop.example.test",
                "-alpn",
                "http/1.1",
                "-CAfile",
                str(ca_file),
                "-verify_return_error",
                "-verify_hostname",
                "shop.example.test",
            ]
        )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Verify return code: 0 (ok)" in out.stdout
    assert "ALPN protocol: http/1.1" in out.stdout
    assert "subject=CN = shop.example.test" in out.stdout
    assert seen.hellos[0].server_name == "shop.example.test"
    assert seen.infos[0].alpn == "http/1.1"


async def test_httpx_client(serve_tcp: Any, ca: CertificateAuthority) -> None:
    seen = Seen()
    verify = ssl.create_default_context(cadata=ca.cert_pem().decode())
    async with serve_tcp(acceptor_for(issuing(ca), seen)) as listener:
        port = listener.local_addr.port
        async with httpx.AsyncClient(verify=verify, timeout=10) as client:
            response = await client.get(f"https://localhost:{port}/")
    assert response.status_code == 200
    answer = response.json()
    assert answer["version"] == "TLSv1.3"
    assert answer["alpn"] == "http/1.1"
    assert answer["client_cert"] is None


# -- certificate selection -----------------------------------------------------------------
async def test_issues_certificates_on_demand_per_sni(
    serve_tcp: Any,
    ca: CertificateAuthority,
    ca_file: Path,
    run_async: Run,
    require_peer: Callable[[str], str],
) -> None:
    cache = LeafCertificateCache(ca, max_size=8)
    config = TlsAcceptorConfig(resolver=IssuingCertResolver(cache))
    seen = Seen()
    names = ["alpha.example.test", "beta.example.test", "alpha.example.test"]
    async with serve_tcp(acceptor_for(config, seen)) as listener:
        port = listener.local_addr.port
        for name in names:
            out = await run_async(
                [
                    require_peer("curl"),
                    "-sS",
                    "--max-time",
                    "10",
                    "--cacert",
                    str(ca_file),
                    "--resolve",
                    f"{name}:{port}:127.0.0.1",
                    f"https://{name}:{port}/",
                ]
            )
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["sni"] == name
    assert cache.issued == 2
    assert "alpha.example.test" in cache
    assert "beta.example.test" in cache


async def test_without_sni_issues_for_the_local_ip(
    serve_tcp: Any, ca: CertificateAuthority, ca_file: Path, run_async: Run, require_peer: Any
) -> None:
    seen = Seen()
    async with serve_tcp(acceptor_for(issuing(ca), seen)) as listener:
        port = listener.local_addr.port
        out = await run_async(
            [
                require_peer("curl"),
                "-sS",
                "--http1.1",
                "--cacert",
                str(ca_file),
                f"https://127.0.0.1:{port}/",
            ]
        )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["sni"] is None  # curl sends no SNI for IP literals


async def test_static_resolver_by_name_and_refusal(
    serve_tcp: Any, ca: CertificateAuthority, ca_file: Path, run_async: Run, require_peer: Any
) -> None:
    a, wild = ca.issue("a.example.test"), ca.issue("*.wild.example.test")
    resolver = StaticCertResolver(by_name={"a.example.test": a, "*.wild.example.test": wild})
    seen = Seen()
    async with serve_tcp(acceptor_for(TlsAcceptorConfig(resolver=resolver), seen)) as listener:
        port = listener.local_addr.port

        async def fetch(name: str) -> Any:
            return await run_async(
                [
                    require_peer("curl"),
                    "-sS",
                    "--max-time",
                    "10",
                    "--cacert",
                    str(ca_file),
                    "--resolve",
                    f"{name}:{port}:127.0.0.1",
                    f"https://{name}:{port}/",
                ]
            )

        assert (await fetch("a.example.test")).returncode == 0
        assert (await fetch("x.wild.example.test")).returncode == 0
        refused = await fetch("unknown.example.test")
    assert refused.returncode != 0
    assert len(seen.errors) == 1
    assert isinstance(seen.errors[0], HandshakeError)
    assert "unknown.example.test" in str(seen.errors[0])
    assert [i.server_name for i in seen.infos] == ["a.example.test", "x.wild.example.test"]


# -- mTLS --------------------------------------------------------------------------------------
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_mtls_with_openssl_and_curl(
    serve_tcp: Any,
    ca: CertificateAuthority,
    ca_file: Path,
    tmp_path: Path,
    run_async: Run,
    require_peer: Callable[[str], str],
) -> None:
    client_ca = CertificateAuthority.create("clients CA")
    client = client_ca.issue("client-7.example.test")
    client.save(tmp_path / "client.pem", tmp_path / "client.key")
    stranger = CertificateAuthority.create("other CA").issue("stranger.example.test")
    stranger.save(tmp_path / "stranger.pem", tmp_path / "stranger.key")
    config = issuing(ca, client_auth=ClientAuth(client_ca.cert_pem()))
    seen = Seen()
    openssl = require_peer("openssl")
    async with serve_tcp(acceptor_for(config, seen)) as listener:
        port = listener.local_addr.port
        base = [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost"]
        base += ["-CAfile", str(ca_file)]
        good = await run_async(
            [*base, "-cert", str(tmp_path / "client.pem"), "-key", str(tmp_path / "client.key")]
        )
        with_curl = await run_async(
            [
                require_peer("curl"),
                "-sS",
                "--http1.1",
                "--cacert",
                str(ca_file),
                "--cert",
                str(tmp_path / "client.pem"),
                "--key",
                str(tmp_path / "client.key"),
                f"https://localhost:{port}/",
            ]
        )
        # TLS 1.3 clients learn about a rejected certificate after their Finished;
        # reading until the server closes makes s_client report the server's alert
        missing = await run_async([*base, "-ign_eof"], stdin=b"GET / HTTP/1.0\r\n\r\n")
        untrusted = await run_async(
            [
                *base,
                "-ign_eof",
                "-cert",
                str(tmp_path / "stranger.pem"),
                "-key",
                str(tmp_path / "stranger.key"),
            ],
            stdin=b"GET / HTTP/1.0\r\n\r\n",
        )
    assert good.returncode == 0, good.stdout + good.stderr
    assert with_curl.returncode == 0, with_curl.stderr
    assert json.loads(with_curl.stdout)["client_cert"] == "CN=client-7.example.test"
    peer = seen.infos[0].peer_certificate
    assert peer is not None
    assert peer.subject == client.cert.subject
    assert "certificate required" in missing.stderr
    assert "unknown ca" in untrusted.stderr
    # the first error is s_client closing before sending a request (the app's EndOfStream)
    assert isinstance(seen.errors[0], anyio.EndOfStream)
    assert type(seen.errors[1]) is HandshakeError
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in str(seen.errors[1])
    assert isinstance(seen.errors[2], CertificateVerificationError)
    assert seen.errors[2].verify_code == 20  # unable to get local issuer certificate
    assert len(seen.errors) == 3
    assert len(seen.infos) == 2


async def test_optional_client_auth_accepts_anonymous_clients(
    serve_tcp: Any, ca: CertificateAuthority, ca_file: Path, run_async: Run, require_peer: Any
) -> None:
    client_ca = CertificateAuthority.create("clients CA")
    config = issuing(ca, client_auth=ClientAuth(client_ca.cert_pem(), required=False))
    seen = Seen()
    async with serve_tcp(acceptor_for(config, seen)) as listener:
        out = await curl(
            run_async, require_peer("curl"), listener.local_addr.port, "--cacert", str(ca_file)
        )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["client_cert"] is None


# -- bad and slow peers never affect others ----------------------------------------------
async def test_garbage_and_stalled_handshakes_do_not_affect_others(
    serve_tcp: Any, ca: CertificateAuthority, ca_file: Path, run_async: Run, require_peer: Any
) -> None:
    seen = Seen()
    config = issuing(ca, handshake_timeout=2.0)
    async with serve_tcp(acceptor_for(config, seen)) as listener:
        port = listener.local_addr.port
        junk = await anyio.connect_tcp("127.0.0.1", port)
        await junk.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        staller = await anyio.connect_tcp("127.0.0.1", port)
        await staller.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # hello, cut short
        silent = await anyio.connect_tcp("127.0.0.1", port)
        started = anyio.current_time()
        # both misbehaving connections are still open while a good client is served
        out = await curl(run_async, require_peer("curl"), port, "--cacert", str(ca_file))
        assert out.returncode == 0, out.stderr
        assert (
            anyio.current_time() - started < 2.0
        )  # served while both bad peers were still connected
        with anyio.fail_after(1):
            assert await _receive_eof(junk)
        with anyio.fail_after(5):
            assert await _receive_eof(staller)
            assert await _receive_eof(silent)
        waited = anyio.current_time() - started
        for s in (junk, staller, silent):
            await s.aclose()
    assert 1.9 <= waited < 5
    kinds = sorted(type(e).__name__ for e in seen.errors)
    assert kinds == ["HandshakeTimeout", "HandshakeTimeout", "NotTlsError"]
    assert len(seen.infos) == 1


async def _receive_eof(stream: ByteStream) -> bool:
    try:
        while await stream.receive():
            pass
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
        return True
    return False


async def test_failed_handshake_is_typed(
    serve_tcp: Any, ca: CertificateAuthority, run_async: Run, require_peer: Any
) -> None:
    """A client that offers only TLS 1.1 fails alone, with a HandshakeError."""
    seen = Seen()
    async with serve_tcp(acceptor_for(issuing(ca), seen)) as listener:
        port = listener.local_addr.port
        old = await run_async(
            [require_peer("openssl"), "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_1"]
        )
        # the listener still serves after the failure
        junk = await anyio.connect_tcp("127.0.0.1", port)
        await junk.send(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00")  # a ServerHello type
        with anyio.fail_after(2):
            assert await _receive_eof(junk)
        await junk.aclose()
    assert old.returncode != 0
    assert isinstance(seen.errors[0], HandshakeError)
    assert not isinstance(seen.errors[0], HandshakeTimeout)
    assert isinstance(seen.errors[1], NotTlsError)


# -- ClientHello capture --------------------------------------------------------------------
@pytest.mark.parametrize("fragment", [1, 64, 700])
async def test_client_hello_split_over_records_and_segments(
    serve_tcp: Any, ca: CertificateAuthority, fragment: int
) -> None:
    """A hello re-framed into many records, sent in tiny TCP writes, is captured and replayed."""
    seen = Seen()
    async with serve_tcp(acceptor_for(issuing(ca), seen)) as listener:
        client_ctx = ssl.create_default_context(cadata=ca.cert_pem().decode())
        client_ctx.set_alpn_protocols(["http/1.1"])
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = client_ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        original = outgoing.read()
        found = parse_client_hello_records(original)
        assert isinstance(found, ClientHelloComplete)
        reframed = encode_handshake_records(found.client_hello.raw, max_fragment=fragment)
        assert reframed.count(b"\x16\x03\x01") >= len(found.client_hello.raw) // fragment
        sock = await anyio.connect_tcp("127.0.0.1", listener.local_addr.port)
        with anyio.fail_after(10):
            for i in range(0, len(reframed), 97):
                await sock.send(reframed[i : i + 97])
                await anyio.sleep(0.001)
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if outgoing.pending:
                        await sock.send(outgoing.read())
                    incoming.write(await sock.receive())
            if outgoing.pending:
                await sock.send(outgoing.read())
            tls.write(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
            await sock.send(outgoing.read())
            response = b""
            while b"}" not in response:
                try:
                    response += tls.read(65536)
                except ssl.SSLWantReadError:
                    incoming.write(await sock.receive())
        await sock.aclose()
    assert response.startswith(b"HTTP/1.1 200 OK")
    assert seen.hellos[0] == found.client_hello
    assert seen.hellos[0].record_version == 0x0301
    assert seen.infos[0].alpn == "http/1.1"


async def test_handshake_method_fills_the_context(ca: CertificateAuthority, serve_tcp: Any) -> None:
    """``handshake`` alone (no inner service) for stacks that drive the stream themselves."""
    acceptor = TlsAcceptorService(info_app(Seen()), issuing(ca))
    results: list[Context] = []

    @service_fn
    async def direct(ctx: Context, stream: ByteStream) -> None:
        tls = await acceptor.handshake(ctx, stream)
        await tls.send(b"hi " + (ctx.require(ClientHello).server_name or "").encode())
        await tls.aclose()
        results.append(ctx)

    async with serve_tcp(direct) as listener:
        port = listener.local_addr.port
        client_ctx = ssl.create_default_context(cadata=ca.cert_pem().decode())
        stream = await anyio.connect_tcp(
            "127.0.0.1", port, ssl_context=client_ctx, tls_hostname="localhost"
        )
        with anyio.fail_after(5):
            assert await stream.receive() == b"hi localhost"
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()  # close_notify was sent
        await stream.aclose()
    ctx = results[0]
    assert ctx.require(NegotiatedTls).side == "server"
    assert ctx.require(SocketInfo).local_addr.port == port


async def test_invalid_sni_is_refused_not_signed(serve_tcp: Any, ca: CertificateAuthority) -> None:
    cache = LeafCertificateCache(ca, max_size=4)
    seen = Seen()
    config = TlsAcceptorConfig(resolver=IssuingCertResolver(cache))
    async with serve_tcp(acceptor_for(config, seen)) as listener:
        for name in ("bad name!", "*.example.test"):
            client_ctx = ssl.create_default_context(cadata=ca.cert_pem().decode())
            with (
                anyio.fail_after(5),
                pytest.raises((OSError, anyio.BrokenResourceError, anyio.EndOfStream)),
            ):
                await anyio.connect_tcp(
                    "127.0.0.1", listener.local_addr.port, ssl_context=client_ctx, tls_hostname=name
                )
    assert cache.issued == 0
    assert len(seen.errors) == 2
    for error in seen.errors:
        assert isinstance(error, HandshakeError)
        assert "refusing to issue" in str(error)


async def test_mutated_client_hellos_only_raise_typed_errors(
    serve_tcp: Any, ca: CertificateAuthority
) -> None:
    """Seeded fuzzing over real sockets: corrupt a real hello; every failure is a TlsError."""
    client_ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    with pytest.raises(ssl.SSLWantReadError):
        client_ctx.wrap_bio(incoming, outgoing, server_hostname="fuzz.test").do_handshake()
    original = outgoing.read()
    rng = random.Random(4)
    seen = Seen()
    async with serve_tcp(acceptor_for(issuing(ca, handshake_timeout=2), seen)) as listener:
        port = listener.local_addr.port

        async def attempt(data: bytes) -> None:
            sock = await anyio.connect_tcp("127.0.0.1", port)
            with anyio.fail_after(5):
                await sock.send(data)
                await sock.send_eof()
                await _receive_eof(sock)
            await sock.aclose()

        for _ in range(60):
            data = bytearray(original)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            cut = rng.choice([len(data), rng.randrange(1, len(data))])
            await attempt(bytes(data[:cut]))
        fuzzed = list(seen.errors)
        good = await anyio.connect_tcp(
            "127.0.0.1",
            port,
            ssl_context=ssl.create_default_context(cadata=ca.cert_pem().decode()),
            tls_hostname="localhost",
        )
        await good.aclose()
    assert len(fuzzed) == 60
    unexpected = [e for e in fuzzed if not isinstance(e, TlsError)]
    assert unexpected == []
    assert {type(e).__name__ for e in fuzzed} >= {"MalformedClientHello", "HandshakeError"}
    assert len(seen.infos) == 1  # the well-behaved client after all that


async def test_plaintext_fallback_on_the_same_port(
    serve_tcp: Any, ca: CertificateAuthority, ca_file: Path, run_async: Run, require_peer: Any
) -> None:
    @service_fn
    async def plain(ctx: Context, stream: ByteStream) -> None:
        head = await _read_head(stream)
        assert not ctx.contains(ClientHello)
        body = b"plain: " + head.split(b"\r\n", 1)[0]
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)

    seen = Seen()
    acceptor = TlsAcceptorLayer(issuing(ca), plaintext=plain).layer(info_app(seen))
    async with serve_tcp(recording(acceptor, seen)) as listener:
        port = listener.local_addr.port
        curl_path = require_peer("curl")
        secure = await curl(run_async, curl_path, port, "--cacert", str(ca_file))
        cleartext = await run_async([curl_path, "-sS", f"http://127.0.0.1:{port}/x"])
    assert secure.returncode == 0, secure.stderr
    assert json.loads(secure.stdout)["version"] == "TLSv1.3"
    assert cleartext.returncode == 0, cleartext.stderr
    assert cleartext.stdout == "plain: GET /x HTTP/1.1"
    assert seen.errors == []
