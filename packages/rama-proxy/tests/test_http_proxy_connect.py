"""HttpProxy: CONNECT tunnels (eager/lazy, port allow list, policy hook) and proxy auth."""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteStream
from rama_peer_process import run_curl

from rama_core import Context, service_fn
from rama_http import Request
from rama_http.client import ProxyConfig
from rama_net import Authority, connect_tcp
from rama_proxy import (
    ConnectDecision,
    ConnectTarget,
    Handoff,
    HttpProxy,
    ProxyAuthenticator,
    Reject,
    StaticCredentials,
    Tunnel,
    UpstreamFailure,
    connect_policy_fn,
)

sys.path.insert(0, str(Path(__file__).parent))
from http_proxy_testutil import free_port, raw_exchange, read_response, run_origin, run_proxy


@pytest.mark.anyio
async def test_curl_tunnel_and_record(require_peer: Callable[[str], str]) -> None:
    require_peer("curl")
    async with run_origin() as origin, run_proxy() as (port, _, rec):
        code, out, err = await run_curl(
            "-p", "-x", f"http://127.0.0.1:{port}", f"{origin.url}/through", "-d", "payload"
        )
        assert code == 0, err
        assert out.startswith("POST /through\n")
        assert "len=7" in out
        (record,) = await rec.wait(1)
        assert record.protocol == "connect"
        assert record.method == "CONNECT"
        assert record.target == f"127.0.0.1:{origin.port}"
        assert record.status == 200
        assert record.bytes_in > 7
        assert record.bytes_out > len(out)
        assert record.error is None


@pytest.mark.anyio
async def test_eager_connect_answers_the_failure_not_200() -> None:
    async with run_proxy() as (port, _, rec):
        dead = free_port()
        status, _, body = await raw_exchange(
            port, f"CONNECT 127.0.0.1:{dead} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        assert status == 502
        assert body == UpstreamFailure.REFUSED.reason.encode() + b"\n"
        (record,) = await rec.wait(1)
        assert (record.status, record.error) == (502, UpstreamFailure.REFUSED.reason)


@pytest.mark.anyio
async def test_lazy_connect_answers_200_first() -> None:
    async with run_origin() as origin, run_proxy(lazy_connect=True) as (port, _, rec):
        stream = await connect_tcp(f"127.0.0.1:{port}")
        try:
            # the request rides right behind the CONNECT head (one write)
            await stream.send(
                f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\nHost: x\r\n\r\n"
                f"GET /lazy HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            )
            status, head, _ = await read_response(stream)
            assert status == 200
            assert b"Connection established" in head
            status, _, body = await read_response(stream)
            assert status == 200
            assert body.startswith(b"GET /lazy")
        finally:
            await stream.aclose()
        dead = free_port()
        stream = await connect_tcp(f"127.0.0.1:{port}")
        try:
            await stream.send(f"CONNECT 127.0.0.1:{dead} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, _, _ = await read_response(stream)
            assert status == 200
            with anyio.fail_after(5):
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    while True:
                        await stream.receive()
        finally:
            await stream.aclose()
        records = await rec.wait(2)
        (failed,) = [r for r in records if r.target == f"127.0.0.1:{dead}"]
        assert failed.status == 502
        assert failed.error == UpstreamFailure.REFUSED.reason


@pytest.mark.anyio
async def test_port_allow_list() -> None:
    async with run_origin() as origin, run_proxy(allow_connect_ports=[443]) as (port, _, rec):
        status, _, body = await raw_exchange(
            port, f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        assert status == 403
        assert b"port" in body
        status, _, _ = await raw_exchange(
            port, b"CONNECT 127.0.0.1:http HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert status == 400
        (record,) = await rec.wait(1)
        assert record.status == 403


@pytest.mark.anyio
async def test_policy_reject_handoff_and_route() -> None:
    handed: list[ConnectTarget | None] = []

    @service_fn
    async def echo(ctx: Context, stream: ByteStream) -> None:
        handed.append(ctx.get(ConnectTarget))
        data = await stream.receive()
        await stream.send(b"handed:" + data)
        await stream.aclose()

    async with run_origin() as origin, run_proxy() as (up_port, _, up_rec):

        async def decide(ctx: Context, target: Authority, req: Request) -> ConnectDecision:
            host = str(target.host)
            if host == "blocked.test":
                return Reject("blocked by policy")
            if host == "mitm.test":
                return Handoff(echo)
            return Tunnel(upstream=ProxyConfig(f"http://127.0.0.1:{up_port}"))

        proxy = HttpProxy(connect_policy=connect_policy_fn(decide))
        async with run_proxy(proxy) as (port, _, rec):
            status, _, body = await raw_exchange(
                port, b"CONNECT blocked.test:443 HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            assert (status, body) == (403, b"blocked by policy\n")

            stream = await connect_tcp(f"127.0.0.1:{port}")
            try:
                await stream.send(b"CONNECT mitm.test:443 HTTP/1.1\r\nHost: x\r\n\r\n")
                status, _, _ = await read_response(stream)
                assert status == 200
                await stream.send(b"hello")
                with anyio.fail_after(5):
                    assert await stream.receive() == b"handed:hello"
            finally:
                await stream.aclose()
            target = handed[0]
            assert target is not None
            assert str(target.authority) == "mitm.test:443"

            code, out, err = await run_curl(
                "-p", "-x", f"http://127.0.0.1:{port}", f"{origin.url}/r"
            )
            assert code == 0, err
            assert out.startswith("GET /r")
            records = await rec.wait(3)
            (routed,) = [r for r in records if r.target == f"127.0.0.1:{origin.port}"]
            assert routed.upstream == f"http://127.0.0.1:{up_port}"
            (up_record,) = await up_rec.wait(1)
            assert up_record.target == f"127.0.0.1:{origin.port}"


# -- proxy authentication -----------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.anyio
async def test_proxy_auth_407_and_curl_proxy_user(require_peer: Callable[[str], str]) -> None:
    require_peer("curl")
    auth = ProxyAuthenticator(StaticCredentials({"alice": "s3cret"}), realm="rama test")
    async with run_origin() as origin, run_proxy(authenticator=auth) as (port, _, rec):
        for extra in (
            "",
            f"Proxy-Authorization: {_basic('alice', 'wrong')}\r\n",
            "Proxy-Authorization: Bearer x\r\n",
        ):
            for method, target in (
                ("GET", f"{origin.url}/"),
                ("CONNECT", f"127.0.0.1:{origin.port}"),
            ):
                status, head, _ = await raw_exchange(
                    port, f"{method} {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()
                )
                assert status == 407
                assert b'\r\nProxy-Authenticate: Basic realm="rama test"' in head
        assert origin.seen == []
        proxy = f"http://127.0.0.1:{port}"
        code, out, err = await run_curl(
            "-x", proxy, "--proxy-user", "alice:s3cret", f"{origin.url}/f"
        )
        assert code == 0, err
        assert out.startswith("GET /f")
        assert "roxy-" not in out  # neither Proxy-Authorization nor Proxy-Connection upstream
        code, out, err = await run_curl(
            "-p", "-x", proxy, "--proxy-user", "alice:s3cret", f"{origin.url}/t"
        )
        assert code == 0, err
        assert out.startswith("GET /t")
        code, out, err = await run_curl(
            "-x",
            proxy,
            "--proxy-user",
            "alice:nope",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            f"{origin.url}/f",
        )
        assert out == "407"
        records = await rec.wait(9)
        assert sorted(str(r.user) for r in records) == ["None"] * 7 + ["alice", "alice"]
        assert sum(r.error == "proxy authentication required" for r in records) == 7


@pytest.mark.anyio
async def test_tunnel_never_started_still_ends_its_record() -> None:
    import gc

    from http_proxy_testutil import Recorder, _Obs

    from rama_http import Headers
    from rama_proxy import ProxyObservers

    rec = Recorder()
    async with run_origin() as origin:
        proxy = HttpProxy()
        try:
            ctx = Context()
            ctx.insert(ProxyObservers(_Obs(rec)))
            target = f"127.0.0.1:{origin.port}"
            req = Request("CONNECT", target, headers=Headers([("Host", target)]))
            resp = await proxy.serve(ctx, req)
            assert resp.status == 200
            assert rec.finished == []
            del resp  # the server never ran on_upgrade (the client left)
            gc.collect()
            (record,) = rec.finished
            assert record.error == "client left before the tunnel started"
        finally:
            await proxy.aclose()


@pytest.mark.anyio
async def test_plain_tcp_tunnel_takes_the_zero_copy_path(
    monkeypatch: pytest.MonkeyPatch, require_peer: Callable[[str], str]
) -> None:
    require_peer("curl")
    import rama_proxy._http_proxy as hp
    from rama_net import ForwardStats, forward, zero_copy_supported

    seen: list[ForwardStats] = []

    async def spy(left: ByteStream, right: ByteStream, **kw: object) -> ForwardStats:
        stats = await forward(left, right, **kw)  # type: ignore[arg-type]
        seen.append(stats)
        return stats

    monkeypatch.setattr(hp, "forward", spy)
    async with run_origin() as origin, run_proxy() as (port, _, rec):
        code, out, err = await run_curl(
            "-p",
            "-x",
            f"http://127.0.0.1:{port}",
            f"{origin.url}/big/2000000",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
        )
        assert code == 0, err
        assert out == "2000000"
        (record,) = await rec.wait(1)
    (stats,) = seen
    assert stats.zero_copy is zero_copy_supported()
    assert record.bytes_out == stats.right_to_left > 2000000


def test_realm_is_quoted_and_checked() -> None:
    checker = StaticCredentials({})
    proxy = HttpProxy(authenticator=ProxyAuthenticator(checker, realm='say "hi"'))
    assert proxy._realm_header == 'Basic realm="say \\"hi\\""'
    with pytest.raises(ValueError, match="control"):
        HttpProxy(authenticator=ProxyAuthenticator(checker, realm="a\r\nX-Injected: 1"))
    assert HttpProxy.server_config().max_body_size is None
    assert HttpProxy.server_config(max_body_size=5).max_body_size == 5


@pytest.mark.anyio
async def test_served_as_a_stream_service_over_ipv6(require_peer: Callable[[str], str]) -> None:
    require_peer("curl")
    from rama_core import service_fn as _fn
    from rama_http import Response
    from rama_http.server import HttpServer, serve
    from rama_net import TcpListener

    @_fn
    async def v6_origin(ctx: Context, req: Request) -> Response:
        return Response.from_text(f"v6 {req.method} {req.target} {req.headers.get('host')}\n")

    proxy = HttpProxy()
    try:
        async with (
            TcpListener.bind("[::1]:0") as origin,
            TcpListener.bind("[::1]:0") as listener,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(lambda: serve(origin, v6_origin))
            tg.start_soon(listener.serve, HttpServer(proxy, HttpProxy.server_config()))
            url = f"http://[::1]:{origin.local_addr.port}/six"
            px = f"http://[::1]:{listener.local_addr.port}"
            for args in ((), ("-p",)):
                code, out, err = await run_curl(*args, "-x", px, url)
                assert code == 0, err
                assert out == f"v6 GET /six [::1]:{origin.local_addr.port}\n"
            tg.cancel_scope.cancel()
    finally:
        await proxy.aclose()


@pytest.mark.anyio
async def test_pipelined_bytes_behind_connect_go_first_and_the_tunnel_still_splices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rama_proxy._http_proxy as hp
    from rama_net import ForwardStats, forward, zero_copy_supported

    seen: list[ForwardStats] = []

    async def spy(left: ByteStream, right: ByteStream, **kw: object) -> ForwardStats:
        stats = await forward(left, right, **kw)  # type: ignore[arg-type]
        seen.append(stats)
        return stats

    monkeypatch.setattr(hp, "forward", spy)
    async with run_origin() as origin, run_proxy() as (port, _, rec):
        stream = await connect_tcp(f"127.0.0.1:{port}")
        try:
            request = b"GET /piped HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            await stream.send(
                f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode() + request
            )
            status, _, _ = await read_response(stream)
            assert status == 200
            status, _, body = await read_response(stream)
            assert status == 200
            assert body.startswith(b"GET /piped\n")
        finally:
            await stream.aclose()
        (record,) = await rec.wait(1)
    (stats,) = seen
    assert stats.zero_copy is zero_copy_supported()
    assert record.bytes_in == len(request) + stats.left_to_right
