"""The h2 client connection against the rama auto server: TLS+ALPN h2 and h2c prior knowledge.

GET, POST with a large body, a streaming download, trailers both ways, 50 concurrent
requests on ONE connection, the Akamai fingerprint the server records, header order.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from rama_http_client_peer import echo, make_cert, rama_server

from rama_core import Context
from rama_http import Body, H2PrefaceRecord, Headers, Request, Response, Version
from rama_http.client import H2ClientSettings, H2PriorityFrame, HttpClient
from rama_http.fingerprint import akamai_h2_fingerprint
from rama_tls import CertifiedKey, TlsClientConfig

pytestmark = pytest.mark.anyio

BIG = 3 * 1024 * 1024 + 17


def h2_server_ssl(ck: CertifiedKey, tmp: Path) -> ssl.SSLContext:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    cert.write_bytes(ck.chain_pem())
    key.write_bytes(ck.key_pem())
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


async def handler(ctx: Context, req: Request) -> Response:
    path = req.target.split("?")[0]
    if path == "/big":
        block = bytes(range(256)) * 256

        async def chunks() -> AsyncIterator[bytes]:
            sent = 0
            while sent < BIG:
                part = block[: BIG - sent]
                sent += len(part)
                yield part

        return Response(200, body=Body.from_iter(chunks(), length=BIG))
    if path == "/fp":
        record = ctx.get(H2PrefaceRecord)
        text = akamai_h2_fingerprint(record).text if record is not None else "none"
        return Response(200, body=Body.from_bytes(text.encode()))
    if path == "/sha":
        data = await req.read(limit=1 << 26)
        return Response(200, body=Body.from_bytes(hashlib.sha256(data).hexdigest().encode()))
    if path == "/trailers":
        data = await req.read(limit=1 << 20)
        got = req.body.trailers

        async def one() -> AsyncIterator[bytes]:
            yield data

        out = Body.from_iter(one(), trailers=Headers([("x-sum", str(len(data)))]))
        resp = Response(200, body=out)
        if got is not None:
            resp.headers.add("x-got-trailer", got.get("x-checksum") or "")
        return resp
    if path == "/slow":
        await anyio.sleep(0.2)
        return Response(200, body=Body.from_bytes(req.target.encode()))
    return await echo(ctx, req)


@asynccontextmanager
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, CertifiedKey]]:
    ck = make_cert("localhost", "127.0.0.1")
    async with rama_server(handler, ssl_context=h2_server_ssl(ck, tmp_path)) as port:
        yield port, ck


def tls_client(ck: CertifiedKey, **kw: object) -> HttpClient:
    return HttpClient(tls=TlsClientConfig(ca_pem=ck.chain_pem()), **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["tls", "h2c"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def server_and_client(
    mode: str, tmp_path: Path, **kw: object
) -> AsyncIterator[tuple[str, HttpClient]]:
    if mode == "tls":
        async with tls_server(tmp_path) as (port, ck):
            async with tls_client(ck, **kw) as client:
                yield f"https://localhost:{port}", client
    else:
        async with rama_server(handler) as port:
            async with HttpClient(http2_prior_knowledge=True, **kw) as client:  # type: ignore[arg-type]
                yield f"http://127.0.0.1:{port}", client


async def test_get_over_h2(mode: str, tmp_path: Path) -> None:
    async with server_and_client(mode, tmp_path) as (base, client):
        r = await client.get(f"{base}/hello?x=1", headers=[("X-B", "2"), ("x-a", "1")])
        assert r.status == 200
        assert r.raw.version == Version.HTTP_2
        got = await r.json()
        assert got["method"] == "GET"
        assert got["target"] == "/hello?x=1"
        names = [n for n, _ in got["headers"]]
        # the caller's order, lowercased, after the pseudo-headers
        assert names.index("x-b") < names.index("x-a")
        assert "X-B" not in names
        r2 = await client.get(f"{base}/again")
        assert (await r2.json())["target"] == "/again"
        stats = client.pool_stats()
        assert stats.total == 1
        assert stats.active == 0


async def test_post_large_body(mode: str, tmp_path: Path) -> None:
    data = os.urandom(5 * 1024 * 1024 + 3)
    async with server_and_client(mode, tmp_path) as (base, client):
        r = await client.post(f"{base}/sha", content=data)
        assert r.status == 200
        assert (await r.read()).decode() == hashlib.sha256(data).hexdigest()

        async def gen() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 100_000):
                yield data[i : i + 100_000]

        r = await client.post(f"{base}/sha", content=gen())
        assert (await r.read()).decode() == hashlib.sha256(data).hexdigest()


async def test_streaming_download(mode: str, tmp_path: Path) -> None:
    async with server_and_client(mode, tmp_path) as (base, client):
        async with client.stream("GET", f"{base}/big") as r:
            assert r.status == 200
            size = 0
            async for chunk in r.body:
                size += len(chunk)
            assert size == BIG
        assert client.pool_stats().active == 0


async def test_trailers_both_ways(mode: str, tmp_path: Path) -> None:
    async with server_and_client(mode, tmp_path) as (base, client):

        async def gen() -> AsyncIterator[bytes]:
            yield b"hello "
            yield b"world"

        body = Body.from_iter(gen(), trailers=Headers([("x-checksum", "abc")]))
        async with client.stream("POST", f"{base}/trailers", content=body) as r:
            assert r.headers.get("x-got-trailer") == "abc"
            assert await r.read() == b"hello world"
            assert r.trailers is not None
            assert r.trailers.get("x-sum") == "11"


async def test_fifty_concurrent_share_one_connection(mode: str, tmp_path: Path) -> None:
    async with server_and_client(mode, tmp_path) as (base, client):
        await client.get(f"{base}/warm")  # the server's SETTINGS are known after this
        results: dict[int, bytes] = {}

        async def one(i: int) -> None:
            r = await client.get(f"{base}/slow?i={i}")
            results[i] = await r.read()

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(one, i)
        assert results == {i: f"/slow?i={i}".encode() for i in range(50)}
        stats = client.pool_stats()
        assert stats.total == 1, stats
        assert stats.active == 0


@pytest.mark.parametrize(
    "settings",
    [
        H2ClientSettings.chrome(),
        H2ClientSettings.firefox(),
        H2ClientSettings(
            settings=((3, 100), (2, 0), (4, 65535)),
            initial_window_update=0,
            pseudo_header_order="mpsa",
        ),
        H2ClientSettings(
            settings=((1, 65536), (2, 0), (4, 131072)),
            initial_window_update=12517377,
            priority_frames=(H2PriorityFrame(3, 0, 201), H2PriorityFrame(5, 0, 101, True)),
            pseudo_header_order="mpas",
        ),
    ],
    ids=["chrome", "firefox", "custom", "priority-frames"],
)
async def test_akamai_fingerprint_matches_config(
    mode: str, tmp_path: Path, settings: H2ClientSettings
) -> None:
    async with server_and_client(mode, tmp_path, h2_settings=settings) as (base, client):
        r = await client.get(f"{base}/fp")
        text = (await r.read()).decode()
        assert text == settings.akamai
    if settings == H2ClientSettings.chrome():
        assert text == "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p"


async def test_http2_false_speaks_http11(tmp_path: Path) -> None:
    async with tls_server(tmp_path) as (port, ck):
        async with tls_client(ck, http2=False) as client:
            r = await client.get(f"https://localhost:{port}/x")
            assert r.raw.version == Version.HTTP_11


async def test_concurrent_uploads_share_one_connection(mode: str, tmp_path: Path) -> None:
    # many writers at once: frames must go out in the order the engine queued them
    # (HPACK state, increasing stream ids), whoever gets the write lock first
    async with server_and_client(mode, tmp_path) as (base, client):
        await client.get(f"{base}/warm")
        bodies = {i: os.urandom(300_000 + i) for i in range(20)}
        results: dict[int, str] = {}

        async def one(i: int) -> None:
            r = await client.post(f"{base}/sha", content=bodies[i], headers=[("x-i", str(i))])
            results[i] = (await r.read()).decode()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in bodies:
                    tg.start_soon(one, i)
        assert results == {i: hashlib.sha256(b).hexdigest() for i, b in bodies.items()}
        assert client.pool_stats().total == 1


async def test_upload_and_download_at_once(mode: str, tmp_path: Path) -> None:
    # a reader must not wait behind a blocked writer: the server stops reading
    # while its own output is not read, so a reader stuck on the write lock deadlocks
    data = os.urandom(12 * 1024 * 1024)
    async with server_and_client(mode, tmp_path) as (base, client):
        await client.get(f"{base}/warm")
        got: dict[str, object] = {}

        async def upload() -> None:
            r = await client.post(f"{base}/sha", content=data)
            got["sha"] = (await r.read()).decode()

        async def download() -> None:
            for _ in range(3):
                async with client.stream("GET", f"{base}/big") as r:
                    size = 0
                    async for chunk in r.body:
                        size += len(chunk)
                got.setdefault("sizes", []).append(size)  # type: ignore[attr-defined]

        with anyio.fail_after(40):
            async with anyio.create_task_group() as tg:
                tg.start_soon(upload)
                tg.start_soon(download)
        assert got["sha"] == hashlib.sha256(data).hexdigest()
        assert got["sizes"] == [BIG] * 3
        assert client.pool_stats().total == 1


async def test_cancelled_readers_hand_over_and_nothing_hangs(mode: str, tmp_path: Path) -> None:
    """Streams cancelled while one of them reads for the connection (the reader role must
    pass on to a waiting stream) while others download in full: no hang, nothing leaks."""
    async with server_and_client(mode, tmp_path) as (base, client):
        await client.get(f"{base}/warm")
        done: dict[int, int] = {}

        async def full(i: int) -> None:
            r = await client.get(f"{base}/big?i={i}")
            done[i] = len(await r.read())

        async def cancelled_mid_body(i: int) -> None:
            with anyio.move_on_after(0.05 + (i % 4) * 0.03):
                async with client.stream("GET", f"{base}/big?c={i}") as r:
                    async for _ in r.body:
                        await anyio.sleep(0.01)

        async def cancelled_before_head(i: int) -> None:
            with anyio.move_on_after(0.02 + (i % 3) * 0.02):
                await client.get(f"{base}/slow?x={i}")

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(full, i)
                for i in range(8):
                    tg.start_soon(cancelled_mid_body, i)
                    tg.start_soon(cancelled_before_head, i)
        assert done == {i: BIG for i in range(4)}
        assert client.pool_stats().active == 0
        with anyio.fail_after(5):
            r = await client.get(f"{base}/warm")
            assert r.status == 200
        stats = client.pool_stats()
        assert (stats.total, stats.active) == (1, 0), stats
