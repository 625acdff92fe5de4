"""Proxies from the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY) and forwarding.

The rules are unit-tested on :class:`EnvProxies`/:class:`NoProxy` (pure code over a
mapping); the client is tested end to end with in-test proxies on loopback: a CONNECT
proxy, a forwarding proxy that relays absolute-form requests to the target, and a custom
:class:`ProxyConnector` for a scheme the client does not speak itself.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteStream, SocketStream
from hypothesis import given
from hypothesis import strategies as st
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
from rama_http.client import (
    EnvProxies,
    HttpClient,
    HttpConnectProxyConnector,
    NoProxy,
    ProxyConfig,
    ProxyError,
    ProxyRequest,
)
from rama_tls import TlsClientConfig

_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "request_method")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


# -- the rules ------------------------------------------------------------------------------


def proxies(**env: str) -> EnvProxies:
    return EnvProxies.from_environ(env)


def test_scheme_specific_and_all_proxy() -> None:
    p = proxies(http_proxy="http://h:1", ALL_PROXY="http://a:2")
    assert p.proxy_for("http", "x.test", 80) == ProxyConfig("http://h:1")
    assert p.proxy_for("https", "x.test", 443) == ProxyConfig("http://a:2")
    p = proxies(HTTPS_PROXY="socks5h://s:1080")
    assert p.proxy_for("https", "x.test", 443) == ProxyConfig("socks5h://s:1080")
    assert p.proxy_for("http", "x.test", 80) is None
    assert not proxies()
    assert not proxies(http_proxy="", HTTP_PROXY="")


def test_lowercase_wins_and_no_scheme_means_http() -> None:
    p = proxies(http_proxy="lower:3128", HTTP_PROXY="http://upper:1")
    assert p.proxy_for("http", "x.test", 80) == ProxyConfig("http://lower:3128")
    p = proxies(https_proxy="", HTTPS_PROXY="http://upper:1")
    assert p.proxy_for("https", "x.test", 443) == ProxyConfig("http://upper:1")


def test_httpoxy_uppercase_http_proxy_ignored_under_cgi() -> None:
    assert proxies(HTTP_PROXY="http://evil:1", REQUEST_METHOD="GET").http is None
    assert proxies(http_proxy="http://ok:1", REQUEST_METHOD="GET").http == ProxyConfig(
        "http://ok:1"
    )


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("example.com", "example.com", 80, True),
        ("example.com", "api.example.com", 80, True),
        ("example.com", "badexample.com", 80, False),
        (".example.com", "example.com", 80, True),
        (".example.com", "a.b.example.com", 443, True),
        ("*.example.com", "a.example.com", 443, True),
        ("EXAMPLE.com", "Example.COM.", 80, True),
        ("*", "anything.test", 1, True),
        ("a.test, *", "b.test", 1, True),
        ("10.1.2.3", "10.1.2.3", 80, True),
        ("10.1.2.3", "10.1.2.4", 80, False),
        ("10.0.0.0/8", "10.200.3.4", 80, True),
        ("10.0.0.0/8", "11.0.0.1", 80, False),
        ("192.168.1.0/24", "192.168.1.77", 443, True),
        ("::1", "::1", 80, True),
        ("[::1]", "::1", 80, True),
        ("fd00::/8", "fd12::5", 80, True),
        ("fd00::/8", "10.0.0.1", 80, False),
        ("10.0.0.0/8", "ten.example", 80, False),
        ("example.com:8080", "example.com", 8080, True),
        ("example.com:8080", "example.com", 80, False),
        ("[::1]:8443", "::1", 8443, True),
        ("[::1]:8443", "::1", 443, False),
        ("10.0.0.1:81", "10.0.0.1", 81, True),
        ("localhost 127.0.0.1", "127.0.0.1", 80, True),
        ("", "example.com", 80, False),
        ("not/a/net", "example.com", 80, False),
    ],
)
def test_no_proxy(no_proxy: str, host: str, port: int, direct: bool) -> None:
    assert NoProxy(no_proxy).matches(host, port) is direct
    p = proxies(all_proxy="http://p:1", no_proxy=no_proxy)
    assert (p.proxy_for("https", host.lower().rstrip("."), port) is None) is direct


def test_no_proxy_star_disables_the_proxies() -> None:
    assert not proxies(http_proxy="http://p:1", NO_PROXY="*")


_labels = st.builds(
    str.__add__,
    st.sampled_from("abcxyz"),
    st.text(alphabet="abcdefghij0123456789-", max_size=7).filter(lambda t: not t.endswith("-")),
)
"""DNS labels starting with a letter (so that a domain never reads as an IP address)."""


@given(
    sub=st.lists(_labels, max_size=3),
    domain=st.lists(_labels, min_size=1, max_size=3),
    port=st.integers(1, 65535),
)
def test_no_proxy_domain_property(sub: list[str], domain: list[str], port: int) -> None:
    """A domain entry matches itself and every subdomain, whatever the port; not a suffix
    that is not at a label boundary."""
    d = ".".join(domain)
    host = ".".join([*sub, d])
    assert NoProxy(d).matches(host, port)
    assert NoProxy("." + d).matches(host, port)
    assert not NoProxy(d).matches("x" + d, port) or d == ("x" + d)
    assert not NoProxy("").matches(host, port)


# -- the client -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_env_proxy_used_per_scheme_and_no_proxy_goes_direct(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log: list[str] = []
    ck = make_cert("localhost")
    async with (
        connect_proxy(log) as proxy_port,
        rama_server(echo) as port,
        rama_server(echo, ssl_context=server_ssl(ck, tmp_path)) as tls_port,
    ):
        monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{proxy_port}")  # no scheme: http://
        monkeypatch.setenv("no_proxy", "example.invalid")
        async with HttpClient(tls=TlsClientConfig(ca_pem=ck.cert_pem())) as c:
            # http:// has no proxy configured: direct
            r = await c.get(f"http://127.0.0.1:{port}/direct")
            assert (await r.json())["target"] == "/direct"
            assert log == []
            r = await c.get(f"https://localhost:{tls_port}/tunnelled")
            assert (await r.json())["target"] == "/tunnelled"
            assert log == [f"CONNECT localhost:{tls_port} HTTP/1.1"]
        monkeypatch.setenv("NO_PROXY", "")
        monkeypatch.setenv("no_proxy", f"localhost:{tls_port}")
        async with HttpClient(tls=TlsClientConfig(ca_pem=ck.cert_pem())) as c:
            r = await c.get(f"https://localhost:{tls_port}/bypass")
            assert (await r.json())["target"] == "/bypass"
        assert len(log) == 1  # NO_PROXY with the port: direct


@pytest.mark.anyio
async def test_explicit_proxy_wins_and_trust_env_false(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    async with connect_proxy(log) as proxy_port, rama_server(echo) as port:
        monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
        async with HttpClient(proxy=f"http://127.0.0.1:{proxy_port}") as c:
            r = await c.get(f"http://127.0.0.1:{port}/explicit")
            assert (await r.json())["target"] == "/explicit"
        assert log == [f"CONNECT 127.0.0.1:{port} HTTP/1.1"]
        async with HttpClient(trust_env=False) as c:
            assert c.env_proxies is None
            r = await c.get(f"http://127.0.0.1:{port}/ignored")
            assert r.status == 200
        async with HttpClient() as c:
            assert c.env_proxies is not None
            with pytest.raises(ProxyError):
                await c.get(f"http://127.0.0.1:{port}/refused")


@pytest.mark.anyio
async def test_other_proxy_schemes_need_a_proxy_connector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[ProxyRequest] = []

    class TaggingConnector:
        """A stand-in for a rama-proxy connector: records the request, then tunnels with
        CONNECT (the in-test proxy speaks it) whatever the scheme says."""

        async def serve(self, ctx: Context, req: ProxyRequest) -> ByteStream:
            seen.append(req)
            return await HttpConnectProxyConnector().serve(ctx, req)

    log: list[str] = []
    async with connect_proxy(log) as proxy_port, rama_server(echo) as port:
        monkeypatch.setenv("ALL_PROXY", f"socks5h://127.0.0.1:{proxy_port}")
        async with HttpClient() as c:
            with pytest.raises(ProxyError, match="ProxyConnector"):
                await c.get(f"http://127.0.0.1:{port}/")
        async with HttpClient(proxy_connector=TaggingConnector()) as c:
            r = await c.get(f"http://127.0.0.1:{port}/socks")
            assert (await r.json())["target"] == "/socks"
    assert [r.proxy.url for r in seen] == [f"socks5h://127.0.0.1:{proxy_port}"]
    assert str(seen[0].target) == f"127.0.0.1:{port}"


def _content_length(head: bytes) -> int:
    for field in head.split(b"\r\n")[1:]:
        name, _, value = field.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def forwarding_proxy(heads: list[bytes]) -> RawServer:
    """A forwarding proxy: reads absolute-form requests (with Content-Length bodies or none),
    relays each to the target in origin-form, relays the answer (Content-Length framed)."""

    async def handler(stream: SocketStream, n: int) -> None:
        rest = b""
        while True:
            head, rest = await read_head(stream, rest)
            if not head:
                return
            heads.append(head)
            line, _, fields = head.partition(b"\r\n")
            method, target, version = line.split(b" ")
            if not target.startswith(b"http://"):
                await stream.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                return
            authority, _, path = target[7:].partition(b"/")
            host, _, port = authority.rpartition(b":")
            want = _content_length(head)
            while len(rest) < want:
                rest += await stream.receive()
            body, rest = rest[:want], rest[want:]
            upstream = await anyio.connect_tcp(host.decode(), int(port))
            async with upstream:
                await upstream.send(b"%s /%s %s\r\n%s" % (method, path, version, fields) + body)
                resp, body = await read_head(upstream)
                length = _content_length(resp)
                while len(body) < length:
                    body += await upstream.receive()
                await stream.send(resp + body)

    return RawServer(handler)


@pytest.mark.anyio
async def test_forward_mode_sends_absolute_form_pooled_per_proxy(tmp_path: Path) -> None:
    heads: list[bytes] = []
    proxy = forwarding_proxy(heads)
    log: list[str] = []
    ck = make_cert("localhost")
    async with (
        proxy.run(),
        rama_server(echo) as a,
        rama_server(echo) as b,
        connect_proxy(log) as connect_port,
        rama_server(echo, ssl_context=server_ssl(ck, tmp_path)) as tls_port,
    ):
        url = f"http://us%40er:p%3Aw@127.0.0.1:{proxy.port}"
        async with HttpClient(proxy=url, proxy_mode="forward", timeout=5) as c:
            r = await c.get(f"http://127.0.0.1:{a}/one?q=1", headers=[("X-Custom", "v")])
            got = await r.json()
            assert got["target"] == "/one?q=1"
            assert ["Host", f"127.0.0.1:{a}"] in got["headers"]
            r = await c.get(f"http://127.0.0.1:{b}/two")
            assert (await r.json())["target"] == "/two"
            assert proxy.connections == 1  # both targets on one connection to the proxy
            stats = c.pool_stats()
            assert list(stats.per_host) == [f"http://127.0.0.1:{proxy.port}"]
        first = heads[0].decode()
        assert first.startswith(f"GET http://127.0.0.1:{a}/one?q=1 HTTP/1.1\r\n")
        assert f"\r\nHost: 127.0.0.1:{a}\r\n" in first
        assert first.index("X-Custom") < first.index("Proxy-Authorization")
        # percent-decoded user info: "us@er:p:w"
        assert "Proxy-Authorization: Basic dXNAZXI6cDp3\r\n" in first
        assert heads[1].decode().startswith(f"GET http://127.0.0.1:{b}/two HTTP/1.1\r\n")
        # https targets still tunnel, even in forward mode
        async with HttpClient(
            proxy=f"http://127.0.0.1:{connect_port}",
            proxy_mode="forward",
            tls=TlsClientConfig(ca_pem=ck.cert_pem()),
        ) as c:
            r = await c.get(f"https://localhost:{tls_port}/secure")
            assert (await r.json())["target"] == "/secure"
        assert log == [f"CONNECT localhost:{tls_port} HTTP/1.1"]


@pytest.mark.anyio
async def test_forward_mode_through_env_proxy_and_caller_proxy_auth(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    heads: list[bytes] = []
    proxy = forwarding_proxy(heads)
    async with proxy.run(), rama_server(echo) as port:
        monkeypatch.setenv("http_proxy", f"http://u:p@127.0.0.1:{proxy.port}")
        async with HttpClient(proxy_mode="forward", timeout=5) as c:
            r = await c.post(
                f"http://127.0.0.1:{port}/p",
                content=b"body",
                headers=[("Proxy-Authorization", "Bearer mine")],
            )
            got = await r.json()
            assert (got["method"], got["body"]) == ("POST", "body")
        head = heads[0].decode()
        assert head.startswith(f"POST http://127.0.0.1:{port}/p HTTP/1.1\r\n")
        assert head.count("Proxy-Authorization") == 1
        assert "Proxy-Authorization: Bearer mine\r\n" in head


def test_proxy_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="proxy_mode"):
        HttpClient(proxy_mode="sideways")  # type: ignore[arg-type]
