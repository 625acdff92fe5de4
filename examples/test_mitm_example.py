"""Run examples/mitm_proxy.py as a user would: curl (HTTP proxy and SOCKS5) and python
websockets through it to a local TLS origin; the hooks' header and message rewrite show."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
import websockets.sync.client
from rama_example_process import start_example_lines, stop_example
from rama_peer_process import run_curl
from rama_test_origin import tls_origin

from rama_core import Context
from rama_http import Request, Response
from rama_http.ws import WebSocket, WebSocketUpgrade
from rama_tls import CertificateAuthority

HERE = Path(__file__).parent
START_TIMEOUT = 10.0


async def _echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


_WS = WebSocketUpgrade(_echo)


async def _origin(ctx: Context, req: Request) -> Response:
    if req.path == "/ws":
        return await _WS.serve(ctx, req)
    return Response.from_text(f"mitm header: {req.headers.get('x-rama-mitm')}\n")


def _start(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    return start_example_lines(HERE / "mitm_proxy.py", *args, until="ca", timeout=START_TIMEOUT)


def _stop(proc: subprocess.Popen[str]) -> str:
    return stop_example(proc)[0]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the example runs in a subprocess
async def test_mitm_proxy_example(
    tmp_path: Path, require_peer: Callable[[str], str], anyio_backend: str
) -> None:
    require_peer("curl")
    origin_ca = CertificateAuthority.create("example origin CA")
    origin_ca_file = tmp_path / "origin-ca.pem"
    origin_ca_file.write_bytes(origin_ca.cert_pem())
    ca_dir = tmp_path / "ca"
    async with tls_origin(origin_ca, _origin) as oport:
        proc, lines = await anyio.to_thread.run_sync(
            lambda: _start(
                "--listen",
                "127.0.0.1:0",
                "--socks-listen",
                "127.0.0.1:0",
                "--ca-dir",
                str(ca_dir),
                "--upstream-ca",
                str(origin_ca_file),
            )
        )
        try:
            http_addr, socks_addr, ca_file = lines["listening on"], lines["socks on"], lines["ca"]
            assert Path(ca_file) == ca_dir / "ca.pem"
            assert (ca_dir / "ca.key").stat().st_mode & 0o077 == 0
            url = f"https://localhost:{oport}/"
            for proxy in (["-x", f"http://{http_addr}"], ["--socks5-hostname", socks_addr]):
                code, out, err = await run_curl("-i", *proxy, "--cacert", ca_file, url)
                assert code == 0, err
                assert "mitm header: 1" in out
                assert "x-rama-mitm: intercepted" in out.lower()

            def ws_client() -> object:
                ctx = ssl.create_default_context(cafile=ca_file)
                with websockets.sync.client.connect(
                    f"wss://localhost:{oport}/ws",
                    proxy=f"http://{http_addr}",
                    ssl=ctx,
                    open_timeout=5,
                ) as ws:
                    ws.send("hello")
                    return ws.recv(timeout=5)

            assert await anyio.to_thread.run_sync(ws_client) == "[mitm] hello"
        finally:
            out = await anyio.to_thread.run_sync(_stop, proc)
        assert "stopped" in out
