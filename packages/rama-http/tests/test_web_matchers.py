"""The HTTP matchers and MatchRouter over a real server (plain and TLS)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from rama_core import Context, Service, service_fn
from rama_http import Request, Response, Version
from rama_http.server import serve
from rama_http.web import (
    HeaderMatcher,
    HostMatcher,
    MatchRouter,
    MethodMatcher,
    PathMatcher,
    PathParams,
    QueryMatcher,
    TlsMatcher,
    VersionMatcher,
)
from rama_net import PeerAddressMatcher, TcpListener
from rama_tls import CertificateAuthority

pytestmark = pytest.mark.anyio


def answer(name: str) -> Service[Request, Response]:
    @service_fn
    async def svc(ctx: Context, req: Request) -> Response:
        params = ctx.get(PathParams)
        return Response.from_text(f"{name} {dict(params) if params else {}}")

    return svc


def build() -> MatchRouter:
    return MatchRouter(
        [
            (MethodMatcher("POST") & PathMatcher("/items/{id:int}"), answer("post-item")),
            (HostMatcher("*.corp.test") & ~HeaderMatcher("x-guest"), answer("corp")),
            (HeaderMatcher("x-admin", "1") & PeerAddressMatcher(["10.0.0.0/8"]), answer("admin10")),
            (HeaderMatcher("x-admin", "1") & PeerAddressMatcher(["127.0.0.0/8"]), answer("admin")),
            (
                QueryMatcher("debug") | HeaderMatcher("user-agent", pattern=r"^curl/"),
                answer("debug"),
            ),
            (VersionMatcher(Version.HTTP_2), answer("h2")),
            (TlsMatcher(alpn=["http/1.1"]), answer("tls")),
        ],
        fallback=answer("fallback"),
    )


@asynccontextmanager
async def running(sctx: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(listener, build(), ssl_context=sctx))
        yield listener.local_addr.port
        tg.cancel_scope.cancel()


async def test_matchers_in_order() -> None:
    async with running() as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        assert (await c.post("/items/3")).text == "post-item {'id': 3}"
        assert (await c.get("/items/3")).text == "fallback {}"
        assert (await c.get("/", headers={"Host": "a.corp.test"})).text == "corp {}"
        assert (await c.get("/", headers={"Host": "corp.test"})).text == "fallback {}"
        r = await c.get("/", headers={"Host": "a.corp.test", "x-guest": "1"})
        assert r.text == "fallback {}"
        assert (await c.get("/", headers={"x-admin": "1"})).text == "admin {}"
        assert (await c.get("/?debug")).text == "debug {}"
        assert (await c.get("/", headers={"User-Agent": "curl/8"})).text == "debug {}"
    async with (
        running() as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", http1=False, http2=True) as c,
    ):
        assert (await c.get("/")).text == "h2 {}"


async def test_tls_matcher(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("m CA")
    leaf = ca.issue("localhost")
    (tmp_path / "c.pem").write_bytes(leaf.chain_pem())
    (tmp_path / "k.pem").write_bytes(leaf.key_pem())
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    sctx.set_alpn_protocols(["http/1.1"])
    cctx = ssl.create_default_context(cadata=ca.cert_pem().decode())
    async with (
        running(sctx) as port,
        httpx.AsyncClient(base_url=f"https://localhost:{port}", verify=cctx) as c,
    ):
        assert (await c.get("/")).text == "tls {}"
