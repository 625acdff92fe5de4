"""The auto server (HTTP/1.1 + h2 on one listener) over real loopback sockets.

Clients: httpx (h1, h2 prior knowledge, h2 and h1 over TLS with ALPN), a raw
client on the ``h2`` library where frames matter (GOAWAY), and raw sockets.
"""

from __future__ import annotations

import functools
import logging
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import h2.config
import h2.connection
import h2.events
import httpx
import pytest
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute, TLSStream
from hyperframe.frame import DataFrame, Frame, GoAwayFrame
from hypothesis import given
from hypothesis import strategies as st

from rama_core import Context, Shutdown, service_fn
from rama_http import Request, Response
from rama_http._h2._record import CONNECTION_PREFACE
from rama_http.server._auto import HttpServer, HttpVersionChoice, detect_version, serve
from rama_http.server._config import ServerConfig
from rama_http.server._h2 import ExtendedConnectProtocol
from rama_net import SocketAddress, TcpListener
from rama_tls import ClientHello, NegotiatedTls, TlsAcceptorConfig, self_signed

# Every test runs on both h2 server engines (the root conftest's h2_engine).
pytestmark = pytest.mark.usefixtures("h2_engine")

Handler = Callable[[Context, Request], Any]


async def echo_version(ctx: Context, req: Request) -> Response:
    body = await req.body.read(limit=1 << 20)
    return Response.from_text(f"{req.version} {req.method} {req.target} {len(body)}\n")


@asynccontextmanager
async def auto_server(
    handler: Handler,
    *,
    config: ServerConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    ctx: Context | None = None,
) -> AsyncIterator[int]:
    """Run :func:`serve` on an ephemeral loopback port; yield the port."""
    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: serve(listener, service_fn(handler), config, ctx=ctx, ssl_context=ssl_context)
        )
        try:
            yield listener.local_addr.port
        finally:
            tg.cancel_scope.cancel()


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    ck = self_signed("localhost", "127.0.0.1")
    d = tmp_path_factory.mktemp("auto-tls")
    cert, key = d / "cert.pem", d / "key.pem"
    cert.write_bytes(ck.cert_pem())
    key.write_bytes(ck.key_pem())
    return cert, key


def server_ssl(pair: tuple[Path, Path], alpn: list[str] | None = None) -> ssl.SSLContext:
    """A stdlib server context; serve() uses its ALPN protocols as they are."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*pair)
    protocols = ["h2", "http/1.1"] if alpn is None else alpn
    if protocols:
        ctx.set_alpn_protocols(protocols)
    return ctx


def client_ssl(pair: tuple[Path, Path], alpn: list[str] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pair[0]))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def parse_frames(data: bytes) -> list[Frame]:
    """Every complete frame in ``data`` (server-to-client, after the preface)."""
    frames = []
    pos = 0
    while len(data) - pos >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[pos : pos + 9]))
        if len(data) - pos - 9 < length:
            break
        frame.parse_body(memoryview(data[pos + 9 : pos + 9 + length]))
        frames.append(frame)
        pos += 9 + length
    return frames


async def read_until_closed(stream: ByteStream, timeout: float = 5.0) -> bytes:
    out = b""
    with anyio.fail_after(timeout):
        while True:
            try:
                out += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return out


# -- detection (sans-IO) ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "want"),
    [
        (b"", None),
        (b"PRI * HTTP/2.0\r\n", None),
        (CONNECTION_PREFACE, HttpVersionChoice.H2),
        (CONNECTION_PREFACE + b"\x00\x00\x12\x04", HttpVersionChoice.H2),
        (b"GET / HTTP/1.1\r\n", HttpVersionChoice.HTTP1),
        (b"P", None),
        (b"POST", HttpVersionChoice.HTTP1),
        (b"PRI * HTTP/1.1\r\n", HttpVersionChoice.HTTP1),
    ],
)
def test_detect_version(data: bytes, want: HttpVersionChoice | None) -> None:
    assert detect_version(data) is want


@given(st.binary(max_size=64))
def test_detect_version_is_decided_by_the_preface_prefix(data: bytes) -> None:
    got = detect_version(data)
    if data.startswith(CONNECTION_PREFACE):
        assert got is HttpVersionChoice.H2
    elif CONNECTION_PREFACE.startswith(data):
        assert got is None
    else:
        assert got is HttpVersionChoice.HTTP1


def test_server_needs_one_version() -> None:
    with pytest.raises(ValueError, match="at least one"):
        HttpServer(service_fn(echo_version), http1=False, h2=False)


# -- cleartext -----------------------------------------------------------------------------
@pytest.mark.anyio
async def test_same_service_serves_h1_and_h2_prior_knowledge_on_one_port() -> None:
    async with auto_server(echo_version) as port:
        url = f"http://127.0.0.1:{port}/v?q=1"
        async with httpx.AsyncClient() as h1:
            r1 = await h1.post(url, content=b"x" * 1000)
        async with httpx.AsyncClient(http1=False, http2=True) as h2c:
            r2 = await h2c.post(url, content=b"y" * 100_000)
            r3 = await h2c.get(url)
    assert (r1.http_version, r1.text) == ("HTTP/1.1", "HTTP/1.1 POST /v?q=1 1000\n")
    assert (r2.http_version, r2.text) == ("HTTP/2", "HTTP/2 POST /v?q=1 100000\n")
    assert r3.text == "HTTP/2 GET /v?q=1 0\n"


@pytest.mark.anyio
async def test_preface_split_over_several_packets_is_still_h2() -> None:
    async with auto_server(echo_version) as port:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            conn.send_headers(
                1,
                [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/s")],
                end_stream=True,
            )
            wire = conn.data_to_send()
            for piece in (wire[:3], wire[3:17], wire[17:30], wire[30:]):
                await stream.send(piece)
                await anyio.sleep(0.02)
            body = b""
            with anyio.fail_after(5):
                while True:
                    events = conn.receive_data(await stream.receive())
                    await stream.send(conn.data_to_send())
                    for ev in events:
                        if isinstance(ev, h2.events.DataReceived):
                            body += ev.data
                    if any(isinstance(ev, h2.events.StreamEnded) for ev in events):
                        break
    assert body == b"HTTP/2 GET /s 0\n"


@pytest.mark.anyio
async def test_partial_preface_then_eof_is_answered_as_http1() -> None:
    async with auto_server(echo_version) as port:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            await stream.send(b"PRI * HTTP/2.0\r\n")
            await stream.send_eof()
            out = await read_until_closed(stream)
    # Not a valid HTTP/1.1 request either: an error answer, never a hang.
    assert out.startswith((b"HTTP/1.1 4", b"HTTP/1.1 5")), out[:80]


@pytest.mark.anyio
async def test_silent_connection_is_closed_after_the_timeout_others_go_on() -> None:
    cfg = ServerConfig(header_read_timeout=0.3)
    async with auto_server(echo_version, config=cfg) as port:
        silent = await anyio.connect_tcp("127.0.0.1", port)
        async with silent, httpx.AsyncClient(http1=False, http2=True) as client:
            r = await client.get(f"http://127.0.0.1:{port}/other")
            assert r.text == "HTTP/2 GET /other 0\n"
            start = anyio.current_time()
            assert await read_until_closed(silent, timeout=3) == b""
            assert anyio.current_time() - start < 2.5


@pytest.mark.anyio
async def test_disabled_version_is_refused() -> None:
    only_h2 = HttpServer(service_fn(echo_version), http1=False, h2=True)
    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, only_h2)
        port = listener.local_addr.port
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            await stream.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert await read_until_closed(stream) == b""
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            r = await client.get(f"http://127.0.0.1:{port}/ok")
            assert r.text == "HTTP/2 GET /ok 0\n"
        tg.cancel_scope.cancel()


# -- TLS and ALPN ------------------------------------------------------------------------
@pytest.mark.anyio
@pytest.mark.parametrize(
    ("alpn", "http2", "want"),
    [(["h2", "http/1.1"], True, "HTTP/2"), (["http/1.1"], False, "HTTP/1.1")],
)
async def test_alpn_chooses_the_version_behind_tls(
    tls_pair: tuple[Path, Path], alpn: list[str], http2: bool, want: str
) -> None:
    async with auto_server(echo_version, ssl_context=server_ssl(tls_pair)) as port:
        verify = client_ssl(tls_pair, None)
        async with httpx.AsyncClient(verify=verify, http2=http2) as client:
            r = await client.get(f"https://127.0.0.1:{port}/tls")
    assert r.http_version == want
    assert r.text == f"{want} GET /tls 0\n"


@pytest.mark.anyio
async def test_tls_without_alpn_falls_back_to_detection(tls_pair: tuple[Path, Path]) -> None:
    async with auto_server(echo_version, ssl_context=server_ssl(tls_pair)) as port:
        tcp = await anyio.connect_tcp("127.0.0.1", port)
        tls = await TLSStream.wrap(
            tcp,
            hostname="127.0.0.1",
            ssl_context=client_ssl(tls_pair, None),
            standard_compatible=False,
        )
        try:
            assert tls.extra(TLSAttribute.alpn_protocol) is None
            await tls.send(b"GET /plain HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            out = await read_until_closed(tls)
        finally:
            await tcp.aclose()
    assert out.startswith(b"HTTP/1.1 200")
    assert out.endswith(b"HTTP/1.1 GET /plain 0\n")


@pytest.mark.anyio
async def test_error_answers_behind_tls_arrive_without_a_service_failure(
    tls_pair: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    # anyio's TLSStream cannot half-close: the 400 must still go out cleanly
    async with auto_server(echo_version, ssl_context=server_ssl(tls_pair)) as port:
        tcp = await anyio.connect_tcp("127.0.0.1", port)
        tls = await TLSStream.wrap(
            tcp,
            hostname="127.0.0.1",
            ssl_context=client_ssl(tls_pair, ["http/1.1"]),
            standard_compatible=False,
        )
        try:
            await tls.send(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")
            out = await read_until_closed(tls)
        finally:
            await tcp.aclose()
    assert out.startswith(b"HTTP/1.1 400 ")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.anyio
async def test_failed_tls_handshake_does_not_stop_the_server(tls_pair: tuple[Path, Path]) -> None:
    async with auto_server(echo_version, ssl_context=server_ssl(tls_pair)) as port:
        bad = await anyio.connect_tcp("127.0.0.1", port)
        async with bad:
            await bad.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            await read_until_closed(bad)
        async with httpx.AsyncClient(verify=client_ssl(tls_pair, None), http2=True) as client:
            r = await client.get(f"https://127.0.0.1:{port}/after")
    assert r.text == "HTTP/2 GET /after 0\n"


# -- tunnels through the same takeover mechanism on both versions ------------------------------
async def tunnel_echo(ctx: Context, req: Request) -> Response:
    if req.method != "CONNECT":
        return await echo_version(ctx, req)
    protocol = ctx.get(ExtendedConnectProtocol)

    async def echo(stream: ByteStream) -> None:
        await stream.send(f"{req.version} {protocol}|".encode())
        while True:
            try:
                data = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
            await stream.send(data.upper())

    return Response(200, on_upgrade=echo)


@pytest.mark.anyio
async def test_h2_extended_connect_and_h1_connect_share_the_handler() -> None:
    async with auto_server(tunnel_echo) as port:
        # h1: CONNECT, 200, then raw bytes both ways.
        s1 = await anyio.connect_tcp("127.0.0.1", port)
        async with s1:
            await s1.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
            got = b""
            with anyio.fail_after(5):
                while b"|" not in got:
                    got += await s1.receive()
            await s1.send(b"hello h1")
            with anyio.fail_after(5):
                while not got.endswith(b"HELLO H1"):
                    got += await s1.receive()
        assert got.startswith(b"HTTP/1.1 200")
        assert b"\r\n\r\nHTTP/1.1 None|" in got

        # h2: RFC 8441 extended CONNECT with :protocol.
        s2 = await anyio.connect_tcp("127.0.0.1", port)
        async with s2:
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            await s2.send(conn.data_to_send())
            data = b""
            status = None
            sent = False
            with anyio.fail_after(5):
                while not data.endswith(b"HELLO H2"):
                    for ev in conn.receive_data(await s2.receive()):
                        if isinstance(ev, h2.events.RemoteSettingsChanged) and not sent:
                            sent = True
                            conn.send_headers(
                                1,
                                [
                                    (":method", "CONNECT"),
                                    (":protocol", "websocket"),
                                    (":scheme", "http"),
                                    (":authority", "a"),
                                    (":path", "/chat"),
                                ],
                            )
                        elif isinstance(ev, h2.events.ResponseReceived):
                            status = dict(ev.headers)[b":status"]
                        elif isinstance(ev, h2.events.DataReceived):
                            data += ev.data
                            conn.acknowledge_received_data(ev.flow_controlled_length, 1)
                            if data.endswith(b"|"):
                                conn.send_data(1, b"hello h2")
                    await s2.send(conn.data_to_send())
        assert status == b"200"
        assert data == b"HTTP/2 websocket|HELLO H2"


# -- graceful shutdown of the whole server -----------------------------------------------------
@pytest.mark.anyio
async def test_graceful_shutdown_drains_every_version_and_closes_idle_connections() -> None:
    release = anyio.Event()
    entered: list[str] = []

    async def slow(ctx: Context, req: Request) -> Response:
        if req.target.startswith("/slow"):
            entered.append(f"{req.version} {req.target}")
            await release.wait()
        return Response.from_text(f"{req.version} {req.target} done\n")

    listener = TcpListener.bind("127.0.0.1:0")
    port = listener.local_addr.port
    results: dict[str, Any] = {}
    async with Shutdown(grace=10, signals=None) as sd:
        sd.spawn(functools.partial(serve, listener, service_fn(slow), ctx=sd.context()))

        # Idle HTTP/1.1 keep-alive connection (answered once), and one that never spoke.
        idle = await anyio.connect_tcp("127.0.0.1", port)
        await idle.send(b"GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
        first = b""
        with anyio.fail_after(5):
            while not first.endswith(b"/fast done\n"):
                first += await idle.receive()
        assert first.startswith(b"HTTP/1.1 200")
        silent = await anyio.connect_tcp("127.0.0.1", port)

        # In-flight HTTP/1.1 request.
        busy1 = await anyio.connect_tcp("127.0.0.1", port)
        await busy1.send(b"GET /slow1 HTTP/1.1\r\nHost: a\r\n\r\n")

        # In-flight h2 stream, on a raw h2 client to see the GOAWAY.
        busy2 = await anyio.connect_tcp("127.0.0.1", port)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(
            1,
            [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/slow2")],
            end_stream=True,
        )
        await busy2.send(conn.data_to_send())
        with anyio.fail_after(5):
            while len(entered) < 2:
                await anyio.sleep(0.01)

        sd.trigger()
        # h2 (the library) refuses every frame after a GOAWAY, though RFC 9113 lets
        # accepted streams finish: read the rest of the connection as raw frames.
        raw = b""
        with anyio.fail_after(5):
            while not any(isinstance(f, GoAwayFrame) for f in parse_frames(raw)):
                raw += await busy2.receive()
        # Idle and silent connections are closed at once; new ones are refused.
        results["idle"] = await read_until_closed(idle, timeout=3)
        results["silent"] = await read_until_closed(silent, timeout=3)
        with anyio.fail_after(3):
            while True:
                try:
                    late = await anyio.connect_tcp("127.0.0.1", port)
                except OSError:
                    break
                await late.aclose()
                await anyio.sleep(0.02)

        release.set()
        results["busy1"] = await read_until_closed(busy1)
        raw += await read_until_closed(busy2)
        frames = parse_frames(raw)
        goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
        body = b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == 1)
        ended = any("END_STREAM" in f.flags for f in frames if f.stream_id == 1)
        results["busy2"] = body
        for s in (idle, silent, busy1, busy2):
            await s.aclose()

    assert [(g.error_code, g.last_stream_id) for g in goaways] == [(0, 1)]
    assert ended
    assert results["busy2"] == b"HTTP/2 /slow2 done\n"
    assert results["busy1"].startswith(b"HTTP/1.1 200")
    assert b"connection: close" in results["busy1"].lower()
    assert results["busy1"].endswith(b"HTTP/1.1 /slow1 done\n")
    assert results["idle"] == b""
    assert results["silent"] == b""
    assert sd.report is not None
    assert sd.report.clean, sd.report


@pytest.mark.anyio
async def test_serve_reports_its_address_and_stops_on_cancel() -> None:
    seen: list[SocketAddress] = []
    with anyio.move_on_after(0.5) as scope:
        await serve("127.0.0.1:0", service_fn(echo_version), on_listening=seen.append)
    assert scope.cancelled_caught
    assert len(seen) == 1
    assert seen[0].port > 0
    with pytest.raises(OSError, match="onnect"):
        await anyio.connect_tcp("127.0.0.1", seen[0].port)


# -- behind rama_tls's acceptor ------------------------------------------------------------
async def tls_facts(ctx: Context, req: Request) -> Response:
    negotiated = ctx.get(NegotiatedTls)
    hello = ctx.get(ClientHello)
    facts = (
        f"{req.version} alpn={negotiated.alpn if negotiated else None} "
        f"sni={hello.server_name if hello else None}\n"
    )
    return Response.from_text(facts)


@pytest.mark.anyio
async def test_rama_tls_acceptor_with_plaintext_serves_every_version_on_one_port() -> None:
    ck = self_signed("localhost", "127.0.0.1")
    listener = TcpListener.bind("127.0.0.1:0")
    port = listener.local_addr.port
    ca = ssl.create_default_context(cadata=ck.cert_pem().decode())
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            functools.partial(
                serve,
                listener,
                service_fn(tls_facts),
                tls=TlsAcceptorConfig.single(ck),
                plaintext=True,
            )
        )
        async with httpx.AsyncClient(verify=ca, http2=True) as client:
            tls_h2 = await client.get(f"https://localhost:{port}/")
        async with httpx.AsyncClient(verify=ca) as client:
            tls_h1 = await client.get(f"https://localhost:{port}/")
        async with httpx.AsyncClient() as client:
            plain_h1 = await client.get(f"http://127.0.0.1:{port}/")
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            plain_h2 = await client.get(f"http://127.0.0.1:{port}/")
        tg.cancel_scope.cancel()
    assert tls_h2.text == "HTTP/2 alpn=h2 sni=localhost\n"
    assert tls_h1.text == "HTTP/1.1 alpn=http/1.1 sni=localhost\n"
    assert plain_h1.text == "HTTP/1.1 alpn=None sni=None\n"
    assert plain_h2.text == "HTTP/2 alpn=None sni=None\n"


@pytest.mark.anyio
async def test_negotiated_alpn_in_the_context_decides_over_sniffing() -> None:
    # A layer that terminated TLS elsewhere may only leave NegotiatedTls behind.
    seen: list[str] = []

    async def h(ctx: Context, req: Request) -> Response:
        seen.append(str(req.version))
        return Response.from_text("ok\n")

    server = HttpServer(service_fn(h))
    listener = TcpListener.bind("127.0.0.1:0")

    class WithAlpn:
        async def serve(self, ctx: Context, stream: ByteStream) -> None:
            ctx.insert(NegotiatedTls("server", "TLSv1.3", "x", "http/1.1", None))
            await server.serve(ctx, stream)

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, WithAlpn())
        stream = await anyio.connect_tcp("127.0.0.1", listener.local_addr.port)
        async with stream:
            # An h2 preface on a connection whose ALPN said http/1.1 is not h2.
            await stream.send(CONNECTION_PREFACE)
            await stream.send_eof()
            out = await read_until_closed(stream)
        tg.cancel_scope.cancel()
    assert out.startswith((b"HTTP/1.1 4", b"HTTP/1.1 5")), out[:60]
    assert seen == []


# -- one TLS path: serve(ssl_context=) goes through rama_tls's acceptor --------------------------
async def curl(*args: str) -> tuple[int, str, str]:
    """Run curl; (returncode, stdout, stderr)."""
    proc = await anyio.run_process(["curl", "-sS", "--max-time", "10", *args], check=False)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("flag", "want"), [("--http2", "HTTP/2 alpn=h2"), ("--http1.1", "HTTP/1.1 alpn=http/1.1")]
)
async def test_serve_with_ssl_context_captures_the_client_hello_for_curl(
    tls_pair: tuple[Path, Path], flag: str, want: str
) -> None:
    listener = TcpListener.bind("127.0.0.1:0")
    port = listener.local_addr.port
    ctx = server_ssl(tls_pair)
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(serve, listener, service_fn(tls_facts), ssl_context=ctx))
        rc, out, err = await curl(
            flag,
            "--cacert",
            str(tls_pair[0]),
            "--resolve",
            f"localhost:{port}:127.0.0.1",
            f"https://localhost:{port}/",
        )
        tg.cancel_scope.cancel()
    assert rc == 0, err
    # the ClientHello (its SNI) is in the Context now, as behind TlsAcceptorConfig
    assert out == f"{want} sni=localhost\n"


@pytest.mark.anyio
async def test_serve_leaves_the_callers_ssl_context_alone(tls_pair: tuple[Path, Path]) -> None:
    ctx = server_ssl(tls_pair, alpn=[])  # no ALPN: clients must get HTTP/1.1
    before = (ctx.protocol, ctx.verify_mode, ctx.options, ctx.sni_callback)
    listener = TcpListener.bind("127.0.0.1:0")
    port = listener.local_addr.port
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(serve, listener, service_fn(tls_facts), ssl_context=ctx))
        rc, out, err = await curl(
            "--http2", "--cacert", str(tls_pair[0]), f"https://127.0.0.1:{port}/"
        )
        tg.cancel_scope.cancel()
    assert rc == 0, err
    assert out == "HTTP/1.1 alpn=None sni=None\n"
    assert (ctx.protocol, ctx.verify_mode, ctx.options, ctx.sni_callback) == before
    # the same context in a plain stdlib server still negotiates no ALPN
    client = client_ssl(tls_pair, ["h2", "http/1.1"])
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    srv = ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for obj in (c, srv):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    assert c.version() is not None
    assert srv.selected_alpn_protocol() is None


def free_port() -> int:
    """A loopback port that is free now (bound and released)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"tls": "tls-config", "ssl_context": "ctx"}, ValueError),
        ({"ssl_context": "ctx", "alpn_protocols": ("h2",)}, ValueError),
        ({"plaintext": True}, ValueError),
        ({"config": {"http1_engine": "h11"}}, TypeError),
        ({"tls": "ctx"}, TypeError),
        ({"ssl_context": "client-ctx"}, ValueError),
        ({"tcp_config": 5}, TypeError),
        ({"alpn_protocols": "h2"}, TypeError),
        ({"ctx": "context"}, TypeError),
    ],
)
async def test_serve_checks_its_arguments_before_binding(
    tls_pair: tuple[Path, Path], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    stand_ins = {
        "tls-config": TlsAcceptorConfig.single(self_signed("localhost")),
        "ctx": server_ssl(tls_pair),
        "client-ctx": ssl.create_default_context(),
    }
    kwargs = {k: stand_ins.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
    port = free_port()
    with pytest.raises(error):
        await serve(f"127.0.0.1:{port}", service_fn(echo_version), **kwargs)
    # nothing was left listening: the same port binds again at once, without SO_REUSEADDR
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", port))
        probe.listen()
    finally:
        probe.close()


@pytest.mark.anyio
async def test_serve_closes_its_listener_when_on_listening_fails() -> None:
    port = free_port()

    def boom(addr: SocketAddress) -> None:
        raise RuntimeError("on_listening failed")

    with pytest.raises(RuntimeError):
        await serve(f"127.0.0.1:{port}", service_fn(echo_version), on_listening=boom)
    with pytest.raises(OSError, match="onnect"):
        await anyio.connect_tcp("127.0.0.1", port)


@pytest.mark.anyio
async def test_a_reset_while_detecting_the_version_is_connection_lost_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="rama")
    async with auto_server(echo_version) as port:
        sock = await anyio.connect_tcp("127.0.0.1", port)
        await sock.send(CONNECTION_PREFACE[:10])  # not enough to decide
        await anyio.sleep(0.1)
        raw = sock.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await sock.aclose()  # RST
        with anyio.fail_after(5):
            while "connection lost while detecting" not in caplog.text:
                await anyio.sleep(0.01)
        # detection still works for the next connection, both ways
        async with httpx.AsyncClient() as client:
            h1 = await client.get(f"http://127.0.0.1:{port}/after")
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            h2 = await client.get(f"http://127.0.0.1:{port}/after")
    assert h1.text == "HTTP/1.1 GET /after 0\n"
    assert h2.text == "HTTP/2 GET /after 0\n"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
