"""ServeDir/ServeFile over a real server: validators, ranges, precompressed, traversal."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import brotli
import httpx
import pytest

from rama_core import Service
from rama_http import Request, Response
from rama_http.server import serve
from rama_http.web import ByteRange, Router, ServeDir, ServeFile, Unsatisfiable, parse_range
from rama_net import TcpListener

pytestmark = pytest.mark.anyio

BIG = os.urandom(300_000)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "big.bin").write_bytes(BIG)
    (root / "app.js").write_text("console.log(1)")
    (root / "app.js.gz").write_bytes(gzip.compress(b"console.log(1)"))
    (root / "app.js.br").write_bytes(brotli.compress(b"console.log(1)"))
    (root / "sub" / "a b.txt").write_text("spaced")
    (tmp_path / "secret.txt").write_text("top secret")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    (root / "inside").symlink_to(root / "app.js")
    return root


@asynccontextmanager
async def running(service: Service[Request, Response]) -> AsyncIterator[int]:
    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve, listener, service)
        yield listener.local_addr.port
        tg.cancel_scope.cancel()


def raw_get(port: int, target: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


async def test_file_validators(site: Path) -> None:
    async with running(ServeDir(site)) as port, httpx.AsyncClient() as c:
        url = f"http://127.0.0.1:{port}/big.bin"
        r = await c.get(url)
        assert r.content == BIG
        assert r.headers["accept-ranges"] == "bytes"
        etag, last_modified = r.headers["etag"], r.headers["last-modified"]
        assert (await c.get(url, headers={"If-None-Match": etag})).status_code == 304
        assert (await c.get(url, headers={"If-None-Match": f'"x", W/{etag}'})).status_code == 304
        assert (await c.get(url, headers={"If-None-Match": '"other"'})).status_code == 200
        r = await c.get(url, headers={"If-Modified-Since": last_modified})
        assert r.status_code == 304
        old = "Mon, 01 Jan 2001 00:00:00 GMT"
        assert (await c.get(url, headers={"If-Modified-Since": old})).status_code == 200
        r = await c.head(url)
        assert r.status_code == 200
        assert r.headers["content-length"] == str(len(BIG))
        assert r.content == b""
        assert (await c.post(url)).status_code == 405


async def test_ranges_with_curl(site: Path, require_peer: Callable[[str], str]) -> None:
    curl = require_peer("curl")
    async with running(ServeDir(site)) as port:
        url = f"http://127.0.0.1:{port}/big.bin"

        def fetch(*args: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run([curl, "-sS", *args, url], capture_output=True, timeout=10)

        single = await anyio.to_thread.run_sync(fetch, "-r", "100-199")
        assert single.stdout == BIG[100:200]
        tail = await anyio.to_thread.run_sync(fetch, "-r", "-50")
        assert tail.stdout == BIG[-50:]
        multi = await anyio.to_thread.run_sync(fetch, "-i", "-r", "0-9,20-29")
        head, _, body = multi.stdout.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 206")
        assert b"multipart/byteranges; boundary=" in head
        assert BIG[0:10] in body
        assert BIG[20:30] in body
        assert b"Content-Range: bytes 20-29/300000" in body
        bad = await anyio.to_thread.run_sync(fetch, "-i", "-r", "400000-")
        assert bad.stdout.startswith(b"HTTP/1.1 416")
        assert b"Content-Range: bytes */300000" in bad.stdout


async def test_if_range(site: Path) -> None:
    async with running(ServeDir(site)) as port, httpx.AsyncClient() as c:
        url = f"http://127.0.0.1:{port}/big.bin"
        etag = (await c.head(url)).headers["etag"]
        r = await c.get(url, headers={"Range": "bytes=0-3", "If-Range": etag})
        assert r.status_code == 206
        assert r.content == BIG[:4]
        assert r.headers["content-range"] == "bytes 0-3/300000"
        r = await c.get(url, headers={"Range": "bytes=0-3", "If-Range": '"stale"'})
        assert r.status_code == 200
        assert len(r.content) == len(BIG)


async def test_precompressed_siblings(site: Path) -> None:
    async with running(ServeDir(site)) as port, httpx.AsyncClient() as c:
        url = f"http://127.0.0.1:{port}/app.js"
        r = await c.get(url, headers={"Accept-Encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip"
        assert r.text == "console.log(1)"  # httpx decoded the gzip sibling
        assert r.headers["vary"] == "Accept-Encoding"
        assert r.headers["content-type"] == "text/javascript; charset=utf-8"
        r = await c.get(url, headers={"Accept-Encoding": "gzip, br;q=0"})
        assert r.headers["content-encoding"] == "gzip"
        r = await c.get(url, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in r.headers
        assert r.text == "console.log(1)"
        plain_etag = r.headers["etag"]
        raw = (await anyio.to_thread.run_sync(raw_get, port, "/app.js")).split(b"\r\n\r\n")[0]
        assert b"Content-Encoding" not in raw
        async with c.stream("GET", url, headers={"Accept-Encoding": "br"}) as s:
            assert s.headers["content-encoding"] == "br"
            assert s.headers["etag"] != plain_etag
            raw_body = b"".join([chunk async for chunk in s.aiter_raw()])
            assert raw_body == brotli.compress(b"console.log(1)")


async def test_directories(site: Path) -> None:
    async with running(ServeDir(site, listing=True)) as port, httpx.AsyncClient() as c:
        base = f"http://127.0.0.1:{port}"
        assert (await c.get(f"{base}/")).text == "<h1>home</h1>"
        r = await c.get(f"{base}/sub?x=1")
        assert r.status_code == 301
        assert r.headers["location"] == "/sub/?x=1"
        listing = (await c.get(f"{base}/sub/")).text
        assert '<a href="a%20b.txt">a b.txt</a>' in listing
        assert (await c.get(f"{base}/sub/a%20b.txt")).text == "spaced"
    async with running(ServeDir(site)) as port, httpx.AsyncClient() as c:
        assert (await c.get(f"http://127.0.0.1:{port}/empty/")).status_code == 404


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/sub/%2E%2E/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/big.bin%00.txt",
        "/sub%5c..%5c..%5csecret.txt",
        "/escape",
    ],
)
async def test_traversal_refused(site: Path, target: str) -> None:
    async with running(ServeDir(site)) as port:
        out = await anyio.to_thread.run_sync(raw_get, port, target)
    assert out.startswith((b"HTTP/1.1 404", b"HTTP/1.1 400")), out[:80]
    assert b"top secret" not in out


async def test_symlinks_inside_and_allowed(site: Path) -> None:
    async with running(ServeDir(site)) as port, httpx.AsyncClient() as c:
        assert (await c.get(f"http://127.0.0.1:{port}/inside")).text == "console.log(1)"
    async with running(ServeDir(site, follow_symlinks=True)) as port, httpx.AsyncClient() as c:
        assert (await c.get(f"http://127.0.0.1:{port}/escape")).text == "top secret"


async def test_mounted_under_a_wildcard_and_serve_file(site: Path) -> None:
    router = Router()
    router.route("/static/{*path}", ServeDir(site), methods=["GET", "HEAD"])
    router.route("/favicon", ServeFile(site / "app.js"), methods=["GET", "HEAD"])
    async with running(router) as port, httpx.AsyncClient() as c:
        base = f"http://127.0.0.1:{port}"
        assert (await c.get(f"{base}/static/sub/a%20b.txt")).text == "spaced"
        assert (await c.get(f"{base}/favicon")).text == "console.log(1)"
        assert (await c.get(f"{base}/static/nope")).status_code == 404


def test_parse_range_unit() -> None:
    assert parse_range("bytes=0-0", 10) == [ByteRange(0, 0)]
    assert parse_range("bytes=5-", 10) == [ByteRange(5, 9)]
    assert parse_range("bytes=-3", 10) == [ByteRange(7, 9)]
    assert parse_range("bytes=-30", 10) == [ByteRange(0, 9)]
    assert parse_range("bytes=8-100", 10) == [ByteRange(8, 9)]
    assert parse_range("bytes=0-1, 20-30", 10) == [ByteRange(0, 1)]
    assert parse_range("items=0-1", 10) is None
    assert parse_range("bytes=3-1", 10) is None
    assert parse_range("bytes=a-b", 10) is None
    assert parse_range("bytes=" + ",".join(["0-0"] * 33), 10) is None
    with pytest.raises(Unsatisfiable):
        parse_range("bytes=10-", 10)
    with pytest.raises(Unsatisfiable):
        parse_range("bytes=-0", 10)
