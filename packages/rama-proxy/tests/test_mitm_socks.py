"""The MITM behind SOCKS5 (curl --socks5-hostname) and in front of an upstream SOCKS5 proxy."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from rama_core import Context
from rama_net import TcpListener
from rama_proxy import Egress, ProxyObservers, SocksProxy, StaticUpstream
from rama_proxy.mitm import MitmProxy
from rama_tls import CertificateAuthority

sys.path.insert(0, str(Path(__file__).parent))
from http_proxy_testutil import Recorder, _Obs, run_origin
from mitm_testutil import Events, curl, origin_tls, run_mitm
from test_socks_clients import dante  # noqa: F401 - the danted fixture


@asynccontextmanager
async def run_socks(proxy: SocksProxy) -> AsyncIterator[tuple[int, Recorder]]:
    rec = Recorder()
    ctx = Context()
    ctx.insert(ProxyObservers(_Obs(rec)))
    async with TcpListener.bind("127.0.0.1:0") as listener, anyio.create_task_group() as tg:
        tg.start_soon(lambda: listener.serve(proxy, ctx=ctx))
        try:
            yield listener.local_addr.port, rec
        finally:
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_curl_socks5_hostname_into_the_mitm(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    ca_file: str,
    require_peer: Callable[[str], str],
) -> None:
    require_peer("curl")
    events = Events()
    mitm = MitmProxy(mitm_ca, upstream_ca=origin_ca.cert_pem(), observer=events)
    async with (
        run_origin(tls=origin_tls(origin_ca)) as origin,
        run_socks(SocksProxy(connect_handoff=mitm)) as (port, rec),
    ):
        code, out, err = await curl(
            "--socks5-hostname",
            f"127.0.0.1:{port}",
            "--cacert",
            ca_file,
            f"https://localhost:{origin.port}/via-socks",
        )
        assert code == 0, err
        assert "GET /via-socks" in out
        conn = (await events.wait("finished", 1))[0]
        assert conn.mode == "intercept"
        assert conn.server_name == "localhost"
        records = await rec.wait(1)
        assert records[0].status == 0  # SOCKS5 succeeded
        assert records[0].target == f"localhost:{origin.port}"


@pytest.mark.anyio
async def test_mitm_egress_through_an_upstream_socks5_proxy(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    ca_file: str,
    require_peer: Callable[[str], str],
) -> None:
    require_peer("curl")
    events = Events()
    async with (
        run_origin(tls=origin_tls(origin_ca)) as origin,
        run_socks(SocksProxy()) as (upstream_port, upstream_rec),
    ):
        egress = Egress(selector=StaticUpstream(f"socks5h://127.0.0.1:{upstream_port}"))
        mitm = MitmProxy(mitm_ca, egress=egress, upstream_ca=origin_ca.cert_pem(), observer=events)
        async with run_mitm(mitm) as (port, _):
            code, out, err = await curl(
                "-x",
                f"http://127.0.0.1:{port}",
                "--cacert",
                ca_file,
                f"https://localhost:{origin.port}/up",
            )
            assert code == 0, err
            assert "GET /up" in out
        records = await upstream_rec.wait(1)
        assert records[0].method == "CONNECT"
        assert records[0].target == f"localhost:{origin.port}"
        conn = (await events.wait("finished", 1))[0]
        assert conn.upstream_proxy == f"socks5h://127.0.0.1:{upstream_port}"


@pytest.mark.anyio
async def test_mitm_egress_through_dante(
    dante: int,  # noqa: F811 - the fixture imported above
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    ca_file: str,
    require_peer: Callable[[str], str],
) -> None:
    """The MITM's upstream connections go through a real SOCKS5 proxy (mitmproxy cannot)."""
    require_peer("curl")
    events = Events()
    egress = Egress(selector=StaticUpstream(f"socks5h://127.0.0.1:{dante}"))
    mitm = MitmProxy(mitm_ca, egress=egress, upstream_ca=origin_ca.cert_pem(), observer=events)
    async with run_origin(tls=origin_tls(origin_ca)) as origin, run_mitm(mitm) as (port, _):
        url = f"https://localhost:{origin.port}/dante"
        code, out, err = await curl(
            "--http2", "-x", f"http://127.0.0.1:{port}", "--cacert", ca_file, url, url
        )
        assert code == 0, err
        assert out.count("GET /dante") == 2
        conn = (await events.wait("finished", 1))[0]
        assert conn.upstream_proxy == f"socks5h://127.0.0.1:{dante}"
        assert conn.upstream_addr is not None
        assert conn.upstream_addr.port == dante
