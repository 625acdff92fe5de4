"""Headless Chromium through the MITM, trusting the CA by its SPKI hash
(``--ignore-certificate-errors-spki-list``), loads an https page whose script talks to a
WebSocket; the hooks rewrite the page's header and the WebSocket's messages."""

from __future__ import annotations

import base64
import hashlib
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from cryptography.hazmat.primitives import serialization

from rama_core import Context, service_fn
from rama_http import Request, Response
from rama_http.server import serve
from rama_http.ws import WebSocket, WebSocketUpgrade
from rama_net import TcpListener
from rama_proxy.mitm import HttpFlow, MitmHooks, MitmProxy, WebSocketMessage
from rama_tls import CertificateAuthority

sys.path.insert(0, str(Path(__file__).parent))
from mitm_testutil import Events, origin_tls, run_mitm

PAGE = """<!doctype html><html><body><p id="out">waiting</p><p id="hdr">%s</p>
<script>
const ws = new WebSocket("wss://" + location.host + "/ws");
ws.onopen = () => ws.send("hello");
ws.onmessage = (e) => { document.getElementById("out").textContent = "got " + e.data; };
</script><img src="/slow.png"></body></html>"""


def spki_hash(ca: CertificateAuthority) -> str:
    der = ca.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


class Hooks(MitmHooks):
    async def request(self, flow: HttpFlow) -> None:
        flow.request.headers.add("x-mitm", "chromium")

    async def websocket_message(
        self, flow: HttpFlow, message: WebSocketMessage
    ) -> WebSocketMessage | Sequence[WebSocketMessage] | None:
        if not message.from_client and isinstance(message.content, str):
            message.content = message.content.upper()
        return message


@asynccontextmanager
async def run_page_origin(ca: CertificateAuthority) -> AsyncIterator[int]:
    echoed = anyio.Event()

    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(f"echo {message!s}")
            echoed.set()

    upgrade = WebSocketUpgrade(echo)

    async def handle(ctx: Context, req: Request) -> Response:
        if req.path == "/ws":
            return await upgrade.serve(ctx, req)
        if req.path == "/slow.png":
            # the load event (and so --dump-dom) waits for the WebSocket's answer
            with anyio.move_on_after(8):
                await echoed.wait()
            await anyio.sleep(0.5)
            return Response(404)
        html = PAGE % (req.headers.get("x-mitm") or "none")
        return Response(200, headers=[("Content-Type", "text/html")], body=html.encode())

    async with TcpListener.bind("127.0.0.1:0") as listener, anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(listener, service_fn(handle), tls=origin_tls(ca)))
        try:
            yield listener.local_addr.port
        finally:
            tg.cancel_scope.cancel()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # a browser start per backend is slow
async def test_chromium_page_with_websocket_through_the_mitm(
    require_peer: Callable[[str], str], anyio_backend: str
) -> None:
    chromium = require_peer("chromium")
    origin_ca = CertificateAuthority.create("chromium origin CA")
    mitm_ca = CertificateAuthority.create("chromium mitm CA")
    events = Events()
    mitm = MitmProxy(mitm_ca, upstream_ca=origin_ca.cert_pem(), hooks=[Hooks()], observer=events)
    async with run_page_origin(origin_ca) as oport, run_mitm(mitm) as (port, _):
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
                    "--proxy-bypass-list=<-loopback>",
                    f"--ignore-certificate-errors-spki-list={spki_hash(mitm_ca)}",
                    "--dump-dom",
                    f"https://localhost:{oport}/",
                ],
                check=False,
            )
    dom = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert '<p id="hdr">chromium</p>' in dom, dom[-2000:]
    assert "got ECHO HELLO" in dom, dom[-2000:]
    assert any(m.content == "ECHO HELLO" for m in events.ws)
    # Chromium speaks h2 to the MITM and opens the WebSocket as an RFC 8441 extended CONNECT
    assert [f.request.method for f in events.flows if f.websocket] == ["CONNECT"]
    intercepted = [c for c in events.finished if c.mode == "intercept"]
    assert intercepted
    assert all(c.client_tls is not None for c in intercepted)
