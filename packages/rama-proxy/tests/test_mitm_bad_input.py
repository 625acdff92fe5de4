"""Bad input and odd tunnels: garbage ClientHello, a client that aborts mid-handshake or
stays silent, plain HTTP and raw bytes inside the tunnel, a rejected host, an upstream that
dies mid-body. Each is contained to its connection; the proxy keeps serving."""

from __future__ import annotations

import ssl
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteStream

from rama_core import Context, service_fn
from rama_net import TcpListener, connect_tcp
from rama_proxy.mitm import HostPolicy, HttpFlow, MitmHooks, MitmProxy
from rama_tls import CertificateAuthority, TlsAcceptorService

sys.path.insert(0, str(Path(__file__).parent))
from http_proxy_testutil import read_response, run_origin
from mitm_testutil import Events, curl, origin_tls, run_mitm


def client_hello(server_name: str = "localhost") -> bytes:
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


async def open_tunnel(port: int, target: str) -> ByteStream:
    stream = await connect_tcp(f"127.0.0.1:{port}")
    await stream.send(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    status, _, _ = await read_response(stream)
    assert status == 200
    return stream


async def read_until_closed(stream: ByteStream, timeout: float = 5.0) -> bytes:
    data = b""
    with anyio.fail_after(timeout):
        try:
            while True:
                data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass
    return data


class Tag(MitmHooks):
    async def request(self, flow: HttpFlow) -> None:
        flow.request.headers.add("X-Tagged", flow.scheme)


@pytest.mark.anyio
async def test_garbage_silence_and_abort_are_contained(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    ca_file: str,
    require_peer: Callable[[str], str],
) -> None:
    require_peer("curl")
    events = Events()
    mitm = MitmProxy(mitm_ca, upstream_ca=origin_ca.cert_pem(), observer=events, peek_timeout=0.5)
    async with run_origin(tls=origin_tls(origin_ca)) as origin, run_mitm(mitm) as (port, _):
        target = f"localhost:{origin.port}"
        # a TLS record header with a nonsense handshake inside
        s = await open_tunnel(port, target)
        await s.send(b"\x16\x03\x01\x00\x08\x01\x00\x00\x04garbage-garbage")
        assert await read_until_closed(s) == b""
        await s.aclose()
        # silence: closed after peek_timeout
        s = await open_tunnel(port, target)
        assert await read_until_closed(s) == b""
        await s.aclose()
        # half a ClientHello, then gone
        s = await open_tunnel(port, target)
        await s.send(client_hello()[:40])
        await s.aclose()
        # a whole ClientHello, then gone before finishing the handshake
        s = await open_tunnel(port, target)
        await s.send(client_hello())
        await s.aclose()
        finished = await events.wait("finished", 4)
        errors = sorted(c.error or "" for c in finished)
        assert "bad ClientHello" in errors
        assert "no data" in errors
        assert "no ClientHello" in errors
        assert "client TLS handshake failed" in errors
        assert origin.seen == []
        # and the proxy still works
        code, out, err = await curl(
            "-x", f"http://127.0.0.1:{port}", "--cacert", ca_file, f"https://{target}/after"
        )
        assert code == 0, err
        assert "GET /after" in out


@asynccontextmanager
async def run_echo() -> AsyncIterator[int]:
    async def echo(ctx: Context, stream: ByteStream) -> None:
        try:
            while True:
                await stream.send(b"echo:" + await stream.receive())  # per chunk received
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass

    async with TcpListener.bind("127.0.0.1:0") as listener, anyio.create_task_group() as tg:
        tg.start_soon(lambda: listener.serve(service_fn(echo)))
        try:
            yield listener.local_addr.port
        finally:
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_plain_http_and_raw_bytes_in_the_tunnel(
    mitm_ca: CertificateAuthority, require_peer: Callable[[str], str]
) -> None:
    require_peer("curl")
    events = Events()
    mitm = MitmProxy(mitm_ca, hooks=[Tag()], observer=events)
    async with run_origin() as origin, run_echo() as echo, run_mitm(mitm) as (port, _):
        s = await open_tunnel(port, f"127.0.0.1:{origin.port}")
        await s.send(f"GET /plain HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n\r\n".encode())
        status, _, body = await read_response(s)
        assert status == 200
        assert b"GET /plain" in body
        assert b"X-Tagged: http" in body
        await s.aclose()
        s = await open_tunnel(port, f"127.0.0.1:{echo}")
        await s.send(b"\x00\x01 not http, not tls")
        got = b""
        with anyio.fail_after(5):
            while b"tls" not in got:
                got += await s.receive()
        assert got.replace(b"echo:", b"") == b"\x00\x01 not http, not tls"
        await s.aclose()
        # h2 with prior knowledge inside the tunnel stays h2c to the origin
        code, out, err = await curl(
            "--http2-prior-knowledge",
            "-p",
            "-x",
            f"http://127.0.0.1:{port}",
            f"http://127.0.0.1:{origin.port}/h2c",
        )
        assert code == 0, err
        assert "GET /h2c" in out
        assert "x-tagged: http" in out.lower()
        finished = await events.wait("finished", 3)
        assert sorted(c.mode for c in finished) == ["http", "http", "raw"]
        flows = await events.wait("flows", 2)
        assert [f.request.version.value for f in flows] == ["HTTP/1.1", "HTTP/2"]


@pytest.mark.anyio
async def test_rejected_host_and_pinning_client(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    tmp_path: Path,
    require_peer: Callable[[str], str],
) -> None:
    require_peer("curl")
    origin_file = tmp_path / "origin.pem"
    origin_file.write_bytes(origin_ca.cert_pem())
    events = Events()
    mitm = MitmProxy(
        mitm_ca,
        upstream_ca=origin_ca.cert_pem(),
        policy=HostPolicy(reject=["blocked.localhost"]),
        observer=events,
    )
    async with run_origin(tls=origin_tls(origin_ca)) as origin, run_mitm(mitm) as (port, _):
        code, _, err = await curl(
            "-x",
            f"http://127.0.0.1:{port}",
            "--resolve",
            f"blocked.localhost:{origin.port}:127.0.0.1",
            "--cacert",
            str(origin_file),
            f"https://blocked.localhost:{origin.port}/",
        )
        assert code == 35, err  # the handshake was cut
        # a client that trusts only the real CA refuses the MITM's leaf, cleanly
        code, _, err = await curl(
            "-x",
            f"http://127.0.0.1:{port}",
            "--cacert",
            str(origin_file),
            f"https://localhost:{origin.port}/",
        )
        assert code == 60, err
        finished = await events.wait("finished", 2)
        assert {c.mode for c in finished} == {"reject", "intercept"}
        assert origin.seen == []


@asynccontextmanager
async def run_dying_origin(ca: CertificateAuthority) -> AsyncIterator[int]:
    """Answers a 100000-byte body, sends 1000 bytes of it, then drops the connection."""

    async def handler(ctx: Context, stream: ByteStream) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += await stream.receive()
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        await anyio.sleep(0.1)
        await anyio.aclose_forcefully(stream)

    acceptor = TlsAcceptorService(service_fn(handler), origin_tls(ca, ("http/1.1",)))
    async with TcpListener.bind("127.0.0.1:0") as listener, anyio.create_task_group() as tg:
        tg.start_soon(lambda: listener.serve(acceptor))
        try:
            yield listener.local_addr.port
        finally:
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_upstream_dies_mid_body(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    ca_file: str,
    require_peer: Callable[[str], str],
) -> None:
    require_peer("curl")
    events = Events()
    mitm = MitmProxy(mitm_ca, upstream_ca=origin_ca.cert_pem(), observer=events)
    async with run_dying_origin(origin_ca) as oport, run_mitm(mitm) as (port, _):
        for http in ("--http1.1", "--http2"):
            code, out, err = await curl(
                http,
                "-x",
                f"http://127.0.0.1:{port}",
                "--cacert",
                ca_file,
                f"https://localhost:{oport}/",
            )
            assert code in (18, 56, 92), (code, err)  # truncated, not a clean short answer
            assert 0 < len(out) < 100000
        flows = await events.wait("flows", 2)
        assert all(f.error for f in flows)
