"""HTTPS proxies: the proxy behind TLS (curl --proxy https://), HttpsProxyConnector upstreams,
h2 clients (forwarded requests and RFC 9113 section 8.5 CONNECT streams)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import h2.config
import h2.connection
import h2.events
import pytest
from anyio.abc import ByteStream
from rama_peer_process import run_curl

from rama_http.client import HttpClient, ProxyConfig
from rama_net import connect_tcp
from rama_proxy import (
    Egress,
    HttpProxy,
    HttpsProxyConnector,
    StaticUpstream,
    UpstreamFailure,
    default_proxy_connectors,
)
from rama_tls import CertificateAuthority, StaticCertResolver, TlsAcceptorConfig, TlsClientConfig

sys.path.insert(0, str(Path(__file__).parent))
from http_proxy_testutil import raw_exchange, run_origin, run_proxy


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("rama proxy test CA")


def _tls(ca: CertificateAuthority, alpn: tuple[str, ...] = ("h2", "http/1.1")) -> TlsAcceptorConfig:
    leaf = ca.issue("127.0.0.1", "localhost")
    return TlsAcceptorConfig(resolver=StaticCertResolver(default=leaf), alpn_protocols=alpn)


@pytest.mark.anyio
async def test_proxy_behind_tls_with_curl(
    ca: CertificateAuthority, require_peer: Callable[[str], str]
) -> None:
    require_peer("curl")
    async with (
        run_origin() as origin,
        run_origin(tls=_tls(ca, ("http/1.1",))) as secure,
        run_proxy(HttpProxy(client_tls=TlsClientConfig(ca_pem=ca.cert_pem())), tls=_tls(ca)) as (
            port,
            _,
            rec,
        ),
    ):
        proxy = f"https://127.0.0.1:{port}"
        code, out, err = await run_curl("--proxy", proxy, "--proxy-insecure", f"{origin.url}/fwd")
        assert code == 0, err
        assert out.startswith("GET /fwd")
        code, out, err = await run_curl(
            "--proxy",
            proxy,
            "--proxy-cacert",
            "/dev/null",
            "--proxy-insecure",
            "-p",
            f"{origin.url}/tun",
        )
        assert code == 0, err
        assert out.startswith("GET /tun")
        # https target: TLS inside the tunnel inside TLS to the proxy
        code, out, err = await run_curl(
            "--proxy", proxy, "--proxy-insecure", "-k", f"https://127.0.0.1:{secure.port}/in"
        )
        assert code == 0, err
        assert out.startswith("GET /in")
        # an absolute https:// URL forwarded by the proxy (it originates the TLS, verified)
        status, _, body = await _tls_exchange(
            port, ca, f"GET https://127.0.0.1:{secure.port}/abs HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert status == 200
        assert body.startswith(b"GET /abs")
        records = await rec.wait(4)
        assert [r.protocol for r in records] == ["http", "connect", "connect", "http"]


async def _tls_exchange(
    port: int, ca: CertificateAuthority, request: str
) -> tuple[int, bytes, bytes]:
    from http_proxy_testutil import read_response

    from rama_tls import tls_connect

    raw = await connect_tcp(f"127.0.0.1:{port}")
    stream = await tls_connect(
        raw, "127.0.0.1", TlsClientConfig(ca_pem=ca.cert_pem(), alpn_protocols=("http/1.1",))
    )
    try:
        await stream.send(request.encode())
        return await read_response(stream)
    finally:
        await stream.aclose()


@pytest.mark.anyio
async def test_https_upstream_proxy_connector(
    ca: CertificateAuthority, require_peer: Callable[[str], str]
) -> None:
    require_peer("curl")
    assert "https" in default_proxy_connectors().schemes
    async with (
        run_origin() as origin,
        run_proxy(tls=_tls(ca, ("http/1.1",))) as (up_port, _, up_rec),
    ):
        connectors = default_proxy_connectors()
        connectors.register("https", HttpsProxyConnector(tls=TlsClientConfig(ca_pem=ca.cert_pem())))
        upstream = f"https://127.0.0.1:{up_port}"
        egress = Egress(selector=StaticUpstream(upstream), connectors=connectors)
        async with run_proxy(HttpProxy(egress=egress)) as (port, _, rec):
            for args in ((), ("-p",)):
                code, out, err = await run_curl(
                    *args, "-x", f"http://127.0.0.1:{port}", f"{origin.url}/chain"
                )
                assert code == 0, err
                assert out.startswith("GET /chain")
            records = await rec.wait(2)
            assert [r.upstream for r in records] == [upstream, upstream]
        up_records = await up_rec.wait(2)
        assert [r.protocol for r in up_records] == ["connect", "connect"]

        # the rama client itself through the HTTPS proxy
        async with HttpClient(
            proxy=upstream,
            proxy_connector=HttpsProxyConnector(tls=TlsClientConfig(ca_pem=ca.cert_pem())),
        ) as client:
            r = await client.get(f"{origin.url}/client")
            assert r.status == 200
            assert (await r.read()).startswith(b"GET /client")

        # an upstream whose certificate is not trusted: 502 naming TLS
        wrong = Egress(selector=StaticUpstream(ProxyConfig(upstream)))
        async with run_proxy(HttpProxy(egress=wrong)) as (port, _, _):
            for method, target in (
                ("GET", f"{origin.url}/x"),
                ("CONNECT", f"127.0.0.1:{origin.port}"),
            ):
                status, _, body = await raw_exchange(
                    port, f"{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                )
                assert status == 502
                assert body == UpstreamFailure.TLS.reason.encode() + b"\n"


async def _h2_read(
    stream: ByteStream, conn: h2.connection.H2Connection, until: Callable[[list[object]], bool]
) -> list[object]:
    events: list[object] = []
    with anyio.fail_after(5):
        while not until(events):
            data = await stream.receive()
            for ev in conn.receive_data(data):
                events.append(ev)
                if isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            out = conn.data_to_send()
            if out:
                await stream.send(out)
    return events


@pytest.mark.anyio
async def test_h2_client_forward_and_connect_streams(ca: CertificateAuthority) -> None:
    async with run_origin() as origin, run_proxy(tls=_tls(ca)) as (port, _, rec):
        from rama_tls import tls_connect

        raw = await connect_tcp(f"127.0.0.1:{port}")
        stream = await tls_connect(
            raw, "127.0.0.1", TlsClientConfig(ca_pem=ca.cert_pem(), alpn_protocols=("h2",))
        )
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        authority = f"127.0.0.1:{origin.port}"
        get_id = conn.get_next_available_stream_id()
        conn.send_headers(
            get_id,
            [
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", authority),
                (":path", "/h2get"),
                ("x-test", "1"),
            ],
            end_stream=True,
        )
        tun_id = conn.get_next_available_stream_id()
        conn.send_headers(tun_id, [(":method", "CONNECT"), (":authority", authority)])
        await stream.send(conn.data_to_send())

        def ended(sid: int) -> Callable[[list[object]], bool]:
            return lambda evs: any(
                isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in evs
            )

        def answered(sid: int) -> Callable[[list[object]], bool]:
            return lambda evs: any(
                isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid for e in evs
            )

        events = await _h2_read(
            stream, conn, lambda evs: ended(get_id)(evs) and answered(tun_id)(evs)
        )
        heads = {
            e.stream_id: dict(e.headers)
            for e in events
            if isinstance(e, h2.events.ResponseReceived)
        }
        assert heads[get_id][b":status"] == b"200"
        assert heads[tun_id][b":status"] == b"200"
        body = b"".join(
            e.data
            for e in events
            if isinstance(e, h2.events.DataReceived) and e.stream_id == get_id
        )
        assert body.startswith(b"GET /h2get\nHost: 127.0.0.1:")

        conn.send_data(tun_id, b"GET /inside HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await stream.send(conn.data_to_send())
        got = b""

        def have_body(evs: list[object]) -> bool:
            nonlocal got
            got = b"".join(
                e.data
                for e in evs
                if isinstance(e, h2.events.DataReceived) and e.stream_id == tun_id
            )
            return b"len=0\n" in got or ended(tun_id)(evs)

        await _h2_read(stream, conn, have_body)
        assert got.startswith(b"HTTP/1.1 200 OK")
        assert b"GET /inside" in got
        await stream.aclose()
        records = await rec.wait(2)
        assert sorted(r.protocol for r in records) == ["connect", "http"]


@pytest.mark.anyio
async def test_h2_extended_connect_websocket_is_relayed_as_an_h1_upgrade(
    ca: CertificateAuthority,
) -> None:
    async with run_origin() as origin, run_proxy(tls=_tls(ca)) as (port, _, rec):
        from rama_tls import tls_connect

        raw = await connect_tcp(f"127.0.0.1:{port}")
        stream = await tls_connect(
            raw, "127.0.0.1", TlsClientConfig(ca_pem=ca.cert_pem(), alpn_protocols=("h2",))
        )
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        await stream.send(conn.data_to_send())
        # wait for the server's SETTINGS (SETTINGS_ENABLE_CONNECT_PROTOCOL)
        await _h2_read(
            stream,
            conn,
            lambda evs: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in evs),
        )
        authority = f"127.0.0.1:{origin.port}"
        sids = []
        for path in ("/ws", "/not-ws"):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(
                sid,
                [
                    (":method", "CONNECT"),
                    (":protocol", "websocket"),
                    (":scheme", "http"),
                    (":authority", authority),
                    (":path", path),
                    ("sec-websocket-version", "13"),
                    ("sec-websocket-protocol", "chat"),
                ],
            )
            sids.append(sid)
        await stream.send(conn.data_to_send())
        events = await _h2_read(
            stream,
            conn,
            lambda evs: all(
                any(isinstance(e, h2.events.ResponseReceived) and e.stream_id == s for e in evs)
                for s in sids
            ),
        )
        heads = {
            e.stream_id: dict(e.headers)
            for e in events
            if isinstance(e, h2.events.ResponseReceived)
        }
        assert heads[sids[0]][b":status"] == b"200"
        assert b"sec-websocket-accept" not in heads[sids[0]]
        # the origin did not switch for /not-ws: its 200 comes back as a normal answer
        assert heads[sids[1]][b":status"] == b"200"
        conn.send_data(sids[0], b"ws-frame")
        await stream.send(conn.data_to_send())
        got = b""

        def echoed(evs: list[object]) -> bool:
            nonlocal got
            got = b"".join(
                e.data
                for e in evs
                if isinstance(e, h2.events.DataReceived) and e.stream_id == sids[0]
            )
            return got == b"echo:ws-frame"

        await _h2_read(stream, conn, echoed)
        await stream.aclose()
        (_, _, headers, _, _) = next(s for s in origin.seen if s[1] == "/ws")
        names = [n.lower() for n, _ in headers]
        assert names[0] == "host"
        assert ("Upgrade", "websocket") in headers
        assert "sec-websocket-key" in names
        assert ("sec-websocket-protocol", "chat") in headers
        records = await rec.wait(2)
        assert {r.status for r in records} == {200}
