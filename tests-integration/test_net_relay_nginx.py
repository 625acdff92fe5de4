"""rama-net's TcpForwarder in front of a real nginx, driven by real curl processes.

nginx (single process, config and every path under tmp_path) serves a 5 MB
random file and a small page, and accepts PUT uploads (dav module). An
in-process TcpListener + TcpForwarder relays to it; curl talks only to the
relay. Bodies are compared by sha256 in both directions, on the splice path
and on the copy loop, on asyncio and on trio.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteStream
from rama_peer_process import free_port, start_nginx

from rama_core import Context
from rama_net import ForwardStats, TcpForwarder, TcpListener, TcpServerConfig

pytestmark = [pytest.mark.anyio, pytest.mark.peer]

BIG = 5 * 1024 * 1024
PAGE = b"<html><body>hello through rama</body></html>\n"
PARALLEL = 20

NGINX_SERVERS = """\
    sendfile on;
    keepalive_requests 1000;
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
        location /upload/ {{
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 64m;
        }}
    }}
"""


@dataclass
class Origin:
    port: int
    www: Path
    big_sha: str


@pytest.fixture
def nginx(tmp_path: Path, require_peer: Callable[[str], str]) -> Iterator[Origin]:
    binary = require_peer("nginx")
    root = tmp_path / "nginx"
    www = root / "www"
    (www / "upload").mkdir(parents=True)
    big = os.urandom(BIG)
    (www / "big.bin").write_bytes(big)
    (www / "index.html").write_bytes(PAGE)
    port = free_port()
    with start_nginx(binary, root, NGINX_SERVERS.format(root=root, port=port), ports=(port,)):
        yield Origin(port, www, hashlib.sha256(big).hexdigest())


class Recording:
    """The forwarder, remembering each connection's ForwardStats."""

    def __init__(self, inner: TcpForwarder) -> None:
        self.inner = inner
        self.stats: list[ForwardStats] = []

    async def serve(self, ctx: Context, stream: ByteStream) -> ForwardStats:
        stats = await self.inner.serve(ctx, stream)
        self.stats.append(stats)
        return stats


@asynccontextmanager
async def relay_to(port: int, zero_copy: bool) -> AsyncIterator[tuple[str, Recording]]:
    """An in-process relay to nginx; on exit, waits until every connection is done."""
    recording = Recording(TcpForwarder(f"127.0.0.1:{port}", idle_timeout=30, zero_copy=zero_copy))
    listener = TcpListener.bind("127.0.0.1:0")
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, recording, TcpServerConfig(idle_timeout=30))
            try:
                yield f"http://{listener.local_addr}", recording
            finally:
                await listener.aclose()  # serve() returns once connections drained


async def curl(*args: str) -> bytes:
    proc = await anyio.run_process(["curl", "-sS", "--fail", "--max-time", "30", *args])
    return proc.stdout


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


ZERO_COPY = pytest.mark.parametrize("zero_copy", [True, False], ids=["zero-copy", "copy-loop"])


@ZERO_COPY
async def test_parallel_downloads_are_byte_exact(
    nginx: Origin, zero_copy: bool, tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    require_peer("curl")
    outs = [tmp_path / f"dl{i}.bin" for i in range(PARALLEL)]
    async with relay_to(nginx.port, zero_copy) as (base, relay):
        async with anyio.create_task_group() as tg:
            for out in outs:
                tg.start_soon(curl, "-o", str(out), f"{base}/big.bin")
    assert [sha256_file(out) for out in outs] == [nginx.big_sha] * PARALLEL
    assert len(relay.stats) == PARALLEL
    assert all(s.zero_copy is zero_copy for s in relay.stats)
    assert all(s.error is None and not s.idle_timed_out for s in relay.stats)
    # each connection carried one body plus its response headers (< 1 KiB)
    assert all(BIG < s.right_to_left < BIG + 1024 for s in relay.stats)
    assert all(0 < s.left_to_right < 1024 for s in relay.stats)


@ZERO_COPY
async def test_parallel_uploads_are_byte_exact(
    nginx: Origin, zero_copy: bool, tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    require_peer("curl")
    sources = []
    for i in range(4):
        path = tmp_path / f"up{i}.bin"
        path.write_bytes(os.urandom(BIG + i))  # distinct sizes and contents
        sources.append(path)
    async with relay_to(nginx.port, zero_copy) as (base, relay):
        async with anyio.create_task_group() as tg:
            for src in sources:
                tg.start_soon(curl, "-o", "/dev/null", "-T", str(src), f"{base}/upload/{src.name}")
    for src in sources:
        assert sha256_file(nginx.www / "upload" / src.name) == sha256_file(src)
    assert sorted(s.left_to_right - BIG for s in relay.stats) == pytest.approx(
        [0, 1, 2, 3], abs=1024
    )
    assert all(s.zero_copy is zero_copy and s.error is None for s in relay.stats)


@ZERO_COPY
async def test_keepalive_requests_share_one_relayed_connection(
    nginx: Origin, zero_copy: bool, require_peer: Callable[[str], str]
) -> None:
    require_peer("curl")
    async with relay_to(nginx.port, zero_copy) as (base, relay):
        # one curl, many URLs: requests go one after another on one kept-alive connection
        body = await curl(*[f"{base}/index.html"] * 50)
        head = await curl("-I", f"{base}/big.bin")
    assert body == PAGE * 50
    assert b"HTTP/1.1 200 OK" in head
    assert f"Content-Length: {BIG}".encode() in head
    assert len(relay.stats) == 2
    assert relay.stats[0].right_to_left > 50 * len(PAGE)
    assert all(s.zero_copy is zero_copy for s in relay.stats)


async def test_unreachable_upstream_ends_only_that_connection(
    require_peer: Callable[[str], str],
) -> None:
    require_peer("curl")
    async with relay_to(free_port(), True) as (base, relay):
        for _ in range(3):  # the listener keeps serving after each failed upstream connect
            proc = await anyio.run_process(
                ["curl", "-sS", "--max-time", "10", f"{base}/index.html"], check=False
            )
            # 52: empty reply (FIN); 56: reset, when the relay closes with curl's
            # request still unread in the kernel buffer (the trio stream reads lazily)
            assert proc.returncode in (52, 56), proc.stderr
    assert relay.stats == []  # the connect error ended each connection before forwarding
