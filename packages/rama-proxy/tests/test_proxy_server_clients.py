"""Real clients through the one-port server: requests, httpx and headless Chromium."""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import requests

from rama_core import Context, service_fn
from rama_http import Request, Response
from rama_http.server import serve
from rama_net import TcpListener
from rama_proxy import ProxyServer, ProxyServerConfig
from rama_tls import TlsAcceptorConfig, self_signed

pytestmark = [
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
]

PAGE = "<html><body><p id='hello'>hello through rama</p></body></html>"


@asynccontextmanager
async def stack(tmp_path: Path) -> AsyncIterator[tuple[int, int, int, Path]]:
    """(proxy port, http origin port, https origin port, origin CA file)."""

    @service_fn
    async def page(ctx: Context, req: Request) -> Response:
        return Response(200, headers=[("content-type", "text/html")], body=PAGE.encode())

    cert = self_signed("localhost", "127.0.0.1")
    ca_file = tmp_path / "origin.pem"
    ca_file.write_bytes(cert.cert_pem())
    plain = TcpListener.bind("127.0.0.1:0")
    secure = TcpListener.bind("127.0.0.1:0")
    server = ProxyServer(ProxyServerConfig(bind="127.0.0.1:0", tls_self_signed=True))
    server.bind()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(plain, page))
        tg.start_soon(lambda: serve(secure, page, tls=TlsAcceptorConfig.single(cert)))
        tg.start_soon(server.serve)
        yield server.local_addr.port, plain.local_addr.port, secure.local_addr.port, ca_file
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_requests_through_the_proxy(tmp_path: Path) -> None:
    async with stack(tmp_path) as (proxy, http_port, https_port, ca):
        proxies = {"http": f"http://127.0.0.1:{proxy}", "https": f"http://127.0.0.1:{proxy}"}

        def fetch() -> tuple[str, str]:
            with requests.Session() as s:
                s.trust_env = False
                a = s.get(f"http://127.0.0.1:{http_port}/", proxies=proxies, timeout=10)
                b = s.get(
                    f"https://127.0.0.1:{https_port}/", proxies=proxies, verify=str(ca), timeout=10
                )
                return a.text, b.text

        a, b = await anyio.to_thread.run_sync(fetch)
    assert a == PAGE
    assert b == PAGE


@pytest.mark.anyio
async def test_httpx_through_the_proxy_plain_and_tls(tmp_path: Path) -> None:
    async with stack(tmp_path) as (proxy, http_port, https_port, ca):
        for proxy_url, proxy_ssl in (
            (f"http://127.0.0.1:{proxy}", None),
            (f"https://127.0.0.1:{proxy}", False),  # the proxy behind TLS (self-signed)
        ):
            mounts = httpx.Proxy(proxy_url, ssl_context=_insecure() if proxy_ssl is False else None)
            async with httpx.AsyncClient(
                proxy=mounts,
                verify=ssl.create_default_context(cafile=str(ca)),
                trust_env=False,
                timeout=10,
            ) as client:
                a = await client.get(f"http://127.0.0.1:{http_port}/")
                b = await client.get(f"https://127.0.0.1:{https_port}/")
            assert (a.status_code, a.text) == (200, PAGE)
            assert (b.status_code, b.text) == (200, PAGE)


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.mark.anyio
@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_chromium_loads_pages_through_the_proxy(
    tmp_path: Path, scheme: str, require_peer: Any
) -> None:
    chromium = require_peer("chromium")
    async with stack(tmp_path) as (proxy, http_port, https_port, _):
        for url in (f"http://127.0.0.1:{http_port}/", f"https://127.0.0.1:{https_port}/"):
            with tempfile.TemporaryDirectory() as profile:
                result = await anyio.run_process(
                    [
                        chromium,
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--no-first-run",
                        f"--user-data-dir={profile}",
                        f"--proxy-server={scheme}://127.0.0.1:{proxy}",
                        "--proxy-bypass-list=<-loopback>",
                        "--ignore-certificate-errors",
                        "--dump-dom",
                        url,
                    ],
                    check=False,
                    env={**os.environ, "HOME": profile},
                )
            dom = result.stdout.decode()
            assert "hello through rama" in dom, (url, result.stderr.decode()[-2000:])
