"""Redirect services and the liveness/readiness endpoints (readiness drops at shutdown)."""

from __future__ import annotations

import anyio
import httpx
import pytest

from rama_core import Shutdown
from rama_http.server import serve
from rama_http.web import HealthService, Redirect, RedirectToHost, RedirectToHttps, Router
from rama_net import TcpListener

pytestmark = pytest.mark.anyio


async def test_redirects() -> None:
    router = Router()
    router.route("/old", Redirect("/new", permanent=True))
    router.route("/tmp", Redirect("/elsewhere", keep_method=True))
    router.route("/moved/{*p}", RedirectToHost("https://example.test/"))
    router.route("/secure/{*p}", RedirectToHttps(port=8443))
    listener = TcpListener.bind("127.0.0.1:0")
    base = f"http://127.0.0.1:{listener.local_addr.port}"
    async with anyio.create_task_group() as tg, httpx.AsyncClient(base_url=base) as c:
        tg.start_soon(serve, listener, router)
        r = await c.get("/old")
        assert (r.status_code, r.headers["location"]) == (301, "/new")
        r = await c.post("/tmp")
        assert (r.status_code, r.headers["location"]) == (307, "/elsewhere")
        r = await c.get("/moved/a/b?x=1")
        assert (r.status_code, r.headers["location"]) == (308, "https://example.test/moved/a/b?x=1")
        r = await c.get("/secure/p?q", headers={"Host": "shop.test:8080"})
        assert r.headers["location"] == "https://shop.test:8443/secure/p?q"
        r = await c.get("/secure/p", headers={"Host": "[::1]:8080"})
        assert r.headers["location"] == "https://[::1]:8443/secure/p"
        tg.cancel_scope.cancel()


async def test_readiness_turns_503_when_shutdown_starts() -> None:
    ready = True
    probe_started = anyio.Event()
    release = anyio.Event()

    async def check() -> bool:
        if not release.is_set():
            probe_started.set()
            await release.wait()
        return ready

    listener = TcpListener.bind("127.0.0.1:0")
    base = f"http://127.0.0.1:{listener.local_addr.port}"
    codes: list[int] = []
    async with Shutdown(grace=5.0) as shutdown:
        shutdown.spawn(serve, listener, HealthService(checks=[check]))
        async with httpx.AsyncClient(base_url=base) as c:
            assert (await c.get("/livez")).status_code == 200
            assert (await c.get("/nope")).status_code == 404

            async def probe() -> None:
                codes.append((await c.get("/readyz")).status_code)

            async with anyio.create_task_group() as tg:
                tg.start_soon(probe)
                await probe_started.wait()  # the probe is in flight
                shutdown.trigger("test")
                release.set()
    assert codes == [503]


async def test_readiness_checks() -> None:
    ready = False

    async def check() -> bool:
        return ready

    listener = TcpListener.bind("127.0.0.1:0")
    base = f"http://127.0.0.1:{listener.local_addr.port}"
    async with anyio.create_task_group() as tg, httpx.AsyncClient(base_url=base) as c:
        tg.start_soon(serve, listener, HealthService(checks=[check]))
        assert (await c.get("/readyz")).status_code == 503
        ready = True
        assert (await c.get("/readyz")).status_code == 200
        tg.cancel_scope.cancel()
