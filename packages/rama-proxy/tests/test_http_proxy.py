"""HttpProxy: forwarding, hop-by-hop fields, streaming, keep-alive, upstream selection, failures."""

from __future__ import annotations

import base64
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rama_core import Context
from rama_http import Headers
from rama_http.client import ProxyConfig
from rama_net import Authority, TcpListener, connect_tcp
from rama_proxy import (
    HOP_BY_HOP,
    Egress,
    HttpProxy,
    ProxyAuthenticator,
    ProxyFilter,
    ProxyUser,
    StaticCredentials,
    UpstreamFailure,
    is_websocket_upgrade,
    strip_hop_by_hop,
)

sys.path.insert(0, str(Path(__file__).parent))
from http_proxy_testutil import (
    free_port,
    raw_exchange,
    read_response,
    run_origin,
    run_proxy,
)

# -- hop-by-hop (sans-IO) -------------------------------------------------------------------


def test_strip_hop_by_hop_keeps_order_and_casing() -> None:
    h = Headers(
        [
            ("Host", "a"),
            ("X-B", "1"),
            ("Connection", "keep-alive, X-Secret"),
            ("Proxy-Connection", "keep-alive"),
            ("x-secret", "s"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic eA=="),
            ("Proxy-Authenticate", "Basic"),
            ("x-a", "2"),
        ]
    )
    assert strip_hop_by_hop(h).items() == [("Host", "a"), ("X-B", "1"), ("x-a", "2")]


def test_strip_without_hop_by_hop_is_the_same_object() -> None:
    h = Headers([("Host", "a"), ("Accept", "*/*")])
    assert strip_hop_by_hop(h) is h


def test_websocket_upgrade_keeps_upgrade() -> None:
    h = Headers([("Connection", "Upgrade, X-Y"), ("Upgrade", "websocket"), ("X-Y", "1")])
    assert is_websocket_upgrade(h)
    assert strip_hop_by_hop(h, keep_upgrade=True).items() == [
        ("Connection", "upgrade"),
        ("Upgrade", "websocket"),
    ]
    assert not is_websocket_upgrade(Headers([("Upgrade", "websocket")]))


_names = st.sampled_from(
    [*HOP_BY_HOP, "Host", "X-A", "x-b", "Accept", "Connection", "CONNECTION", "X-Listed"]
)
_tokens = st.lists(st.sampled_from(["close", "x-listed", "X-A", "keep-alive", ""]), max_size=3)


@given(st.lists(st.tuples(_names, _tokens), max_size=12))
def test_strip_hop_by_hop_property(fields: list[tuple[str, list[str]]]) -> None:
    h = Headers([(n, ", ".join(t) or "v") for n, t in fields])
    listed = {
        t.strip().lower() for n, v in h.items() if n.lower() == "connection" for t in v.split(",")
    }
    out = strip_hop_by_hop(h)
    for name, _ in out.items():
        assert name.lower() not in HOP_BY_HOP
        assert name.lower() not in listed
    kept = [(n, v) for n, v in h.items() if n.lower() not in HOP_BY_HOP | listed]
    assert out.items() == kept


# -- forwarding ------------------------------------------------------------------------------


def _names_of(headers: Sequence[tuple[str, str]]) -> list[str]:
    return [n for n, _ in headers]


@pytest.mark.anyio
async def test_forward_keeps_order_and_casing_and_drops_hop_by_hop() -> None:
    async with run_origin() as origin, run_proxy(via="rama", forwarded=True) as (port, _, rec):
        req = (
            f"GET {origin.url}/a?b=1 HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{origin.port}\r\n"
            "X-Zeta: 1\r\nconnection: keep-alive, X-Drop\r\nX-Drop: secret\r\n"
            "Proxy-Connection: keep-alive\r\nKeep-Alive: 5\r\nTE: trailers\r\n"
            "Proxy-Authorization: Basic dTpw\r\nx-alpha: 2\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"
        ).encode()
        status, head, body = await raw_exchange(port, req)
        assert status == 200
        assert b"\r\nVia: 1.1 rama" in head
        method, target, headers, _, _ = origin.seen[0]
        assert (method, target) == ("GET", "/a?b=1")
        assert headers == [
            ("Host", f"127.0.0.1:{origin.port}"),
            ("X-Zeta", "1"),
            ("x-alpha", "2"),
            ("X-Forwarded-For", "10.0.0.1, 127.0.0.1"),
            ("Via", "1.1 rama"),
            ("Forwarded", "for=127.0.0.1;proto=http"),
        ]
        (record,) = await rec.wait(1)
        assert record.protocol == "http"
        assert record.status == 200
        assert record.target == f"{origin.url}/a?b=1"
        assert record.bytes_out == len(body)
        assert record.upstream is None


@pytest.mark.anyio
async def test_stale_host_is_replaced_by_the_target_authority() -> None:
    async with run_origin() as origin, run_proxy() as (port, _, _):
        req = f"GET {origin.url}/ HTTP/1.1\r\nHost: evil.example\r\n\r\n".encode()
        status, _, _ = await raw_exchange(port, req)
        assert status == 200
        assert origin.seen[0][2][0] == ("Host", f"127.0.0.1:{origin.port}")


@pytest.mark.anyio
async def test_origin_form_is_not_a_proxy_request() -> None:
    async with run_proxy() as (port, _, rec):
        status, _, body = await raw_exchange(port, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        assert status == 400
        assert b"absolute URL" in body
        (record,) = await rec.wait(1)
        assert record.status == 400


@pytest.mark.anyio
async def test_keep_alive_both_sides_and_streaming_response() -> None:
    async with run_origin() as origin, run_proxy() as (port, _, rec):
        stream = await connect_tcp(f"127.0.0.1:{port}")
        try:
            for i in range(3):
                await stream.send(f"GET {origin.url}/n{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                status, _, body = await read_response(stream)
                assert status == 200
                assert f"/n{i}".encode() in body
            # one client connection, one upstream connection
            assert len({peer for *_, peer in origin.seen}) == 1
            # streaming: the first chunk arrives while the origin is still waiting
            await stream.send(f"GET {origin.url}/stream HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            buf = b""
            with anyio.fail_after(5):
                while b"first-chunk" not in buf:
                    buf += await stream.receive()
            assert b"second-chunk" not in buf
            assert b"transfer-encoding: chunked" in buf.lower()
            origin.gate.set()
            with anyio.fail_after(5):
                while b"0\r\n\r\n" not in buf:
                    buf += await stream.receive()
            assert b"second-chunk" in buf
        finally:
            await stream.aclose()
        records = await rec.wait(4)
        assert records[-1].bytes_out == len(b"first-chunk\nsecond-chunk\n")


@pytest.mark.anyio
async def test_streaming_request_body_is_not_buffered() -> None:
    async with run_origin() as origin, run_proxy() as (port, _, rec):
        stream = await connect_tcp(f"127.0.0.1:{port}")
        try:
            await stream.send(
                f"POST {origin.url}/upload HTTP/1.1\r\nHost: x\r\n"
                "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".encode()
            )
            with anyio.fail_after(5):
                await origin.got_first.wait()  # before the client sent the rest
            await stream.send(b"3\r\nabc\r\n0\r\n\r\n")
            status, _, body = await read_response(stream)
            assert status == 200
            assert body == b"first=hello rest=3\n"
        finally:
            await stream.aclose()
        (record,) = await rec.wait(1)
        assert record.bytes_in == 8


class _ByUser:
    """Selects an upstream by the user's pool label (as the proxy DB would)."""

    def __init__(self, upstreams: dict[str, str]) -> None:
        self.upstreams = upstreams
        self.reports: list[tuple[str, bool]] = []

    async def select(self, ctx: Context, target: Authority) -> Sequence[ProxyConfig]:
        user = ctx.get(ProxyUser)
        pool = user.filter.pool[0] if user is not None and user.filter.pool else None
        return (ProxyConfig(self.upstreams[pool]),) if pool in self.upstreams else ()

    def report(self, upstream: ProxyConfig, ok: bool) -> None:
        self.reports.append((upstream.url, ok))


class _Labels:
    """``user-pool-X[-new]``: a tiny label parser."""

    def parse(self, username: str) -> tuple[str, ProxyFilter]:
        parts = username.split("-")
        pool = (parts[2],) if len(parts) > 2 and parts[1] == "pool" else ()
        return parts[0], ProxyFilter(pool=pool, new_connection="new" in parts)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.anyio
@pytest.mark.parametrize("absolute", [True, False], ids=["absolute-form", "tunnel"])
async def test_upstream_chosen_per_request_and_new_connection(absolute: bool) -> None:
    up_auth = ProxyAuthenticator(StaticCredentials({"up": "s3cr3t"}))
    async with (
        run_origin() as origin,
        run_proxy(authenticator=up_auth) as (up_port, _, up_rec),
    ):
        upstream = f"http://127.0.0.1:{up_port}"
        selector = _ByUser({"a": f"http://up:s3cr3t@127.0.0.1:{up_port}"})
        auth = ProxyAuthenticator(StaticCredentials({"john": "pw"}), username_parser=_Labels())
        egress = Egress(selector=selector, connect_timeout=3)
        proxy = HttpProxy(egress=egress, authenticator=auth, absolute_form_upstream=absolute)
        async with run_proxy(proxy) as (port, _, rec):
            stream = await connect_tcp(f"127.0.0.1:{port}")
            try:
                for user in ("john-pool-a", "john-pool-a", "john", "john-pool-a-new"):
                    await stream.send(
                        f"GET {origin.url}/u HTTP/1.1\r\nHost: x\r\n"
                        f"Proxy-Authorization: {_basic(user, 'pw')}\r\n\r\n".encode()
                    )
                    status, _, _ = await read_response(stream)
                    assert status == 200
            finally:
                await stream.aclose()
            records = await rec.wait(4)
        assert [r.upstream for r in records] == [upstream, upstream, None, upstream]
        assert [r.user for r in records] == ["john"] * 4
        peers = [peer for *_, peer in origin.seen]
        assert peers[2] != peers[0]  # direct: its own connection
        if absolute:
            # the upstream proxy saw three forwarded requests with ITS credentials; the
            # first two on one pooled connection, the "new" one on a fresh connection
            up_records = await up_rec.wait(3)
            assert [(r.protocol, r.user) for r in up_records] == [("http", "up")] * 3
            ports = [r.client.port for r in up_records if r.client is not None]
            assert ports[0] == ports[1]
            assert ports[2] != ports[0]
        else:
            # 1 and 2 share the pooled tunnel, 4 asked for a new one
            assert peers[0] == peers[1]
            assert peers[3] not in (peers[0], peers[2])
            up_records = await up_rec.wait(2)
            assert [(r.protocol, r.user) for r in up_records] == [("connect", "up")] * 2
        assert all(
            n.lower() != "proxy-authorization"
            for _, _, headers, _, _ in origin.seen
            for n, _ in headers
        )
        assert selector.reports == [(selector.upstreams["a"], True)] * 3


@pytest.mark.anyio
async def test_upstream_failures_answer_502_and_504(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "rama.proxy.http")
    async with TcpListener.bind("127.0.0.1:0") as silent:
        # accepts (backlog) and never answers
        egress = Egress(connect_timeout=0.5)
        async with run_proxy(HttpProxy(egress=egress, timeout=0.3)) as (port, _, rec):
            refused = free_port()
            cases = [
                (f"http://127.0.0.1:{refused}/", 502, UpstreamFailure.REFUSED.reason),
                ("http://no-such-host.invalid/", 502, UpstreamFailure.DNS.reason),
                (
                    f"http://127.0.0.1:{silent.local_addr.port}/",
                    504,
                    UpstreamFailure.TIMEOUT.reason,
                ),
                # TLS to something that is not TLS
                (
                    f"https://127.0.0.1:{silent.local_addr.port}/",
                    504,
                    UpstreamFailure.TIMEOUT.reason,
                ),
            ]
            for url, want, reason in cases:
                started = anyio.current_time()
                status, _, body = await raw_exchange(
                    port, f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                )
                assert (status, body) == (want, reason.encode() + b"\n"), url
                assert anyio.current_time() - started < 2.5
            records = await rec.wait(len(cases))
            assert [r.status for r in records] == [c[1] for c in cases]
            # one line each, without a traceback
            lines = [r for r in caplog.records if r.name == "rama.proxy.http"]
            assert len(lines) == len(cases)
            assert all(r.levelno == logging.INFO and not r.exc_info for r in lines)
            assert records[0].error == UpstreamFailure.REFUSED.reason


@pytest.mark.anyio
async def test_tls_failure_to_an_https_target_is_502() -> None:
    async with run_origin() as origin, run_proxy(timeout=2) as (port, _, _):
        # an https:// URL to a plain HTTP server: the handshake fails
        status, _, body = await raw_exchange(
            port, f"GET https://127.0.0.1:{origin.port}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        assert status == 502
        assert body == UpstreamFailure.TLS.reason.encode() + b"\n"


@pytest.mark.anyio
async def test_bad_input_is_answered_and_other_connections_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with run_origin() as origin, run_proxy() as (port, _, _):
        keep = await connect_tcp(f"127.0.0.1:{port}")
        try:
            bad = [
                b"GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GARBAGE\r\n\r\n",
                b"GET http://exa mple.com/ HTTP/1.1\r\n\r\n",
                b"CONNECT example.com:https HTTP/1.1\r\nHost: x\r\n\r\n",
                b"CONNECT example.com HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET ftp://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET http://example.com:99999/ HTTP/1.1\r\nHost: x\r\n\r\n",
                b"CONNECT [::1:443 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"CONNECT example.com:-1 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"CONNECT :443 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET http:///nohost HTTP/1.1\r\nHost: x\r\n\r\n",
            ]
            caplog.set_level(logging.DEBUG, "rama")
            for data in bad:
                before = len(caplog.records)
                status, _, _ = await raw_exchange(port, data)
                assert status == 400, data
                await anyio.sleep(0.02)
                lines = [r for r in caplog.records[before:] if r.name.startswith("rama.")]
                assert len(lines) == 1, (data, [r.getMessage() for r in lines])  # logged once
                assert lines[0].levelno == logging.DEBUG
            await keep.send(f"GET {origin.url}/ok HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, _, body = await read_response(keep)
            assert status == 200
            assert b"/ok" in body
        finally:
            await keep.aclose()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


_WS_HANDSHAKE = (
    "GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade, X-Hop\r\nX-Hop: 1\r\n"
    "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\nProxy-Connection: keep-alive\r\n\r\n"
)


@pytest.mark.anyio
async def test_websocket_upgrade_is_relayed() -> None:
    async with run_origin() as origin, run_proxy() as (port, _, rec):
        stream = await connect_tcp(f"127.0.0.1:{port}")
        try:
            host = f"127.0.0.1:{origin.port}"
            await stream.send(_WS_HANDSHAKE.format(url=f"{origin.url}/ws", host=host).encode())
            buf = b""
            with anyio.fail_after(5):
                while b"\r\n\r\n" not in buf:
                    buf += await stream.receive()
            head = buf.split(b"\r\n\r\n")[0].decode()
            assert head.startswith("HTTP/1.1 101 ")
            assert "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head  # RFC 6455 sample
            assert "Upgrade: websocket" in head
            await stream.send(b"frame-bytes")
            with anyio.fail_after(5):
                assert await stream.receive() == b"echo:frame-bytes"
        finally:
            await stream.aclose()
        (_, target, headers, _, _) = origin.seen[0]
        assert target == "/ws"
        names = [n.lower() for n, _ in headers]
        assert ("Connection", "upgrade") in headers
        assert ("Upgrade", "websocket") in headers
        assert "x-hop" not in names
        assert "proxy-connection" not in names
        (record,) = await rec.wait(1)
        assert record.status == 101
        assert record.bytes_in == len(b"frame-bytes")
        assert record.bytes_out == len(b"echo:frame-bytes")


@pytest.mark.anyio
async def test_websocket_upgrade_refused_by_origin_passes_the_answer() -> None:
    async with run_origin() as origin, run_proxy() as (port, _, rec):
        host = f"127.0.0.1:{origin.port}"
        status, _, body = await raw_exchange(
            port, _WS_HANDSHAKE.format(url=f"{origin.url}/no-ws", host=host).encode()
        )
        # the origin answers a normal 200 (no upgrade): passed back with its body
        assert status == 200
        assert body.startswith(b"GET /no-ws\n")
        (record,) = await rec.wait(1)
        assert record.status == 200
        assert record.bytes_out == len(body)


@pytest.mark.anyio
async def test_request_without_host_gets_the_target_authority() -> None:
    from rama_proxy import StaticUpstream

    async with run_origin() as origin:
        # the origin plays the upstream proxy: it shows what it was sent
        egress = Egress(selector=StaticUpstream(origin.url))
        async with run_proxy(HttpProxy(egress=egress)) as (port, _, _):
            # HTTP/1.0 without Host, sent on in absolute-form to the upstream proxy
            status, _, body = await raw_exchange(
                port, b"GET http://example.test/h10 HTTP/1.0\r\n\r\n"
            )
            assert status == 200
            assert body.startswith(b"GET http://example.test/h10\nHost: example.test\n")


@pytest.mark.anyio
async def test_upstream_proxy_that_never_answers_connect_is_504() -> None:
    from rama_proxy import StaticUpstream

    async with TcpListener.bind("127.0.0.1:0") as silent:
        upstream = f"http://127.0.0.1:{silent.local_addr.port}"
        egress = Egress(selector=StaticUpstream(upstream), connect_timeout=0.3)
        async with run_proxy(HttpProxy(egress=egress, timeout=0.3)) as (port, _, rec):
            for data in (
                b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET https://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
            ):
                started = anyio.current_time()
                status, _, body = await raw_exchange(port, data)
                assert status == 504
                assert body == UpstreamFailure.TIMEOUT.reason.encode() + b"\n"
                assert anyio.current_time() - started < 2
            records = await rec.wait(2)
            assert [r.upstream for r in records] == [upstream, upstream]


@pytest.mark.anyio
async def test_answers_pass_through_untouched() -> None:
    """No redirects followed, no cookies kept, no decoding, trailers relayed, HEAD framed."""
    import gzip

    async with run_origin() as origin, run_proxy() as (port, _, _):
        status, head, body = await raw_exchange(
            port, f"GET {origin.url}/redirect HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        assert status == 302
        assert b"\r\nLocation: /elsewhere\r\n" in head
        assert b"\r\nSet-Cookie: a=1; Path=/\r\n" in head
        assert body == b"moved\n"
        status, head, body = await raw_exchange(
            port, f"GET {origin.url}/gzip HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        assert status == 200
        assert b"\r\nContent-Encoding: gzip\r\n" in head
        assert gzip.decompress(body) == b"compressed body\n"
        status, head, body = await raw_exchange(
            port, f"HEAD {origin.url}/gzip HTTP/1.1\r\nHost: x\r\n\r\n".encode(), no_body=True
        )
        assert status == 200
        assert body == b""
        stream = await connect_tcp(f"127.0.0.1:{port}")
        try:
            await stream.send(
                f"GET {origin.url}/trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n".encode()
            )
            buf = b""
            with anyio.fail_after(5):
                while not buf.endswith(b"\r\n\r\n") or b"0\r\n" not in buf:
                    buf += await stream.receive()
            assert b"part1\n" in buf
            assert b"part2\n" in buf
            assert buf.endswith(b"0\r\nX-Checksum: abc\r\n\r\n")
        finally:
            await stream.aclose()
