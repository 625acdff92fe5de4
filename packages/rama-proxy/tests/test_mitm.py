"""The MITM with real clients: curl through -x http:// with --cacert, hooks on heads."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from rama_core import Context, service_fn
from rama_http import Request, Response
from rama_http.server import serve
from rama_net import TcpListener
from rama_proxy import ProxyAuthenticator, StaticCredentials
from rama_proxy.mitm import (
    HostPolicy,
    HttpFlow,
    Intercept,
    MitmDecision,
    MitmHooks,
    MitmObservers,
    MitmProxy,
    MitmRequest,
    PassThrough,
    mitm_policy_fn,
)
from rama_tls import CertificateAuthority

sys.path.insert(0, str(Path(__file__).parent))
from http_proxy_testutil import free_port, run_origin
from mitm_testutil import Events, curl, origin_tls, run_mitm


class AddHeader(MitmHooks):
    async def request(self, flow: HttpFlow) -> None:
        flow.request.headers.add("X-Mitm", "seen")

    async def response(self, flow: HttpFlow) -> None:
        assert flow.response is not None
        flow.response.headers.add("X-Mitm-Response", flow.connection.server_name or "-")


@pytest.mark.anyio
async def test_curl_h1_through_mitm_with_hooks(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    ca_file: str,
    require_peer: Callable[[str], str],
) -> None:
    require_peer("curl")
    events, second = Events(), Events()
    mitm = MitmProxy(
        mitm_ca,
        upstream_ca=origin_ca.cert_pem(),
        hooks=[AddHeader()],
        observer=MitmObservers(events, second),
    )
    async with run_origin(tls=origin_tls(origin_ca)) as origin, run_mitm(mitm) as (port, _):
        url = f"https://localhost:{origin.port}/hello?x=1"
        code, out, err = await curl(
            "-i", "--http1.1", "-x", f"http://127.0.0.1:{port}", "--cacert", ca_file, url
        )
        assert code == 0, err
        assert out.startswith("HTTP/1.1 200")
        assert "X-Mitm-Response: localhost" in out
        assert "GET /hello?x=1" in out
        assert "X-Mitm: seen" in out  # the origin echoes the headers it got
        flows = await events.wait("flows", 1)
        assert flows[0].response is not None
        assert flows[0].response.status == 200
        assert flows[0].url == f"https://localhost:{origin.port}/hello?x=1"
        finished = await events.wait("finished", 1)
        conn = finished[0]
        assert conn.mode == "intercept"
        assert conn.server_name == "localhost"
        assert conn.client_tls is not None
        assert conn.client_tls.alpn == "http/1.1"
        assert conn.upstream_tls is not None
        assert conn.upstream_tls.alpn == "http/1.1"
        assert conn.upstream_tls.peer_certificate is not None
        # the leaf the client saw came from the MITM CA
        assert mitm.leaves.issued == 1
        # timings, in order (what a HAR needs)
        flow = flows[0]
        assert conn.upstream_dial_started is not None
        assert conn.upstream_connected is not None
        assert conn.upstream_tls_done is not None
        assert conn.started <= conn.upstream_dial_started <= conn.upstream_connected
        assert conn.upstream_connected <= conn.upstream_tls_done <= flow.started
        assert flow.request_sent is not None
        assert flow.response_started is not None
        assert flow.finished is not None
        assert flow.started <= flow.request_sent <= flow.response_started <= flow.finished
        assert flow.response_bytes > 0
        assert second.flows == events.flows  # both observers saw it


@pytest.mark.anyio
async def test_curl_h2_stays_h2_and_keepalive(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    ca_file: str,
    require_peer: Callable[[str], str],
) -> None:
    require_peer("curl")
    events = Events()
    mitm = MitmProxy(mitm_ca, upstream_ca=origin_ca.cert_pem(), observer=events)
    async with run_origin(tls=origin_tls(origin_ca)) as origin, run_mitm(mitm) as (port, _):
        url = f"https://localhost:{origin.port}/a"
        code, out, err = await curl(
            "-sv", "--http2", "-x", f"http://127.0.0.1:{port}", "--cacert", ca_file, url, url
        )
        assert code == 0, err
        assert out.count("GET /a") == 2
        assert "HTTP/2 200" in err
        conn = (await events.wait("finished", 1))[0]
        assert conn.client_tls is not None
        assert conn.client_tls.alpn == "h2"
        assert conn.upstream_tls is not None
        assert conn.upstream_tls.alpn == "h2"
        assert len(origin.seen) == 2
        assert origin.seen[0][4] == origin.seen[1][4]  # one upstream connection for both


@pytest.mark.anyio
async def test_upstream_h1_only_makes_client_h1(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    ca_file: str,
    require_peer: Callable[[str], str],
) -> None:
    require_peer("curl")
    mitm = MitmProxy(mitm_ca, upstream_ca=origin_ca.cert_pem())
    tls = origin_tls(origin_ca, ("http/1.1",))
    async with run_origin(tls=tls) as origin, run_mitm(mitm) as (port, _):
        code, _out, err = await curl(
            "-sv",
            "--http2",
            "-x",
            f"http://127.0.0.1:{port}",
            "--cacert",
            ca_file,
            f"https://localhost:{origin.port}/b",
        )
        assert code == 0, err
        assert "HTTP/1.1 200" in err
        assert "ALPN: server accepted http/1.1" in err


@pytest.mark.anyio
async def test_untrusted_upstream_is_a_502_page(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    ca_file: str,
    require_peer: Callable[[str], str],
) -> None:
    require_peer("curl")
    events = Events()
    mitm = MitmProxy(mitm_ca, observer=events)  # system roots: the origin CA is unknown
    async with run_origin(tls=origin_tls(origin_ca)) as origin, run_mitm(mitm) as (port, _):
        code, out, err = await curl(
            "-i",
            "-x",
            f"http://127.0.0.1:{port}",
            "--cacert",
            ca_file,
            f"https://localhost:{origin.port}/",
        )
        assert code == 0, err
        assert "\r\nHTTP/2 502" in out or "\r\nHTTP/1.1 502" in out
        assert "certificate is not trusted" in out
        assert origin.seen == []
        conn = (await events.wait("finished", 1))[0]
        assert conn.error == "the server's certificate is not trusted"
    # upstream_insecure accepts it
    mitm = MitmProxy(mitm_ca, upstream_insecure=True)
    async with run_origin(tls=origin_tls(origin_ca)) as origin, run_mitm(mitm) as (port, _):
        code, out, err = await curl(
            "-x",
            f"http://127.0.0.1:{port}",
            "--cacert",
            ca_file,
            f"https://localhost:{origin.port}/ok",
        )
        assert code == 0, err
        assert "GET /ok" in out


@pytest.mark.anyio
async def test_pass_through_keeps_the_real_certificate(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    ca_file: str,
    tmp_path: Path,
    require_peer: Callable[[str], str],
) -> None:
    require_peer("curl")
    origin_file = tmp_path / "origin-ca.pem"
    origin_file.write_bytes(origin_ca.cert_pem())
    events = Events()
    mitm = MitmProxy(
        mitm_ca,
        upstream_ca=origin_ca.cert_pem(),
        policy=HostPolicy(pass_through=["localhost"], reject=["*.blocked.test"]),
        observer=events,
    )
    async with run_origin(tls=origin_tls(origin_ca)) as origin, run_mitm(mitm) as (port, _):
        # trusting only the origin CA works: the client talks to the origin itself
        code, out, err = await curl(
            "-x",
            f"http://127.0.0.1:{port}",
            "--cacert",
            str(origin_file),
            f"https://localhost:{origin.port}/pt",
        )
        assert code == 0, err
        assert "GET /pt" in out
        conn = (await events.wait("finished", 1))[0]
        assert conn.mode == "pass_through"
        assert conn.bytes_from_client > 0
        assert conn.bytes_from_server > 0
        # trusting only the MITM CA fails for a pass-through host
        code, out, err = await curl(
            "-x",
            f"http://127.0.0.1:{port}",
            "--cacert",
            ca_file,
            f"https://localhost:{origin.port}/pt",
        )
        assert code == 60, err
        # 127.0.0.1 (no SNI) is intercepted: its leaf gets the IP SAN
        code, out, err = await curl(
            "-x",
            f"http://127.0.0.1:{port}",
            "--cacert",
            ca_file,
            f"https://127.0.0.1:{origin.port}/ip",
        )
        assert code == 0, err
        assert "GET /ip" in out
        assert mitm.leaves.issued == 0  # several names (IP + upstream SANs): not the host cache


@pytest.mark.anyio
async def test_refused_upstream_is_a_502_page_and_leaves_are_cached(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    ca_file: str,
    require_peer: Callable[[str], str],
) -> None:
    require_peer("curl")
    events = Events()
    mitm = MitmProxy(mitm_ca, upstream_ca=origin_ca.cert_pem(), observer=events)
    closed = free_port()
    async with run_origin(tls=origin_tls(origin_ca)) as origin, run_mitm(mitm) as (port, _):
        code, out, err = await curl(
            "-x", f"http://127.0.0.1:{port}", "--cacert", ca_file, f"https://localhost:{closed}/"
        )
        assert code == 0, err
        assert "connection refused" in out
        conn = (await events.wait("finished", 1))[0]
        assert conn.error == "connection refused"
        for _ in range(3):
            code, out, err = await curl(
                "-x",
                f"http://127.0.0.1:{port}",
                "--cacert",
                ca_file,
                f"https://localhost:{origin.port}/again",
            )
            assert code == 0, err
        assert mitm.leaves.issued == 1  # one leaf for "localhost", reused


@pytest.mark.anyio
async def test_policy_sees_the_proxy_user_and_client(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    ca_file: str,
    tmp_path: Path,
    require_peer: Callable[[str], str],
) -> None:
    """Intercept alice's connections, pass bob's through: the policy gets the ProxyUser."""
    require_peer("curl")
    origin_file = tmp_path / "origin.pem"
    origin_file.write_bytes(origin_ca.cert_pem())
    seen: list[MitmRequest] = []

    async def by_user(ctx: Context, request: MitmRequest) -> MitmDecision:
        seen.append(request)
        return Intercept() if request.user == "alice" else PassThrough()

    events = Events()
    mitm = MitmProxy(
        mitm_ca,
        upstream_ca=origin_ca.cert_pem(),
        policy=mitm_policy_fn(by_user),
        observer=events,
    )
    auth = ProxyAuthenticator(StaticCredentials({"alice": "a", "bob": "b"}))
    async with (
        run_origin(tls=origin_tls(origin_ca)) as origin,
        run_mitm(mitm, authenticator=auth) as (port, _),
    ):
        url = f"https://localhost:{origin.port}/u"
        code, out, err = await curl(
            "-x", f"http://alice:a@127.0.0.1:{port}", "--cacert", ca_file, url
        )
        assert code == 0, err
        code, out, err = await curl(
            "-x", f"http://bob:b@127.0.0.1:{port}", "--cacert", str(origin_file), url
        )
        assert code == 0, err
        assert "GET /u" in out
        finished = await events.wait("finished", 2)
    assert [r.user for r in seen] == ["alice", "bob"]
    assert all(r.client is not None and str(r.client.ip) == "127.0.0.1" for r in seen)
    assert all(r.server_name == "localhost" for r in seen)
    assert sorted(c.mode for c in finished) == ["intercept", "pass_through"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("origin_alpn", "client_flag", "client_proto", "upstream_proto"),
    [
        (("http/1.1",), "--http2", "h2", "http/1.1"),
        (("h2",), "--http1.1", "http/1.1", "h2"),
    ],
)
async def test_translate_http_version(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    ca_file: str,
    require_peer: Callable[[str], str],
    origin_alpn: tuple[str, ...],
    client_flag: str,
    client_proto: str,
    upstream_proto: str,
) -> None:
    """Opt-in: each side keeps its own HTTP version; the relay translates."""
    require_peer("curl")
    events = Events()
    mitm = MitmProxy(
        mitm_ca,
        upstream_ca=origin_ca.cert_pem(),
        hooks=[AddHeader()],
        observer=events,
        translate_http_version=True,
    )
    async with (
        run_origin(tls=origin_tls(origin_ca, origin_alpn)) as origin,
        run_mitm(mitm) as (port, _),
    ):
        url = f"https://localhost:{origin.port}/t?q=1"
        code, out, err = await curl(
            "-v", client_flag, "-x", f"http://127.0.0.1:{port}", "--cacert", ca_file, url, url
        )
        assert code == 0, err
        assert out.count("GET /t?q=1") == 2
        assert out.lower().count("x-mitm: seen") == 2
        conn = (await events.wait("finished", 1))[0]
        assert conn.client_tls is not None
        assert conn.client_tls.alpn == client_proto
        assert conn.upstream_tls is not None
        assert conn.upstream_tls.alpn == upstream_proto


@pytest.mark.anyio
async def test_ipv6_target_without_sni_gets_an_ip_san(
    origin_ca: CertificateAuthority,
    mitm_ca: CertificateAuthority,
    ca_file: str,
    require_peer: Callable[[str], str],
) -> None:
    require_peer("curl")

    async def hello(ctx: Context, req: Request) -> Response:
        return Response.from_text(f"v6 {req.target}\n")

    events = Events()
    mitm = MitmProxy(mitm_ca, upstream_ca=origin_ca.cert_pem(), observer=events)
    tls = origin_tls(origin_ca, ("h2", "http/1.1"), "::1")
    async with (
        TcpListener.bind("[::1]:0") as listener,
        anyio.create_task_group() as tg,
        run_mitm(mitm) as (port, _),
    ):
        tg.start_soon(lambda: serve(listener, service_fn(hello), tls=tls))
        code, out, err = await curl(
            "-x",
            f"http://127.0.0.1:{port}",
            "--cacert",
            ca_file,
            f"https://[::1]:{listener.local_addr.port}/six",
        )
        assert code == 0, err
        assert out == "v6 /six\n"
        conn = (await events.wait("finished", 1))[0]
        assert conn.server_name is None
        assert conn.client_tls is not None
        tg.cancel_scope.cancel()
