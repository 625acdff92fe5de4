"""Client layers alone and in HttpClient: retries, Retry-After, total timeout, auth, jar."""

from __future__ import annotations

import anyio
import pytest
from anyio.abc import SocketStream
from rama_http_client_peer import RawServer, echo, rama_server, read_head

from rama_core import Context
from rama_http import Request, Response
from rama_http._headers import Headers
from rama_http._uri import Uri
from rama_http.client import (
    BearerAuth,
    CookieJar,
    HttpClient,
    RetryPolicy,
    Timeout,
    TotalTimeout,
)

pytestmark = pytest.mark.anyio


async def test_retry_on_503_with_retry_after_idempotent_only() -> None:
    calls: list[str] = []

    async def flaky(ctx: Context, req: Request) -> Response:
        calls.append(req.method)
        if len(calls) % 3 != 0:
            return Response.from_text("busy", status=503, headers=[("Retry-After", "0")])
        return Response.from_text("ok")

    async with (
        rama_server(flaky) as port,
        HttpClient(retries=RetryPolicy(max_retries=2, backoff_factor=0.01)) as c,
    ):
        r = await c.get(f"http://127.0.0.1:{port}/")
        assert r.status == 200
        assert calls == ["GET"] * 3
        calls.clear()
        r = await c.post(f"http://127.0.0.1:{port}/", content=b"x")
        assert r.status == 503  # POST is not retried
        assert calls == ["POST"]
        assert c.pool_stats().active == 0


async def test_retry_on_connection_error_with_backoff() -> None:
    async def drop_first(stream: SocketStream, n: int) -> None:
        await read_head(stream)
        if n >= 2:
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    srv = RawServer(drop_first)
    async with srv.run(), HttpClient(retries=RetryPolicy(max_retries=3, backoff_factor=0.01)) as c:
        r = await c.get(f"http://127.0.0.1:{srv.port}/")
        assert r.status == 200
        assert srv.connections == 3


def test_retry_policy_delay_jitter_and_retry_after() -> None:
    p = RetryPolicy(backoff_factor=1.0, max_backoff=4.0)
    for attempt in range(6):
        assert 0 <= p.delay(attempt, None) <= min(4.0, 2**attempt)
    assert p.delay(0, 7.0) == 7.0


async def test_total_timeout_covers_redirect_chain() -> None:
    async def slow_redirect(ctx: Context, req: Request) -> Response:
        await anyio.sleep(0.15)
        return Response(302, headers=[("Location", "/again")])

    async with rama_server(slow_redirect) as port, HttpClient() as c:
        with anyio.fail_after(5), pytest.raises(TotalTimeout):
            await c.get(f"http://127.0.0.1:{port}/", timeout=Timeout(total=0.5))
        assert c.pool_stats().active == 0


async def test_bearer_auth_and_per_request_override() -> None:
    async with rama_server(echo) as port, HttpClient(auth=BearerAuth("t0k")) as c:
        d = await (await c.get(f"http://127.0.0.1:{port}/")).json()
        assert ["Authorization", "Bearer t0k"] in d["headers"]
        d = await (await c.get(f"http://127.0.0.1:{port}/", auth=("a", "b"))).json()
        assert ["Authorization", "Basic YTpi"] in d["headers"]
        d = await (await c.get(f"http://u:p@127.0.0.1:{port}/", auth=None)).json()
        assert ["Authorization", "Basic dTpw"] in d["headers"]


def test_cookie_jar_domain_path_secure() -> None:
    jar = CookieJar()
    jar.extract(
        Uri.parse("https://www.example.com/a/b"),
        Headers(
            [
                ("Set-Cookie", "host=1"),
                ("Set-Cookie", "dom=2; Domain=example.com; Path=/"),
                ("Set-Cookie", "sec=3; Secure; Path=/"),
                ("Set-Cookie", "evil=4; Domain=attacker.com"),
            ]
        ),
    )
    assert jar.header_for(Uri.parse("https://www.example.com/a/c")) == "host=1; dom=2; sec=3"
    assert jar.header_for(Uri.parse("http://api.example.com/x")) == "dom=2"
    assert jar.header_for(Uri.parse("https://attacker.com/")) is None
