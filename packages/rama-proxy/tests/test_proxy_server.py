"""The assembled ProxyServer: one port for HTTP, HTTPS-proxy and SOCKS5, tried with curl."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from rama_core import Context, Shutdown, service_fn
from rama_http import Request, Response
from rama_http.server import serve
from rama_net import SocketInfo, TcpListener
from rama_proxy import ProxyObservers, ProxyRecord, ProxyServer, ProxyServerConfig
from rama_tls import CertificateAuthority

asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


class Origin:
    """A local HTTP origin answering ``origin <method> <path> from <client port>``."""

    def __init__(self) -> None:
        self.port = 0
        self.clients: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def origin() -> AsyncIterator[Origin]:
    o = Origin()

    @service_fn
    async def hello(ctx: Context, req: Request) -> Response:
        info = ctx.get(SocketInfo)
        o.clients.append(str(info.peer_addr) if info else "?")
        return Response(200, body=f"origin {req.method} {req.uri.path}".encode())

    listener = TcpListener.bind("127.0.0.1:0")
    o.port = listener.local_addr.port
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(listener, hello))
        yield o
        tg.cancel_scope.cancel()


class Records:
    def __init__(self) -> None:
        self.finished: list[ProxyRecord] = []

    async def wait(self, n: int) -> list[ProxyRecord]:
        with anyio.fail_after(5):
            while len(self.finished) < n:
                await anyio.sleep(0.01)
        return self.finished


class _Obs:
    def __init__(self, records: Records) -> None:
        self.records = records

    def started(self, record: ProxyRecord) -> None:
        pass

    def finished(self, record: ProxyRecord) -> None:
        self.records.finished.append(record)


@asynccontextmanager
async def running(
    config: ProxyServerConfig, records: Records | None = None, ctx: Context | None = None
) -> AsyncIterator[ProxyServer]:
    server = ProxyServer(config, observers=[_Obs(records)] if records is not None else ())
    server.bind()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: server.serve(ctx=ctx))
        yield server
        tg.cancel_scope.cancel()


def _config(**kwargs: Any) -> ProxyServerConfig:
    kwargs.setdefault("bind", "127.0.0.1:0")
    kwargs.setdefault("peek_timeout", 2.0)
    return ProxyServerConfig(**kwargs)


async def curl(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``curl -sS`` with a bound on the whole transfer."""
    assert shutil.which("curl"), "curl is a required peer"
    result = await anyio.run_process(
        ["curl", "-sS", "--max-time", "10", "--noproxy", "", *args], check=False
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def _proxy(server: ProxyServer, scheme: str = "http", userinfo: str = "") -> str:
    return f"{scheme}://{userinfo}127.0.0.1:{server.local_addr.port}"


MODES: list[tuple[str, Callable[[ProxyServer], list[str]]]] = [
    ("forward", lambda s: ["-x", _proxy(s)]),
    ("connect", lambda s: ["-p", "-x", _proxy(s)]),
    ("socks5", lambda s: ["--socks5", f"127.0.0.1:{s.local_addr.port}"]),
    ("socks5h", lambda s: ["--socks5-hostname", f"127.0.0.1:{s.local_addr.port}"]),
    ("socks5h-url", lambda s: ["-x", _proxy(s, "socks5h")]),
    ("socks4", lambda s: ["--socks4", f"127.0.0.1:{s.local_addr.port}"]),
    ("https-proxy", lambda s: ["--proxy-insecure", "-x", _proxy(s, "https")]),
    ("https-proxy-connect", lambda s: ["--proxy-insecure", "-p", "-x", _proxy(s, "https")]),
]


@asyncio_only
@pytest.mark.anyio
async def test_every_curl_mode_on_one_port(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    records = Records()
    async with (
        origin() as o,
        running(_config(tls_self_signed=True, access_log=str(log)), records) as server,
    ):
        for name, args in MODES:
            code, out, err = await curl(*args(server), f"{o.url}/{name}")
            assert code == 0, (name, err)
            assert out == f"origin GET /{name}", name
        await records.wait(len(MODES))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == len(MODES)
    protocols = [line["protocol"] for line in lines]
    assert protocols == [
        "http",
        "connect",
        "socks5",
        "socks5",
        "socks5",
        "socks4",
        "http",
        "connect",
    ]
    for line in lines:
        assert line["client"].startswith("127.0.0.1:")
        assert line["status"] in (200, 0, 90)  # HTTP 200, SOCKS5 succeeded, SOCKS4 granted
        assert line["duration"] >= 0
    assert lines[0]["method"] == "GET"
    assert lines[0]["target"] == f"{o.url}/forward"
    assert lines[1]["target"] == f"127.0.0.1:{o.port}"
    assert lines[1]["bytes_in"] > 0
    assert lines[1]["bytes_out"] > 0
    # CONNECT and SOCKS reach their target through the Egress, which notes the connect time
    assert all(line["connect_time"] is not None for line in lines if line["protocol"] != "http")


@asyncio_only
@pytest.mark.anyio
async def test_proxy_http2_to_the_proxy() -> None:
    async with origin() as o, running(_config(tls_self_signed=True)) as server:
        code, out, err = await curl(
            "--proxy-insecure", "--proxy-http2", "-x", _proxy(server, "https"), f"{o.url}/h2"
        )
    if code == 2 and "proxy-http2" in err:
        pytest.skip("this curl has no --proxy-http2")
    assert code == 0, err
    assert out == "origin GET /h2"


@asyncio_only
@pytest.mark.anyio
async def test_auth_on_http_and_socks(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    cfg = _config(auth=[("john", "secret")], access_log=str(log))
    async with origin() as o, running(cfg) as server:
        code, out, _ = await curl("-x", _proxy(server), "--proxy-user", "john:secret", o.url)
        assert (code, out) == (0, "origin GET /")
        code, out, _ = await curl(
            "-x", _proxy(server), "-o", "/dev/null", "-w", "%{http_code}", o.url
        )
        assert out == "407"
        code, out, _ = await curl("-x", _proxy(server, "socks5h", "john:secret@"), o.url)
        assert (code, out) == (0, "origin GET /")
        code, _, _ = await curl("-x", _proxy(server, "socks5h", "john:wrong@"), o.url)
        assert code != 0
        code, out, _ = await curl("-p", "-x", _proxy(server, "http", "john:secret@"), o.url)
        assert (code, out) == (0, "origin GET /")
    users = [json.loads(line).get("user") for line in log.read_text().splitlines()]
    assert "john" in users


@asyncio_only
@pytest.mark.anyio
@pytest.mark.parametrize("scheme", ["http", "socks5h", "socks5"])
async def test_through_an_upstream_rama_proxy(tmp_path: Path, scheme: str) -> None:
    log = tmp_path / "edge.log"
    async with origin() as o, running(_config()) as upstream:
        cfg = _config(upstream=_proxy(upstream, scheme), access_log=str(log))
        async with running(cfg) as edge:
            for args in (
                ["-x", _proxy(edge)],
                ["--socks5-hostname", f"127.0.0.1:{edge.local_addr.port}"],
            ):
                code, out, err = await curl(*args, f"{o.url}/chained")
                assert (code, out) == (0, "origin GET /chained"), err
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert {line["upstream"] for line in lines} == {_proxy(upstream, scheme)}


@asyncio_only
@pytest.mark.anyio
async def test_labels_choose_the_upstream_from_a_csv_db(tmp_path: Path) -> None:
    async with origin() as o, running(_config(access_log=str(tmp_path / "a.log"))) as a:
        async with running(_config(access_log=str(tmp_path / "b.log"))) as b:
            db = tmp_path / "proxies.csv"
            db.write_text(
                "id,tcp,udp,http,https,socks5,socks5h,datacenter,residential,mobile,address,"
                "pool_id,continent,country,state,city,carrier,asn\n"
                f"a,true,,true,,,,true,,,127.0.0.1:{a.local_addr.port},p1,europe,be,,,,\n"
                f"b,true,,true,,,,,true,,127.0.0.1:{b.local_addr.port},p2,america,us,,,,\n"
            )
            cfg = _config(auth=[("john", "pw")], proxy_db=str(db))
            async with running(cfg) as edge:
                for user, want in (("john-country-us", "b"), ("john-country-be", "a")):
                    code, out, err = await curl(
                        "-x", _proxy(edge, "http", f"{user}:pw@"), f"{o.url}/{user}"
                    )
                    assert (code, out) == (0, f"origin GET /{user}"), err
                    used = (tmp_path / f"{want}.log").read_text()
                    assert f"/{user}" in used
                code, out, _ = await curl(
                    "-x",
                    _proxy(edge, "http", "john-country-fr:pw@"),
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    o.url,
                )
                assert out != "200"


@asyncio_only
@pytest.mark.anyio
async def test_proxy_protocol_accept_gives_the_real_client(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    async with (
        origin() as o,
        running(_config(proxy_protocol="accept", access_log=str(log))) as server,
    ):
        stream = await anyio.connect_tcp("127.0.0.1", server.local_addr.port)
        async with stream:
            await stream.send(
                b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 8080\r\n"
                + f"GET {o.url}/pp HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
                + b"Connection: close\r\n\r\n"
            )
            data = b""
            with anyio.fail_after(5):
                async for chunk in stream:
                    data += chunk
        assert data.endswith(b"origin GET /pp")
    (line,) = [json.loads(x) for x in log.read_text().splitlines()]
    assert line["client"] == "203.0.113.7:40000"


@asyncio_only
@pytest.mark.anyio
async def test_proxy_protocol_send_v2_reaches_the_upstream() -> None:
    seen: list[bytes] = []

    @service_fn
    async def sink(ctx: Context, stream: Any) -> None:
        seen.append(await stream.receive())

    async with TcpListener.bind("127.0.0.1:0") as target:
        async with anyio.create_task_group() as tg:
            tg.start_soon(target.serve, sink)
            async with running(_config(proxy_protocol="send-v2")) as server:
                await curl(
                    "-p", "-x", _proxy(server), "--max-time", "2", f"http://{target.local_addr}/"
                )
            tg.cancel_scope.cancel()
    assert seen
    assert seen[0].startswith(b"\r\n\r\n\x00\r\nQUIT\n")


@pytest.mark.anyio
async def test_graceful_shutdown_lets_a_tunnel_finish() -> None:
    """A shutdown stops accepting at once; a tunnel in flight keeps working within the grace."""
    async with origin() as o:
        async with Shutdown(grace=5, signals=()) as shutdown:
            async with running(_config(), ctx=shutdown.context()) as server:
                port = server.local_addr.port
                stream = await anyio.connect_tcp("127.0.0.1", port)
                await stream.send(
                    f"CONNECT 127.0.0.1:{o.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                )
                with anyio.fail_after(5):
                    head = await stream.receive()
                assert head.startswith(b"HTTP/1.1 200")
                shutdown.trigger()
                await anyio.sleep(0.2)
                with pytest.raises(OSError, match=r"refused|Connect call failed|All connection"):
                    await anyio.connect_tcp("127.0.0.1", port)
                await stream.send(b"GET /late HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                with anyio.fail_after(5):
                    async for chunk in stream:
                        data += chunk
                assert data.endswith(b"origin GET /late")
                await stream.aclose()


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="not both"):
        ProxyServerConfig(upstream="http://a:1", proxy_db="x.csv")
    with pytest.raises(ValueError, match="key"):
        ProxyServerConfig(tls_cert="c.pem")
    with pytest.raises(ValueError, match="workers"):
        ProxyServerConfig(workers=0)
    with pytest.raises(ValueError, match="port"):
        ProxyServerConfig(allow_connect_ports=[0])
    with pytest.raises(ValueError, match="proxy_protocol"):
        ProxyServerConfig(proxy_protocol="send-v3")  # type: ignore[arg-type]


def test_observers_are_in_the_root_context() -> None:
    server = ProxyServer(_config(access_log="-"))
    assert isinstance(server.observers, ProxyObservers)
    assert server.access_log is not None
    assert server.socks_proxy is not None
    assert server.certificate is None


def test_an_upstream_scheme_without_a_connector_is_refused() -> None:
    with pytest.raises(ValueError, match="no connector for gopher://"):
        ProxyServer(_config(upstream="gopher://127.0.0.1:70"))


@asyncio_only
@pytest.mark.anyio
async def test_through_an_https_upstream_with_a_private_ca(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("test upstream CA")
    leaf = ca.issue("localhost", "127.0.0.1")
    leaf.save(tmp_path / "up.pem", tmp_path / "up.key")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem())
    up_cfg = _config(tls_cert=str(tmp_path / "up.pem"), tls_key=str(tmp_path / "up.key"))
    async with origin() as o, running(up_cfg) as upstream:
        https_up = _proxy(upstream, "https")
        # untrusted by default: the egress fails with a TLS error (502)
        async with running(_config(upstream=https_up)) as edge:
            code, out, _ = await curl(
                "-x", _proxy(edge), "-o", "/dev/null", "-w", "%{http_code}", f"{o.url}/x"
            )
            assert out == "502"
        async with running(
            _config(upstream=https_up, upstream_ca=str(tmp_path / "ca.pem"))
        ) as edge:
            for args in (["-x", _proxy(edge)], ["-p", "-x", _proxy(edge)]):
                code, out, err = await curl(*args, f"{o.url}/via-https")
                assert (code, out) == (0, "origin GET /via-https"), err
