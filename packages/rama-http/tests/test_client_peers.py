"""The client against real servers: nginx (cleartext and TLS, keep-alive limits, large
downloads), haproxy in front of nginx, the rama server, and curl as the reference for
what goes on the wire."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream
from rama_http_client_peer import RawServer, echo, rama_server, read_head
from rama_peer_process import free_port, spawn_peer, start_nginx

from rama_http.client import HttpClient
from rama_tls import CertificateAuthority, TlsClientConfig

pytestmark = [pytest.mark.anyio, pytest.mark.peer]

BIG = 8 * 1024 * 1024

NGINX_SERVERS = """\
    keepalive_requests 3;
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        listen 127.0.0.1:{plain_port};
        ssl_certificate {root}/leaf.pem;
        ssl_certificate_key {root}/leaf.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        root {root}/www;
        location = /conn {{
            return 200 "$connection $connection_requests $http_x_b\\n";
        }}
    }}
"""

HAPROXY_CONF = """\
global
    maxconn 100
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
    option http-keep-alive
frontend fe
    bind 127.0.0.1:{port}
    http-response set-header X-Via haproxy
    default_backend be
backend be
    server nginx 127.0.0.1:{nginx_port}
"""


@dataclass
class Nginx:
    tls_port: int
    plain_port: int
    ca: CertificateAuthority
    big_sha: str


@pytest.fixture
def nginx(tmp_path: Path, require_peer: Callable[[str], str]) -> Iterator[Nginx]:
    binary = require_peer("nginx")
    root = tmp_path / "nginx"
    (root / "www").mkdir(parents=True)
    big = os.urandom(BIG)
    (root / "www" / "big.bin").write_bytes(big)
    (root / "www" / "small.txt").write_bytes(b"small\n")
    ca = CertificateAuthority.create("client test CA")
    ca.issue("localhost", "127.0.0.1").save(root / "leaf.pem", root / "leaf.key")
    tls_port, plain_port = free_port(), free_port()
    body = NGINX_SERVERS.format(root=root, tls_port=tls_port, plain_port=plain_port)
    with start_nginx(binary, root, body, ports=(tls_port, plain_port), worker_connections=256):
        yield Nginx(tls_port, plain_port, ca, hashlib.sha256(big).hexdigest())


def _client(n: Nginx, **kw: object) -> HttpClient:
    return HttpClient(tls=TlsClientConfig(ca_pem=n.ca.cert_pem()), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("engine", ["fast", "h11"])
async def test_nginx_keep_alive_limit(nginx: Nginx, scheme: str, engine: str) -> None:
    port = nginx.plain_port if scheme == "http" else nginx.tls_port
    async with _client(nginx, http1_engine=engine) as c:
        seen = []
        for _ in range(7):
            r = await c.get(f"{scheme}://localhost:{port}/conn", headers=[("X-B", "2")])
            conn_id, n, xb = (await r.text()).split()
            assert xb == "2"
            seen.append((conn_id, int(n)))
        # nginx answers the 3rd request of a connection with Connection: close
        assert [n for _, n in seen] == [1, 2, 3, 1, 2, 3, 1]
        assert len({cid for cid, _ in seen}) == 3
        s = c.pool_stats()
        assert (s.idle, s.active) == (1, 0)


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_nginx_large_download(nginx: Nginx, scheme: str) -> None:
    port = nginx.plain_port if scheme == "http" else nginx.tls_port
    async with _client(nginx) as c:
        h = hashlib.sha256()
        size = 0
        async with c.stream("GET", f"{scheme}://localhost:{port}/big.bin") as r:
            assert r.status == 200
            async for chunk in r.body:
                h.update(chunk)
                size += len(chunk)
        assert size == BIG
        assert h.hexdigest() == nginx.big_sha
        r = await c.get(f"{scheme}://localhost:{port}/big.bin")
        assert hashlib.sha256(await r.read()).hexdigest() == nginx.big_sha
        r = await c.get(f"{scheme}://localhost:{port}/missing")
        assert r.status == 404


async def test_haproxy_in_front_of_nginx(
    nginx: Nginx, tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    binary = require_peer("haproxy")
    port = free_port()
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(HAPROXY_CONF.format(port=port, nginx_port=nginx.plain_port))
    with spawn_peer([binary, "-f", str(conf), "-db"], ports=(port,), name="haproxy"):
        async with HttpClient() as c:
            for _ in range(4):
                r = await c.get(f"http://127.0.0.1:{port}/small.txt")
                assert r.status == 200
                assert r.headers.get("x-via") == "haproxy"
                assert await r.read() == b"small\n"
            r = await c.get(f"http://127.0.0.1:{port}/big.bin")
            assert hashlib.sha256(await r.read()).hexdigest() == nginx.big_sha
            # haproxy keeps the client side alive: one connection for everything
            assert c.pool_stats().idle == 1


async def test_rama_server_many_requests() -> None:
    async with rama_server(echo) as port, HttpClient() as c:
        for i in range(20):
            r = await c.post(f"http://127.0.0.1:{port}/n{i}", content=b"x" * i)
            d = await r.json()
            assert d["target"] == f"/n{i}"
            assert d["body"] == "x" * i
        assert c.pool_stats().idle == 1


async def test_wire_matches_curl(require_peer: Callable[[str], str]) -> None:
    """Same headers, same bytes: curl (with its defaults removed) and rama send one request."""
    curl = require_peer("curl")
    captured: list[bytes] = []

    async def capture(stream: SocketStream, n: int) -> None:
        head, rest = await read_head(stream)
        body = rest
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(body) < length:
            body += await stream.receive()
        captured.append(head + body)
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    srv = RawServer(capture)
    headers = [("X-Custom-Header", "Kept"), ("x-lower", "v"), ("Accept", "*/*")]
    async with srv.run():
        url = f"http://127.0.0.1:{srv.port}/path?q=1"
        args = [curl, "-s", "-o", "/dev/null", "-H", "User-Agent:"]
        for n, v in headers:
            args += ["-H", f"{n}: {v}"]
        await anyio.run_process([*args, url])
        await anyio.run_process([*args, "--data-binary", "payload", "-H", "Content-Type:", url])
        async with HttpClient() as c:
            await c.get(url, headers=headers)
            await c.post(url, headers=headers, content=b"payload")
    curl_get, curl_post, rama_get, rama_post = captured
    assert rama_get == curl_get
    assert rama_post == curl_post
