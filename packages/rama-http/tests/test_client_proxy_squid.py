"""The client through squid, a real proxy: forwarding (absolute-form, pooled per proxy) and
CONNECT tunnels, the proxy given explicitly or taken from the environment."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from rama_http_client_peer import echo, make_cert, rama_server, server_ssl

from rama_http.client import HttpClient
from rama_tls import TlsClientConfig

pytestmark = pytest.mark.anyio


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def squid(binary: str, tmp: Path) -> AsyncIterator[int]:
    port = _free_port()
    conf = tmp / "squid.conf"
    conf.write_text(
        f"http_port 127.0.0.1:{port}\n"
        "http_access allow all\n"
        "cache deny all\n"
        "cache_mem 8 MB\n"
        "access_log none\n"
        "cache_log /dev/null\n"
        f"pid_filename {tmp}/squid.pid\n"
        f"coredump_dir {tmp}\n"
        "shutdown_lifetime 0 seconds\n"
        "visible_hostname rama-test\n"
        "pinger_enable off\n"
    )
    proc = await anyio.open_process(
        [binary, "-N", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with anyio.fail_after(15):
            while True:
                try:
                    s = await anyio.connect_tcp("127.0.0.1", port)
                except OSError:
                    if proc.returncode is not None:
                        pytest.fail("squid exited at start")
                    await anyio.sleep(0.05)
                    continue
                await s.aclose()
                break
        yield port
    finally:
        # squid takes seconds to stop gracefully (and it has no children here: no pinger,
        # no cache_dir), so it is killed; nothing of it is kept
        proc.kill()
        with anyio.move_on_after(5, shield=True):
            await proc.wait()


def _header(got: dict[str, object], name: str) -> str | None:
    for n, v in got["headers"]:  # type: ignore[attr-defined]
        if n.lower() == name:
            return str(v)
    return None


async def test_forward_mode_through_squid_pools_per_proxy(
    require_peer: Callable[[str], str], tmp_path: Path
) -> None:
    async with squid(require_peer("squid"), tmp_path) as proxy, rama_server(echo) as a:
        async with rama_server(echo) as b:
            client = HttpClient(proxy=f"http://127.0.0.1:{proxy}", proxy_mode="forward", timeout=10)
            async with client:
                for port, path in ((a, "/one?x=1"), (b, "/two"), (a, "/three")):
                    r = await client.get(f"http://127.0.0.1:{port}{path}")
                    got = await r.json()
                    assert got["target"] == path
                    via = _header(got, "via") or ""
                    assert "rama-test" in via  # squid forwarded it itself
                stats = client.pool_stats()
                assert list(stats.per_host) == [f"http://127.0.0.1:{proxy}"]
                assert stats.total == 1  # one keep-alive connection to squid for both origins


async def test_tunnel_through_squid_from_the_environment(
    require_peer: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ck = make_cert("localhost")
    async with (
        squid(require_peer("squid"), tmp_path) as proxy,
        rama_server(echo, ssl_context=server_ssl(ck, tmp_path)) as port,
    ):
        for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy}")
        async with HttpClient(tls=TlsClientConfig(ca_pem=ck.cert_pem()), timeout=10) as client:
            assert client.env_proxies is not None
            r = await client.get(f"https://localhost:{port}/secret")
            got = await r.json()
            assert got["target"] == "/secret"
            assert _header(got, "via") is None  # a tunnel: squid saw only TLS
