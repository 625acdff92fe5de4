"""SOCKS with real peers: curl, httpx, requests, the rama client, dante as an upstream."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
import requests

from rama_core import Context, service_fn
from rama_http import Request, Response
from rama_http.client import HttpClient, ProxyConfig, ProxyError, ProxyRequest
from rama_http.server import serve
from rama_net import Authority, TcpListener, connect_tcp
from rama_proxy import (
    Egress,
    ProxyAuthenticator,
    ProxyObservers,
    ProxyRecord,
    Socks5ProxyConnector,
    SocksProxy,
    SocksProxyError,
    StaticCredentials,
    StaticUpstream,
    UpstreamError,
    UpstreamFailure,
    default_proxy_connectors,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Observer:
    def __init__(self) -> None:
        self.records: list[ProxyRecord] = []

    def started(self, record: ProxyRecord) -> None:
        pass

    def finished(self, record: ProxyRecord) -> None:
        self.records.append(record)

    async def wait(self, n: int) -> list[ProxyRecord]:
        """The records once ``n`` have finished (a tunnel ends after its client saw it)."""
        with anyio.fail_after(5):
            while len(self.records) < n:
                await anyio.sleep(0.005)
        return self.records


@service_fn
async def _hello(ctx: Context, req: Request) -> Response:
    return Response.from_json({"target": req.target, "host": req.headers.get("host")})


@asynccontextmanager
async def _origin() -> AsyncIterator[int]:
    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(listener, _hello))
        try:
            yield listener.local_addr.port
        finally:
            tg.cancel_scope.cancel()


@asynccontextmanager
async def _socks(proxy: SocksProxy, observer: _Observer | None = None) -> AsyncIterator[int]:
    ctx = Context()
    if observer is not None:
        ctx.insert(ProxyObservers(observer))
    async with TcpListener.bind("127.0.0.1:0") as listener:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: listener.serve(proxy, ctx=ctx))
            try:
                yield listener.local_addr.port
            finally:
                tg.cancel_scope.cancel()


def _auth() -> ProxyAuthenticator:
    return ProxyAuthenticator(StaticCredentials({"john": "s3cr:t"}))


async def _curl(curl: str, *args: str) -> tuple[int, dict[str, str]]:
    result = await anyio.run_process([curl, "-sS", "-m", "5", *args], check=False)
    if result.returncode != 0:
        return result.returncode, {"stderr": result.stderr.decode()}
    return 0, json.loads(result.stdout)


@pytest.mark.anyio
async def test_curl_every_socks_mode(require_peer: Callable[[str], str]) -> None:
    curl = require_peer("curl")
    obs = _Observer()
    async with _origin() as origin, _socks(SocksProxy(), obs) as port:
        proxy = f"127.0.0.1:{port}"
        cases = [
            (["--socks5", proxy], "127.0.0.1"),  # curl resolves: the proxy gets an IP
            (["--socks5-hostname", proxy], "localhost"),  # the proxy resolves
            (["-x", f"socks5h://{proxy}"], "localhost"),
            (["--socks4", proxy], "127.0.0.1"),
            (["--socks4a", proxy], "localhost"),
        ]
        for args, sent_host in cases:
            count = len(obs.records)
            rc, body = await _curl(curl, *args, f"http://localhost:{origin}/x")
            assert rc == 0, (args, body)
            assert body["target"] == "/x"
            assert body["host"] == f"localhost:{origin}"
            records = await obs.wait(count + 1)
            assert records[-1].target == f"{sent_host}:{origin}", args
    assert [r.protocol for r in obs.records] == ["socks5"] * 3 + ["socks4"] * 2
    assert all(r.status in (0, 90) for r in obs.records)


@pytest.mark.anyio
async def test_curl_with_credentials(require_peer: Callable[[str], str]) -> None:
    curl = require_peer("curl")
    obs = _Observer()
    async with _origin() as origin, _socks(SocksProxy(authenticator=_auth()), obs) as port:
        rc, body = await _curl(
            curl, "-x", f"socks5h://john:s3cr%3At@127.0.0.1:{port}", f"http://localhost:{origin}/"
        )
        assert rc == 0, body
        rc, body = await _curl(
            curl,
            "--socks5-hostname",
            f"127.0.0.1:{port}",
            "--proxy-user",
            "john:s3cr:t",
            f"http://localhost:{origin}/",
        )
        assert rc == 0, body
        rc, _ = await _curl(
            curl, "-x", f"socks5h://john:wrong@127.0.0.1:{port}", f"http://localhost:{origin}/"
        )
        assert rc == 97  # CURLE_PROXY: the proxy refused the handshake
        await obs.wait(2)
    assert [r.user for r in obs.records] == ["john", "john"]


@pytest.mark.anyio
async def test_httpx_through_socks5() -> None:
    async with _origin() as origin, _socks(SocksProxy(authenticator=_auth())) as port:
        async with httpx.AsyncClient(proxy=f"socks5://john:s3cr%3At@127.0.0.1:{port}") as c:
            r = await c.get(f"http://localhost:{origin}/httpx")
            assert r.status_code == 200
            assert r.json()["target"] == "/httpx"


@pytest.mark.anyio
async def test_requests_through_socks5h() -> None:
    async with _origin() as origin, _socks(SocksProxy(authenticator=_auth())) as port:

        def get() -> requests.Response:
            proxy = f"socks5h://john:s3cr%3At@127.0.0.1:{port}"
            return requests.get(
                f"http://localhost:{origin}/requests",
                proxies={"http": proxy, "https": proxy},
                timeout=5,
            )

        r = await anyio.to_thread.run_sync(get)
        assert r.status_code == 200
        assert r.json()["target"] == "/requests"


@pytest.mark.anyio
@pytest.mark.parametrize("scheme", ["socks5", "socks5h", "socks4", "socks4a"])
async def test_rama_client_through_rama_socks(scheme: str) -> None:
    obs = _Observer()
    auth = _auth() if scheme.startswith("socks5") else None
    creds = "john:s3cr%3At@" if auth else ""
    async with _origin() as origin, _socks(SocksProxy(authenticator=auth), obs) as port:
        async with HttpClient(
            proxy=f"{scheme}://{creds}127.0.0.1:{port}",
            proxy_connector=default_proxy_connectors(),
        ) as client:
            r = await client.get(f"http://localhost:{origin}/rama")
            assert r.status == 200
            assert (await r.json())["target"] == "/rama"
        await obs.wait(1)
    sent = "localhost" if scheme.endswith(("h", "a")) else "127.0.0.1"
    assert obs.records[0].target in (f"{sent}:{origin}", f"[::1]:{origin}")
    if scheme in ("socks5h", "socks4a"):
        assert obs.records[0].target == f"localhost:{origin}"
    assert obs.records[0].user == ("john" if auth else None)


async def _tunnel(url: str, target: str) -> SocksProxyError:
    proxy = ProxyConfig(url)
    stream = await connect_tcp(str(proxy.authority))
    try:
        with pytest.raises(SocksProxyError) as info:
            await Socks5ProxyConnector().serve(
                Context(), ProxyRequest(stream, Authority.parse(target), proxy)
            )
        return info.value
    finally:
        await stream.aclose()


@pytest.mark.anyio
async def test_connector_maps_replies_to_upstream_failures() -> None:
    closed = _free_port()
    async with (
        _socks(SocksProxy(authenticator=_auth(), allow_connect_ports=[closed])) as port,
    ):
        err = await _tunnel(f"socks5h://john:s3cr%3At@127.0.0.1:{port}", f"127.0.0.1:{closed}")
        assert err.failure is UpstreamFailure.REFUSED
        assert err.reply == 0x05
        assert err.upstream == f"socks5h://127.0.0.1:{port}"
        assert "s3cr" not in str(err)
        assert isinstance(err, ProxyError)
        assert isinstance(err, UpstreamError)
        err = await _tunnel(f"socks5h://john:s3cr%3At@127.0.0.1:{port}", "127.0.0.1:80")
        assert err.failure is UpstreamFailure.NOT_ALLOWED
        err = await _tunnel(f"socks5h://john:bad@127.0.0.1:{port}", "127.0.0.1:80")
        assert err.failure is UpstreamFailure.PROXY
        assert "refused the credentials" in str(err)
        err = await _tunnel(f"socks5h://127.0.0.1:{port}", "127.0.0.1:80")
        assert "accepts none" in str(err)
    # through the HTTP client: the same typed error reaches the caller
    async with _socks(SocksProxy()) as port:
        async with HttpClient(
            proxy=f"socks5h://127.0.0.1:{port}", proxy_connector=default_proxy_connectors()
        ) as client:
            with pytest.raises(ProxyError) as info:
                await client.get(f"http://127.0.0.1:{closed}/")
            cause: BaseException | None = info.value
            while cause is not None and not isinstance(cause, UpstreamError):
                cause = cause.__cause__ or cause.__context__
            assert isinstance(cause, UpstreamError)
            assert cause.failure is UpstreamFailure.REFUSED


@pytest.mark.anyio
async def test_chain_socks_front_to_rama_socks_upstream_with_auth() -> None:
    obs = _Observer()
    closed = _free_port()
    async with _origin() as origin, _socks(SocksProxy(authenticator=_auth())) as upstream:
        egress = Egress(selector=StaticUpstream(f"socks5h://john:s3cr%3At@127.0.0.1:{upstream}"))
        async with _socks(SocksProxy(egress=egress), obs) as front:
            async with HttpClient(
                proxy=f"socks5h://127.0.0.1:{front}", proxy_connector=default_proxy_connectors()
            ) as client:
                r = await client.get(f"http://localhost:{origin}/chain")
                assert (await r.json())["target"] == "/chain"
            await obs.wait(1)
            # the upstream's "refused" comes back as the front's reply code
            stream = await connect_tcp(f"127.0.0.1:{front}")
            await stream.send(
                b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" + closed.to_bytes(2, "big")
            )
            got = b""
            with anyio.fail_after(5):
                while len(got) < 12:
                    got += await stream.receive()
            assert got[:4] == b"\x05\x00\x05\x05"
            await stream.aclose()
            await obs.wait(2)
    assert obs.records[0].upstream == f"socks5h://127.0.0.1:{upstream}"
    assert obs.records[1].status == 0x05


DANTE_CONF = """
logoutput: stderr
internal: 127.0.0.1 port = {port}
external: 127.0.0.1
socksmethod: none
clientmethod: none
client pass {{
  from: 127.0.0.0/8 to: 0.0.0.0/0
}}
socks pass {{
  from: 127.0.0.0/8 to: 0.0.0.0/0
}}
"""


@pytest.fixture
def dante(tmp_path: Path, require_peer: Callable[[str], str]) -> Iterator[int]:
    """danted on a free loopback port (socksmethod none); yields the port."""
    binary = require_peer("danted")
    port = _free_port()
    conf = tmp_path / "danted.conf"
    conf.write_text(DANTE_CONF.format(port=port))
    proc = subprocess.Popen(
        [binary, "-f", str(conf), "-p", str(tmp_path / "danted.pid"), "-N", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # danted forks helpers: stop the whole group it made
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"danted exited: {err[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("danted did not start listening")
                time.sleep(0.05)
        yield port
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.mark.anyio
async def test_rama_through_dante_upstream(dante: int, require_peer: Callable[[str], str]) -> None:
    curl = require_peer("curl")
    obs = _Observer()
    closed = _free_port()
    async with _origin() as origin:
        # the rama client straight to dante
        async with HttpClient(
            proxy=f"socks5h://127.0.0.1:{dante}", proxy_connector=default_proxy_connectors()
        ) as client:
            r = await client.get(f"http://localhost:{origin}/dante")
            assert (await r.json())["target"] == "/dante"
        # curl -> rama SocksProxy -> dante -> origin
        egress = Egress(selector=StaticUpstream(f"socks5://127.0.0.1:{dante}"))
        async with _socks(SocksProxy(egress=egress), obs) as front:
            rc, body = await _curl(
                curl, "--socks5-hostname", f"127.0.0.1:{front}", f"http://localhost:{origin}/via"
            )
            assert rc == 0, body
            assert body["target"] == "/via"
            await obs.wait(1)
            # dante's refusal is the front's answer
            rc, _ = await _curl(
                curl, "--socks5-hostname", f"127.0.0.1:{front}", f"http://127.0.0.1:{closed}/"
            )
            assert rc == 97
            await obs.wait(2)
    assert obs.records[0].upstream == f"socks5://127.0.0.1:{dante}"
    assert obs.records[0].status == 0
    assert obs.records[1].status == 0x05
    assert obs.records[1].error == "connection refused"


@pytest.mark.anyio
async def test_pysocks_udp_associate() -> None:
    import socks  # PySocks: UDP through a SOCKS5 proxy

    obs = _Observer()
    async with await anyio.create_udp_socket(family=socket.AF_INET, local_host="127.0.0.1") as echo:
        echo_port = echo.extra(anyio.abc.SocketAttribute.local_port)

        async def loop() -> None:
            async for data, addr in echo:
                await echo.sendto(b"echo:" + data, addr[0], addr[1])

        async with (
            anyio.create_task_group() as tg,
            _socks(SocksProxy(authenticator=_auth()), obs) as port,
        ):
            tg.start_soon(loop)

            def exchange() -> list[bytes]:
                s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
                s.set_proxy(socks.SOCKS5, "127.0.0.1", port, username="john", password="s3cr:t")
                s.settimeout(3)
                try:
                    got = []
                    for i in range(3):
                        s.sendto(b"ping%d" % i, ("127.0.0.1", echo_port))
                        got.append(s.recvfrom(4096)[0])
                    return got
                finally:
                    s.close()

            assert await anyio.to_thread.run_sync(exchange) == [
                b"echo:ping0",
                b"echo:ping1",
                b"echo:ping2",
            ]
            await obs.wait(1)
            tg.cancel_scope.cancel()
    assert obs.records[0].method == "UDP_ASSOCIATE"
    assert obs.records[0].user == "john"
    assert obs.records[0].bytes_in == 15
