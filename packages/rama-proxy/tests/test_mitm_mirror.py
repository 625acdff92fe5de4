"""Mirror mode: the server sees the intercepted client's own ClientHello (JA4, JA3).

A local rama TLS origin answers with the JA4/JA3 of the hello it received; the
MITM's observer has the client's hello: they must be equal, for curl and for
headless Chromium (whose hello Python's ssl could never produce).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from rama_core import Context, service_fn
from rama_http import Request, Response
from rama_http.server import serve
from rama_net import TcpListener
from rama_proxy.mitm import MitmProxy
from rama_tls import CertificateAuthority, ClientHello, ja3, ja4

sys.path.insert(0, str(Path(__file__).parent))
from mitm_testutil import Events, curl, origin_tls, run_mitm


async def _fingerprint(ctx: Context, req: Request) -> Response:
    hello = ctx.require(ClientHello)
    page = f"<html><body><p id='fp'>ja4={ja4(hello).ja4} ja3={ja3(hello).hash}</p></body></html>"
    return Response(200, headers=[("Content-Type", "text/html")], body=page.encode())


@asynccontextmanager
async def run_fp_origin(ca: CertificateAuthority) -> AsyncIterator[int]:
    async with TcpListener.bind("127.0.0.1:0") as listener, anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(listener, service_fn(_fingerprint), tls=origin_tls(ca)))
        try:
            yield listener.local_addr.port
        finally:
            tg.cancel_scope.cancel()


def _seen(page: str) -> tuple[str, str]:
    part = page.split("ja4=", 1)[1]
    j4, rest = part.split(" ja3=", 1)
    return j4, rest.split("<", 1)[0].strip()


@pytest.mark.anyio
async def test_curl_ja4_mirrored_upstream(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    tmp_path: Path,
    require_peer: Callable[[str], str],
) -> None:
    require_peer("curl")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(mitm_ca.cert_pem())
    async with run_fp_origin(origin_ca) as oport:
        results: dict[bool, tuple[str, str, ClientHello]] = {}
        for mirror in (False, True):
            events = Events()
            mitm = MitmProxy(
                mitm_ca, upstream_ca=origin_ca.cert_pem(), mirror_tls=mirror, observer=events
            )
            async with run_mitm(mitm) as (port, _):
                code, out, err = await curl(
                    "-x",
                    f"http://127.0.0.1:{port}",
                    "--cacert",
                    str(ca_file),
                    f"https://localhost:{oport}/",
                )
                assert code == 0, err
                conn = (await events.wait("finished", 1))[0]
                assert conn.client_hello is not None
                results[mirror] = (*_seen(out), conn.client_hello)
        seen_ja4, seen_ja3, hello = results[True]
        assert seen_ja4 == ja4(hello).ja4
        assert seen_ja3 == ja3(hello).hash  # curl does not permute: even JA3 matches
        # without mirroring, the server sees Python's ssl, not curl
        _plain_ja4, plain_ja3, hello = results[False]
        assert plain_ja3 != ja3(hello).hash


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # a browser start per backend is slow
async def test_chromium_ja4_mirrored_upstream(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    require_peer: Callable[[str], str],
    anyio_backend: str,
) -> None:
    chromium = require_peer("chromium")
    events = Events()
    mitm = MitmProxy(mitm_ca, upstream_ca=origin_ca.cert_pem(), mirror_tls=True, observer=events)
    async with run_fp_origin(origin_ca) as oport, run_mitm(mitm) as (port, _):
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
                    "--ignore-certificate-errors",
                    "--dump-dom",
                    f"https://localhost:{oport}/",
                ],
                check=False,
            )
        dom = result.stdout.decode()
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        assert "ja4=" in dom, dom[-2000:]
        seen_ja4, _ = _seen(dom)
        hellos = [
            c.client_hello
            for c in events.connections
            if c.client_hello is not None and c.client_hello.server_name == "localhost"
        ]
        assert hellos
        assert seen_ja4 in {ja4(h).ja4 for h in hellos}
        assert seen_ja4.startswith("t13d")
