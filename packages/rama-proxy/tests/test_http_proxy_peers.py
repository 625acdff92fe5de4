"""HttpProxy with real clients and peers: requests, httpx, headless Chromium, squid upstream."""

from __future__ import annotations

import os
import ssl
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
import requests

from rama_net import connect_tcp
from rama_proxy import (
    Egress,
    HttpProxy,
    ProxyAuthenticator,
    StaticCredentials,
    StaticUpstream,
)
from rama_tls import CertificateAuthority, StaticCertResolver, TlsAcceptorConfig

sys.path.insert(0, str(Path(__file__).parent))
from http_proxy_testutil import free_port, run_origin, run_proxy

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("rama proxy peers CA")


def _tls(ca: CertificateAuthority) -> TlsAcceptorConfig:
    leaf = ca.issue("127.0.0.1", "localhost")
    return TlsAcceptorConfig(
        resolver=StaticCertResolver(default=leaf), alpn_protocols=("http/1.1",)
    )


@pytest.mark.anyio
async def test_requests_through_the_proxy(ca: CertificateAuthority, tmp_path: Path) -> None:
    auth = ProxyAuthenticator(StaticCredentials({"req": "pw"}))
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert_pem())
    async with (
        run_origin() as origin,
        run_origin(tls=_tls(ca)) as secure,
        run_proxy(authenticator=auth) as (port, _, rec),
    ):
        proxy = f"http://req:pw@127.0.0.1:{port}"

        def go() -> list[tuple[int, str]]:
            with requests.Session() as s:
                s.proxies = {"http": proxy, "https": proxy}
                out = []
                for url in (f"{origin.url}/r1", f"{origin.url}/r2"):
                    r = s.post(url, data=b"x" * 1000, timeout=10)
                    out.append((r.status_code, r.text))
                r = s.get(f"https://127.0.0.1:{secure.port}/r3", verify=str(ca_file), timeout=10)
                out.append((r.status_code, r.text))
                r = requests.get(
                    f"{origin.url}/noauth", proxies={"http": f"http://127.0.0.1:{port}"}, timeout=10
                )
                out.append((r.status_code, r.text))
                return out

        results = await anyio.to_thread.run_sync(go)
        assert [s for s, _ in results] == [200, 200, 200, 407]
        assert results[0][1].startswith("POST /r1\n")
        assert "len=1000" in results[0][1]
        assert results[2][1].startswith("GET /r3\n")
        assert "Proxy-Authorization" not in results[0][1]
        # requests kept its connection to the proxy: one client port for r1 and r2
        records = await rec.wait(4)
        by_target = {r.target: r for r in records}
        r1, r2 = by_target[f"{origin.url}/r1"], by_target[f"{origin.url}/r2"]
        assert r1.client == r2.client
        assert r1.bytes_in == 1000
        assert by_target[f"127.0.0.1:{secure.port}"].protocol == "connect"


@pytest.mark.anyio
async def test_httpx_through_the_proxy(ca: CertificateAuthority) -> None:
    async with (
        run_origin() as origin,
        run_origin(tls=_tls(ca)) as secure,
        run_proxy(via="rama-test") as (port, _, rec),
    ):
        verify = ssl.create_default_context(cadata=ca.cert_pem().decode())
        async with httpx.AsyncClient(proxy=f"http://127.0.0.1:{port}", verify=verify) as client:
            r = await client.get(f"{origin.url}/x1", headers=[("X-Camel", "1"), ("x-low", "2")])
            assert r.status_code == 200
            assert r.headers["via"] == "1.1 rama-test"
            lines = r.text.splitlines()
            assert lines[0] == "GET /x1"
            assert "X-Camel: 1" in lines
            assert "Via: 1.1 rama-test" in lines

            async def body() -> AsyncIterator[bytes]:
                for _ in range(4):
                    yield b"y" * 5000

            r = await client.post(f"{origin.url}/up", content=body())
            assert r.status_code == 200
            assert "len=20000" in r.text
            async with client.stream("GET", f"{origin.url}/big/300000") as r:
                n = 0
                async for chunk in r.aiter_bytes():
                    n += len(chunk)
            assert n == 300000
            r = await client.get(f"https://127.0.0.1:{secure.port}/x2")
            assert r.status_code == 200
            assert r.text.startswith("GET /x2")
        records = await rec.wait(4)
        assert sorted(r.protocol for r in records) == ["connect", "http", "http", "http"]
        big = next(r for r in records if r.target == f"{origin.url}/big/300000")
        assert big.bytes_out == 300000


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # a browser start per backend is slow
async def test_chromium_loads_http_and_https_pages(
    ca: CertificateAuthority, require_peer: Callable[[str], str], anyio_backend: str
) -> None:
    chromium = require_peer("chromium")
    async with (
        run_origin(tls=_tls(ca)) as secure,
        run_origin() as origin,
        run_proxy() as (port, _, rec),
    ):
        img = f"https://127.0.0.1:{secure.port}/pixel.png"
        origin.html = (
            f"<html><body><p id='hello'>hello through the proxy</p><img src='{img}'></body></html>"
        )
        with tempfile.TemporaryDirectory() as profile:
            result = await anyio.run_process(
                [
                    chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    f"--user-data-dir={profile}",
                    f"--proxy-server=http://127.0.0.1:{port}",
                    "--proxy-bypass-list=<-loopback>",  # loopback is direct by default
                    "--ignore-certificate-errors",
                    "--dump-dom",
                    f"{origin.url}/page.html",
                ],
                check=False,
            )
        dom = result.stdout.decode()
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        assert "hello through the proxy" in dom
        assert any(t == "/page.html" for _, t, *_ in origin.seen)
        # the https image came through a CONNECT tunnel
        assert any(t == "/pixel.png" for _, t, *_ in secure.seen)
        ours = [r for r in rec.finished if "127.0.0.1" in (r.target or "")]
        assert {(r.protocol, r.status) for r in ours} >= {("http", 200), ("connect", 200)}


@asynccontextmanager
async def _squid(squid: str) -> AsyncIterator[tuple[int, Path]]:
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o777)  # squid drops root privileges to its own user
        conf = Path(d) / "squid.conf"
        conf.write_text(
            f"""http_port 127.0.0.1:{port}
acl all src all
http_access allow all
cache deny all
cache_mem 0 MB
pinger_enable off
pid_filename {d}/squid.pid
access_log stdio:{d}/access.log
cache_log {d}/cache.log
coredump_dir {d}
shutdown_lifetime 0 seconds
visible_hostname rama-test-squid
"""
        )
        async with await anyio.open_process([squid, "-N", "-f", str(conf)]) as proc:
            try:
                with anyio.fail_after(15):
                    while True:
                        try:
                            s = await connect_tcp(f"127.0.0.1:{port}")
                        except OSError:
                            if proc.returncode is not None:
                                log = (Path(d) / "cache.log").read_text(errors="replace")
                                pytest.fail(f"squid exited: {log[-2000:]}")
                            await anyio.sleep(0.1)
                            continue
                        await s.aclose()
                        break
                yield port, Path(d)
            finally:
                proc.terminate()
                with anyio.move_on_after(5):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # one squid start is enough
async def test_chain_through_squid(require_peer: Callable[[str], str], anyio_backend: str) -> None:
    squid = require_peer("squid")
    require_peer("curl")
    async with run_origin() as origin, _squid(squid) as (squid_port, squid_dir):
        upstream = f"http://127.0.0.1:{squid_port}"
        proxy = HttpProxy(egress=Egress(selector=StaticUpstream(upstream)))
        async with run_proxy(proxy) as (port, _, rec):
            for args in ((), ("-p",)):
                r = await anyio.run_process(
                    [
                        "curl",
                        "-sS",
                        "--max-time",
                        "10",
                        *args,
                        "-x",
                        f"http://127.0.0.1:{port}",
                        f"{origin.url}/sq{len(args)}",
                    ],
                    check=False,
                )
                assert r.returncode == 0, r.stderr.decode()
                assert r.stdout.decode().startswith(f"GET /sq{len(args)}\n")
            # the forwarded request went to squid in absolute-form: squid added its Via
            text = r.stdout.decode()
            fwd = next(h for m, t, h, *_ in origin.seen if t == "/sq0")
            assert any(n.lower() == "via" and "rama-test-squid" in v for n, v in fwd)
            assert "rama-test-squid" not in text  # the tunnelled one was not touched by squid
            records = await rec.wait(2)
            assert {r.upstream for r in records} == {upstream}
        # squid logged both (the CONNECT once its tunnel closed)
        log = squid_dir / "access.log"
        with anyio.fail_after(5):
            while True:
                lines = log.read_text() if log.exists() else ""
                if "CONNECT" in lines and f"{origin.url}/sq0" in lines:
                    break
                await anyio.sleep(0.1)
