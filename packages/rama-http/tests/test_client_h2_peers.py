"""The h2 client against nginx over TLS (ALPN h2): downloads, concurrency on one
connection, and nginx's GOAWAY after ``keepalive_requests`` (requests go on)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from rama_peer_process import free_port, start_nginx
from test_client_peers import Nginx

from rama_http import Version
from rama_http.client import HttpClient
from rama_tls import CertificateAuthority, TlsClientConfig

pytestmark = [pytest.mark.anyio, pytest.mark.peer]

BIG = 8 * 1024 * 1024

NGINX_H2_SERVERS = """\
    keepalive_requests {keepalive_requests};
    http2_max_concurrent_streams 32;
    server {{
        listen 127.0.0.1:{tls_port} ssl http2;
        listen 127.0.0.1:{plain_port};
        ssl_certificate {root}/leaf.pem;
        ssl_certificate_key {root}/leaf.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        root {root}/www;
        location = /conn {{
            return 200 "$connection $connection_requests $http2 $http_x_b\\n";
        }}
    }}
"""


def _start(tmp_path: Path, binary: str, keepalive_requests: int) -> Iterator[Nginx]:
    root = tmp_path / "nginx"
    (root / "www").mkdir(parents=True)
    big = os.urandom(BIG)
    (root / "www" / "big.bin").write_bytes(big)
    ca = CertificateAuthority.create("client h2 test CA")
    ca.issue("localhost", "127.0.0.1").save(root / "leaf.pem", root / "leaf.key")
    tls_port, plain_port = free_port(), free_port()
    body = NGINX_H2_SERVERS.format(
        root=root, tls_port=tls_port, plain_port=plain_port, keepalive_requests=keepalive_requests
    )
    with start_nginx(binary, root, body, ports=(tls_port,), worker_connections=256):
        yield Nginx(tls_port, plain_port, ca, hashlib.sha256(big).hexdigest())


@pytest.fixture
def nginx_h2(tmp_path: Path, require_peer: Callable[[str], str]) -> Iterator[Nginx]:
    yield from _start(tmp_path, require_peer("nginx"), 1000)


@pytest.fixture
def nginx_h2_short(tmp_path: Path, require_peer: Callable[[str], str]) -> Iterator[Nginx]:
    yield from _start(tmp_path, require_peer("nginx"), 3)


def _client(n: Nginx, **kw: object) -> HttpClient:
    return HttpClient(tls=TlsClientConfig(ca_pem=n.ca.cert_pem()), **kw)  # type: ignore[arg-type]


async def test_nginx_h2_get_and_download(nginx_h2: Nginx) -> None:
    base = f"https://localhost:{nginx_h2.tls_port}"
    async with _client(nginx_h2) as client:
        r = await client.get(f"{base}/conn", headers=[("X-B", "v")])
        assert r.raw.version == Version.HTTP_2
        conn, reqs, h2, xb = (await r.text()).split()
        assert (reqs, h2, xb) == ("1", "h2", "v")
        digest = hashlib.sha256()
        async with client.stream("GET", f"{base}/big.bin") as r:
            async for chunk in r.body:
                digest.update(chunk)
        assert digest.hexdigest() == nginx_h2.big_sha
        r = await client.get(f"{base}/conn")
        assert (await r.text()).split()[0] == conn  # the same connection
        r = await client.get(f"{base}/missing")
        assert r.status == 404


async def test_nginx_h2_concurrent_on_one_connection(nginx_h2: Nginx) -> None:
    base = f"https://localhost:{nginx_h2.tls_port}"
    async with _client(nginx_h2) as client:
        first = (await (await client.get(f"{base}/conn")).text()).split()[0]
        conns: list[str] = []

        async def one() -> None:
            r = await client.get(f"{base}/conn")
            conns.append((await r.text()).split()[0])

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for _ in range(30):
                    tg.start_soon(one)
        assert set(conns) == {first}
        assert client.pool_stats().total == 1


async def test_nginx_h2_goaway_after_keepalive_requests(nginx_h2_short: Nginx) -> None:
    base = f"https://localhost:{nginx_h2_short.tls_port}"
    async with _client(nginx_h2_short) as client:
        seen: list[tuple[str, str]] = []
        for _ in range(10):
            r = await client.get(f"{base}/conn")
            conn, reqs, _h2 = (await r.text()).split()
            seen.append((conn, reqs))
        # nginx sends GOAWAY after 3 requests: a new connection takes over each time
        assert len({c for c, _ in seen}) >= 4
        assert all(int(n) <= 3 for _, n in seen)
        stats = client.pool_stats()
        assert stats.active == 0
