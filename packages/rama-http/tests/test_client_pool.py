"""The connection pool and the connector stack: reuse, limits, staleness, proxies, leaks."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream
from rama_http_client_peer import (
    RawServer,
    connect_proxy,
    echo,
    make_cert,
    rama_server,
    read_head,
    server_ssl,
)

from rama_core import Context
from rama_http import RemoteProtocolError, Request, Response
from rama_http._uri import Uri
from rama_http.client import (
    HttpClient,
    HttpConnector,
    Limits,
    PoolKey,
    PoolTimeout,
    ProxyError,
    Timeout,
)
from rama_tls import TlsClientConfig

pytestmark = pytest.mark.anyio

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_server_closed_idle_connection_is_detected_before_reuse() -> None:
    async def once_then_close(stream: SocketStream, n: int) -> None:
        await read_head(stream)
        await stream.send(OK)  # keep-alive by HTTP/1.1 default, then close anyway

    srv = RawServer(once_then_close)
    async with srv.run(), HttpClient() as c:
        url = f"http://127.0.0.1:{srv.port}/"
        assert (await c.get(url)).status == 200
        await anyio.sleep(0.2)  # the FIN arrives while the connection is idle
        assert (await c.post(url, content=b"not idempotent")).status == 200
        assert srv.connections == 2


async def test_idempotent_request_retried_once_on_stale_connection() -> None:
    async def drop_second(stream: SocketStream, n: int) -> None:
        _, rest = await read_head(stream)
        await stream.send(OK)
        await read_head(stream, rest)  # the next request: close without answering

    srv = RawServer(drop_second)
    async with srv.run(), HttpClient() as c:
        url = f"http://127.0.0.1:{srv.port}/"
        assert (await c.get(url)).status == 200
        assert (await c.get(url)).status == 200  # failed on the reused one, retried on a fresh one
        assert srv.connections == 2
        with pytest.raises(RemoteProtocolError):
            await c.post(url, content=b"x")  # reused, fails, POST is not retried
        s = c.pool_stats()
        assert s.active == 0


async def test_limits_per_host_and_waiting() -> None:
    active = 0
    peak = 0

    async def slow(ctx: Context, req: Request) -> Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await anyio.sleep(0.1)
        active -= 1
        return Response.from_text("ok")

    async with (
        rama_server(slow) as port,
        HttpClient(limits=Limits(max_connections_per_host=2)) as c,
    ):
        results: list[int] = []

        async def one() -> None:
            results.append((await c.get(f"http://127.0.0.1:{port}/")).status)

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(one)
        assert results == [200] * 6
        assert peak == 2
        s = c.pool_stats()
        assert (s.idle, s.active) == (2, 0)
        assert s.per_host[f"http://127.0.0.1:{port}"].idle == 2


async def test_pool_timeout_and_total_limit_and_no_leak_after_cancel() -> None:
    async with rama_server(echo) as port, HttpClient(limits=Limits(max_connections=1)) as c:
        url = f"http://127.0.0.1:{port}/"
        async with c.stream("GET", url) as held:
            assert held.status == 200
            with pytest.raises(PoolTimeout):
                await c.get(url, timeout=Timeout(pool=0.2))
            # a cancelled waiter leaves nothing behind
            with anyio.move_on_after(0.1):
                await c.get(url)
            assert c.pool_stats().waiting == 0
        # the held body was closed unread: its connection is dropped, not reused
        assert (await c.get(url)).status == 200
        s = c.pool_stats()
        assert (s.active, s.connecting, s.waiting) == (0, 0, 0)
        assert s.total == 1


async def test_cancel_mid_response_leaks_nothing() -> None:
    async def stall(stream: SocketStream, n: int) -> None:
        await read_head(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        await anyio.sleep(30)

    srv = RawServer(stall)
    async with srv.run(), HttpClient() as c:
        with anyio.move_on_after(0.3):
            await c.get(f"http://127.0.0.1:{srv.port}/")
        s = c.pool_stats()
        assert (s.idle, s.active, s.connecting) == (0, 0, 0)
        with anyio.move_on_after(0.3):
            async with c.stream("GET", f"http://127.0.0.1:{srv.port}/") as r:
                async for _ in r.body:
                    pass
        s = c.pool_stats()
        assert (s.idle, s.active, s.connecting) == (0, 0, 0)


async def test_idle_expiry() -> None:
    async with rama_server(echo) as port, HttpClient(limits=Limits(keepalive_expiry=0.2)) as c:
        url = f"http://127.0.0.1:{port}/"
        await c.get(url)
        first = next(iter(c.pool._conns.values()))[0]
        await anyio.sleep(0.3)
        await c.get(url)
        second = next(iter(c.pool._conns.values()))[0]
        assert first is not second
        assert first.is_closed


def test_pool_key_separates_tls_proxy_and_emulation() -> None:
    u = Uri.parse("https://Example.com/x")
    a = PoolKey.for_uri(u, tls=TlsClientConfig())
    assert a == PoolKey.for_uri(Uri.parse("https://example.com:443/y"), tls=TlsClientConfig())
    assert a != PoolKey.for_uri(u, tls=TlsClientConfig(server_name="other"))
    assert a != PoolKey.for_uri(u, tls=TlsClientConfig(), emulation="chrome-120")
    from rama_http.client import ProxyConfig

    assert a != PoolKey.for_uri(u, tls=TlsClientConfig(), proxy=ProxyConfig("http://p:3128"))
    assert PoolKey.for_uri(Uri.parse("http://[::1]:8080/")).authority == "[::1]:8080"


async def test_connector_usable_alone() -> None:
    async with rama_server(echo) as port:
        conn = await HttpConnector().serve(Context(), PoolKey("http", "127.0.0.1", port))
        try:
            assert conn.reserve()
            resp = await conn.send(Request("GET", "/alone"), Timeout())
            assert resp.status == 200
            assert b"/alone" in await resp.body.read()
            assert conn.in_flight == 0
            assert not conn.is_closed
        finally:
            await conn.aclose()


async def test_connect_proxy_http_and_https(tmp_path: Path) -> None:
    log: list[str] = []
    ck = make_cert("localhost")
    async with connect_proxy(log) as proxy_port, rama_server(echo) as port:
        async with HttpClient(proxy=f"http://127.0.0.1:{proxy_port}") as c:
            r = await c.get(f"http://127.0.0.1:{port}/via")
            assert (await r.json())["target"] == "/via"
        async with rama_server(echo, ssl_context=server_ssl(ck, tmp_path)) as tls_port:
            async with HttpClient(
                proxy=f"http://user:pw@127.0.0.1:{proxy_port}",
                tls=TlsClientConfig(ca_pem=ck.cert_pem()),
            ) as c:
                r = await c.get(f"https://localhost:{tls_port}/tls")
                assert (await r.json())["target"] == "/tls"
                with pytest.raises(ProxyError):
                    await c.get("https://deny.invalid/")
                s = c.pool_stats()
                assert (s.active, s.connecting) == (0, 0)
    assert log[0] == f"CONNECT 127.0.0.1:{port} HTTP/1.1"
    assert log[1] == f"CONNECT localhost:{tls_port} HTTP/1.1"


async def test_total_limit_evicts_idle_connection_of_another_host() -> None:
    async with (
        rama_server(echo) as a,
        rama_server(echo) as b,
        HttpClient(limits=Limits(max_connections=1)) as c,
    ):
        await c.get(f"http://127.0.0.1:{a}/")
        first = next(iter(c.pool._conns.values()))[0]
        await c.get(f"http://127.0.0.1:{b}/")
        assert first.is_closed
        s = c.pool_stats()
        assert s.total == 1
        assert list(s.per_host) == [f"http://127.0.0.1:{b}"]


async def test_connection_close_response_closes_the_socket_at_once() -> None:
    saw_eof = anyio.Event()

    async def close_after(stream: SocketStream, n: int) -> None:
        await read_head(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        try:
            while await stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            saw_eof.set()

    srv = RawServer(close_after)
    async with srv.run(), HttpClient() as c:
        r = await c.get(f"http://127.0.0.1:{srv.port}/")
        assert await r.read() == b"ok"
        with anyio.fail_after(2):
            await saw_eof.wait()  # the client closed its socket, not just forgot it
        assert c.pool_stats().total == 0


async def test_unsupported_proxy_scheme_is_a_typed_error() -> None:
    async with HttpClient(proxy="socks5://127.0.0.1:1080") as c:
        with pytest.raises(ProxyError, match="ProxyConnector"):
            await c.get("http://example.invalid/")
        assert c.pool_stats().total == 0


class _Multiplexed:
    """A connection taking 3 requests at once (the shape of h2), without I/O: the pool's view."""

    max_concurrent_streams = 3

    def __init__(self) -> None:
        import time as _time

        self.on_release = None
        self.in_flight = 0
        self.requests_sent = 0
        self.is_closed = False
        self.idle_since = _time.monotonic()

    def is_dead_at_idle(self) -> bool:
        return False

    def reserve(self) -> bool:
        if self.is_closed or self.in_flight >= self.max_concurrent_streams:
            return False
        self.in_flight += 1
        return True

    def finish(self) -> None:
        self.in_flight -= 1
        if self.on_release is not None:
            self.on_release(self)  # type: ignore[unreachable]

    async def send(self, request: Request, timeout: Timeout) -> Response:  # pragma: no cover
        raise NotImplementedError

    async def aclose(self) -> None:
        self.is_closed = True


async def test_pool_multiplexes_on_connections_with_many_streams() -> None:
    from rama_http.client import ConnectionPool

    opened: list[_Multiplexed] = []

    class Connector:
        async def serve(self, ctx: Context, key: PoolKey) -> _Multiplexed:
            opened.append(_Multiplexed())
            return opened[-1]

    pool = ConnectionPool(Connector(), max_connections_per_host=2)  # type: ignore[arg-type]
    key = PoolKey("https", "h2.example", 443)
    got = [await pool.acquire(Context(), key) for _ in range(6)]
    assert len(opened) == 2
    assert [got.count(c) for c in opened] == [3, 3]
    with pytest.raises(PoolTimeout):
        await pool.acquire(Context(), key, pool_timeout=0.1)
    opened[1].finish()
    assert await pool.acquire(Context(), key, pool_timeout=1) is opened[1]
    s = pool.stats()
    assert (s.active, s.idle) == (2, 0)
    await pool.aclose()


async def test_fresh_retry_at_the_host_limit_replaces_an_idle_connection() -> None:
    """A retry skips pooled connections; at the host's limit an idle one makes room for it."""
    async with (
        rama_server(echo) as port,
        HttpClient(limits=Limits(max_connections_per_host=1)) as c,
    ):
        url = f"http://127.0.0.1:{port}/"
        assert (await c.get(url)).status == 200  # one idle connection: the host's limit
        key = next(iter(c.pool._conns))
        first = c.pool._conns[key][0]
        with anyio.fail_after(5):  # before: waited for PoolTimeout
            conn = await c.pool.acquire(Context(), key, pool_timeout=2.0, fresh=True)
        assert conn is not first
        assert first.is_closed
        resp = await conn.send(Request("GET", url), Timeout(5.0))
        assert resp.status == 200
        await resp.read()
        assert c.pool_stats().total == 1
