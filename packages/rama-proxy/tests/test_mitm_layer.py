"""The MITM's decisions without sockets: playbooks for InterceptionLayer, properties of the
pure helpers (sniff, ALPN choice, leaf names), the policies, and the body codings."""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
from collections.abc import AsyncIterator

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from rama_core import Context, Service, service_fn
from rama_http import Body, Headers, Request, Response
from rama_net import Authority
from rama_proxy.mitm import (
    HTTP_ALPN,
    HookLayer,
    HostPolicy,
    HttpFlow,
    Intercept,
    MitmConnection,
    MitmHooks,
    PassThrough,
    RejectConnection,
    Sniffed,
    client_alpn,
    leaf_hosts,
    sniff,
    upstream_alpn,
)
from rama_proxy.mitm._coding import (
    DecodedTooLarge,
    content_codings,
    decode_body,
    encode_body,
)
from rama_proxy.mitm._layer import (
    AcceptClient,
    AskPolicy,
    ClientAccepted,
    ClientFailed,
    Close,
    ConnectUpstream,
    Event,
    FirstBytes,
    HelloFailed,
    HelloParsed,
    InterceptionLayer,
    LayerError,
    PolicyDecided,
    ReadClientHello,
    ReadMore,
    ServeFailure,
    ServeHttp,
    ServePlainHttp,
    Tunnel,
    UpstreamFailed,
    UpstreamReady,
)
from rama_proxy.mitm._policy import MitmRequest
from rama_proxy.mitm._relay import FlowService
from rama_tls import CertificateAuthority, ClientHello, ClientHelloComplete
from rama_tls import parse_client_hello_records as parse_records


def hello_bytes(server_name: str | None, alpn: list[str] | None) -> bytes:
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = server_name is not None
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def parse(data: bytes) -> ClientHello:
    result = parse_records(data)
    assert isinstance(result, ClientHelloComplete)
    return result.client_hello


def play(layer: InterceptionLayer, steps: list[tuple[Event | None, object]]) -> None:
    """Feed each event (None: start) and check the command that comes back."""
    for event, expected in steps:
        got = layer.start() if event is None else layer.handle(event)
        assert got == expected, (event, got)


H2_HELLO = hello_bytes("example.com", ["h2", "http/1.1"])


def test_playbook_h2_end_to_end() -> None:
    hello = parse(H2_HELLO)
    play(
        InterceptionLayer("example.com"),
        [
            (None, ReadMore()),
            (FirstBytes(H2_HELLO[:1]), ReadMore()),
            (FirstBytes(H2_HELLO), ReadClientHello()),
            (HelloParsed(hello), AskPolicy(hello)),
            (PolicyDecided(Intercept()), ConnectUpstream("example.com", ("h2", "http/1.1"))),
            (UpstreamReady("h2"), AcceptClient(("example.com",), ("h2",))),
            (ClientAccepted("h2"), ServeHttp("h2")),
        ],
    )


def test_playbook_upstream_picks_h1_so_the_client_gets_h1() -> None:
    hello = parse(hello_bytes("example.com", ["h2", "http/1.1", "spdy/3.1"]))
    play(
        InterceptionLayer("example.com"),
        [
            (None, ReadMore()),
            (FirstBytes(H2_HELLO), ReadClientHello()),
            (HelloParsed(hello), AskPolicy(hello)),
            (PolicyDecided(Intercept()), ConnectUpstream("example.com", ("h2", "http/1.1"))),
            (UpstreamReady("http/1.1"), AcceptClient(("example.com",), ("http/1.1",))),
            (ClientAccepted("http/1.1"), ServeHttp("http/1.1")),
        ],
    )


def test_playbook_no_alpn_stays_without_alpn() -> None:
    hello = parse(hello_bytes("example.com", None))
    layer = InterceptionLayer("example.com")
    play(
        layer,
        [
            (None, ReadMore()),
            (FirstBytes(H2_HELLO), ReadClientHello()),
            (HelloParsed(hello), AskPolicy(hello)),
            (PolicyDecided(Intercept()), ConnectUpstream("example.com", ())),
            (UpstreamReady(None), AcceptClient(("example.com",), ())),
            (ClientAccepted(None), ServeHttp(None)),
        ],
    )


def test_playbook_upstream_failure_becomes_a_page() -> None:
    hello = parse(H2_HELLO)
    play(
        InterceptionLayer("example.com"),
        [
            (None, ReadMore()),
            (FirstBytes(H2_HELLO), ReadClientHello()),
            (HelloParsed(hello), AskPolicy(hello)),
            (PolicyDecided(Intercept()), ConnectUpstream("example.com", ("h2", "http/1.1"))),
            (UpstreamFailed("untrusted"), AcceptClient(("example.com",), ("http/1.1",))),
            (ClientAccepted("http/1.1"), ServeFailure("untrusted")),
        ],
    )


def test_playbook_ip_target_without_sni_uses_the_upstream_names() -> None:
    ca = CertificateAuthority.create()
    upstream_cert = ca.issue("real.example", "www.real.example", "10.1.2.3").cert
    hello = parse(hello_bytes(None, ["http/1.1"]))
    assert hello.server_name is None
    play(
        InterceptionLayer("[::1]"),
        [
            (None, ReadMore()),
            (FirstBytes(H2_HELLO), ReadClientHello()),
            (HelloParsed(hello), AskPolicy(hello)),
            (PolicyDecided(Intercept()), ConnectUpstream("::1", ("http/1.1",))),
            (
                UpstreamReady("http/1.1", upstream_cert),
                AcceptClient(
                    ("::1", "real.example", "www.real.example", "10.1.2.3"), ("http/1.1",)
                ),
            ),
        ],
    )


@pytest.mark.parametrize(
    ("first", "decision", "expected"),
    [
        (b"GET / HTTP/1.1\r\n", Intercept(), ServePlainHttp()),
        (b"GET / HTTP/1.1\r\n", PassThrough(), Tunnel("pass_through")),
        (b"PRI * HTTP/2.0\r\n", PassThrough(), Tunnel("pass_through")),
        (b"\x00\x01binary", Intercept(), Tunnel("raw")),
        (b"SSH-2.0-OpenSSH", Intercept(), Tunnel("raw")),
        (b"GET / HTTP/1.1\r\n", RejectConnection("no"), Close("reject", "no")),
    ],
)
def test_playbook_not_tls(first: bytes, decision: object, expected: object) -> None:
    layer = InterceptionLayer("example.com")
    play(layer, [(None, ReadMore()), (FirstBytes(first), AskPolicy(None))])
    assert layer.handle(PolicyDecided(decision)) == expected  # type: ignore[arg-type]


def test_playbook_failures() -> None:
    play(
        InterceptionLayer("h"),
        [(None, ReadMore()), (FirstBytes(b"", final=True), Close("error", "no data"))],
    )
    # a prefix that never completes is forwarded raw
    play(
        InterceptionLayer("h"),
        [(None, ReadMore()), (FirstBytes(b"GE", final=True), AskPolicy(None))],
    )
    play(
        InterceptionLayer("h"),
        [
            (None, ReadMore()),
            (FirstBytes(b"\x16\x03"), ReadClientHello()),
            (HelloFailed("bad ClientHello"), Close("error", "bad ClientHello")),
        ],
    )
    hello = parse(H2_HELLO)
    play(
        InterceptionLayer("h"),
        [
            (None, ReadMore()),
            (FirstBytes(H2_HELLO), ReadClientHello()),
            (HelloParsed(hello), AskPolicy(hello)),
            (PolicyDecided(Intercept()), ConnectUpstream("example.com", ("h2", "http/1.1"))),
            (UpstreamReady("h2"), AcceptClient(("example.com",), ("h2",))),
            (ClientFailed("pinned"), Close("intercept", "pinned")),
        ],
    )


def test_events_out_of_order_are_driver_bugs() -> None:
    layer = InterceptionLayer("h")
    with pytest.raises(LayerError):
        layer.handle(UpstreamReady("h2"))
    layer.start()
    with pytest.raises(LayerError):
        layer.start()
    with pytest.raises(LayerError):
        layer.handle(ClientAccepted("h2"))


@given(st.binary(max_size=64), st.binary(max_size=32))
def test_sniff_is_stable_once_decided(data: bytes, more: bytes) -> None:
    decided = sniff(data)
    if decided is not None:
        assert sniff(data + more) is decided


@given(st.binary(min_size=1, max_size=64))
def test_sniff_decides_within_sixteen_bytes(data: bytes) -> None:
    padded = (data * 16)[:16]
    assert sniff(padded) is not None


def test_sniff_examples() -> None:
    assert sniff(H2_HELLO) is Sniffed.TLS
    assert sniff(b"\x16") is None
    assert sniff(b"\x16\x01") is Sniffed.OTHER
    assert sniff(b"POS") is None
    assert sniff(b"POST /") is Sniffed.HTTP
    assert sniff(b"PR") is None
    assert sniff(b"PRI *") is Sniffed.HTTP
    assert sniff(b"get / HTTP/1.1") is Sniffed.OTHER


_protocols = st.lists(st.sampled_from(["h2", "http/1.1", "h3", "spdy/3.1", "http/1.0", "x"]))


@given(_protocols, st.one_of(st.none(), st.sampled_from(["h2", "http/1.1", "h3"])))
def test_alpn_choices(offer: list[str], selected: str | None) -> None:
    up = upstream_alpn(offer)
    assert set(up) <= set(HTTP_ALPN)
    assert list(up) == [p for p in dict.fromkeys(offer) if p in HTTP_ALPN]
    to_client = client_alpn(selected, offer)
    assert set(to_client) <= set(offer)
    assert len(to_client) <= 1
    if selected in offer and selected is not None:
        assert to_client == (selected,)


@given(
    st.one_of(st.none(), st.from_regex(r"[a-z]{1,10}\.example", fullmatch=True)),
    st.one_of(
        st.from_regex(r"[a-z]{1,10}\.test", fullmatch=True),
        st.ip_addresses().map(str),
    ),
)
def test_leaf_hosts(sni: str | None, target: str) -> None:
    hosts = leaf_hosts(sni, target)
    assert hosts
    assert len(set(hosts)) == len(hosts)
    if sni:
        assert hosts[0] == sni
    try:
        ip = ipaddress.ip_address(target)
    except ValueError:
        ip = None
    if ip is not None:
        assert str(ip) in hosts


def _req(host: str) -> MitmRequest:
    return MitmRequest(Authority.parse(f"{host}:443"), None, None, None)


@pytest.mark.anyio
async def test_host_policy() -> None:
    policy = HostPolicy(
        intercept=["*.shop.example", "10.0.0.0/8"],
        pass_through=["pay.shop.example"],
        reject=["evil.example"],
    )
    ctx = Context()
    assert await policy.decide(ctx, _req("www.shop.example")) == Intercept()
    assert await policy.decide(ctx, _req("WWW.Shop.Example")) == Intercept()
    assert await policy.decide(ctx, _req("pay.shop.example")) == PassThrough()
    assert await policy.decide(ctx, _req("10.2.3.4")) == Intercept()
    assert await policy.decide(ctx, _req("other.example")) == PassThrough()
    assert isinstance(await policy.decide(ctx, _req("evil.example")), RejectConnection)
    assert await HostPolicy().decide(ctx, _req("any.example")) == Intercept()


@settings(max_examples=40)
@given(st.binary(max_size=2048), st.sampled_from(["gzip", "deflate", "br", "zstd"]))
def test_codings_round_trip(data: bytes, coding: str) -> None:
    assert decode_body(encode_body(data, [coding]), [coding], 1 << 20) == data


def test_decoding_is_bounded() -> None:
    bomb = gzip.compress(b"\0" * 10_000_000)
    with pytest.raises(DecodedTooLarge):
        decode_body(bomb, ["gzip"], 100_000)
    assert content_codings(Headers([("Content-Encoding", "gzip, br")])) == ["gzip", "br"]
    assert content_codings(Headers([("Content-Encoding", "compress")])) is None
    assert content_codings(Headers()) == []


def test_leaf_hosts_from_upstream_certificate_without_san() -> None:
    ca = CertificateAuthority.create()
    cert = ca.issue("only.example").cert
    assert leaf_hosts(None, "1.2.3.4", cert) == ("1.2.3.4", "only.example")
    assert cert.not_valid_after_utc > dt.datetime.now(dt.UTC)
    assert isinstance(cert, x509.Certificate)


class _Order(MitmHooks):
    def __init__(self, name: str, log: list[str], answer: bool = False) -> None:
        self.name, self.log, self.answer = name, log, answer

    async def request(self, flow: HttpFlow) -> Response | None:
        self.log.append(f"{self.name}.request")
        flow.request.headers.add("x-order", self.name)
        return Response(204) if self.answer else None

    async def response(self, flow: HttpFlow) -> None:
        self.log.append(f"{self.name}.response")
        assert flow.response is not None
        flow.response.headers.add("x-order", self.name)


def _stack(hooks: list[MitmHooks], inner: Service[Request, Response]) -> Service[Request, Response]:
    service: Service[Request, Response] = inner
    for h in reversed(hooks):
        service = HookLayer(h, max_body_size=1024).layer(service)
    conn = MitmConnection(Authority.parse("example.com:443"))
    return FlowService(service, conn, scheme="https", authority="example.com")


@pytest.mark.anyio
async def test_hooks_run_as_an_onion() -> None:
    """Request hooks in order, response hooks in reverse; a local answer skips the rest."""
    log: list[str] = []
    seen: list[list[str]] = []

    async def upstream(ctx: Context, req: Request) -> Response:
        log.append("upstream")
        seen.append(req.headers.get_all("x-order"))
        return Response(200, body=b"ok")

    stack = _stack([_Order("a", log), _Order("b", log)], service_fn(upstream))
    resp = await stack.serve(Context(), Request("GET", "/"))
    assert log == ["a.request", "b.request", "upstream", "b.response", "a.response"]
    assert seen == [["a", "b"]]
    assert resp.headers.get_all("x-order") == ["b", "a"]
    log.clear()
    stack = _stack([_Order("a", log, answer=True), _Order("b", log)], service_fn(upstream))
    resp = await stack.serve(Context(), Request("GET", "/"))
    assert resp.status == 204
    assert log == ["a.request"]


class _Upper(MitmHooks):
    def wants_request_body(self, flow: HttpFlow) -> bool:
        return True

    async def request_body(self, flow: HttpFlow, body: bytes) -> bytes:
        return body.upper()

    def wants_response_body(self, flow: HttpFlow) -> bool:
        return True

    async def response_body(self, flow: HttpFlow, body: bytes) -> bytes:
        return body + b"!"


@pytest.mark.anyio
async def test_body_hooks_without_sockets() -> None:
    async def upstream(ctx: Context, req: Request) -> Response:
        body = await req.body.read()
        return Response(
            200, headers=[("Content-Encoding", "gzip")], body=gzip.compress(body + b" back")
        )

    stack = _stack([_Upper()], service_fn(upstream))
    req = Request("POST", "/", headers=[("Content-Length", "5")], body=b"hello")
    resp = await stack.serve(Context(), req)
    assert gzip.decompress(await resp.body.read()) == b"HELLO back!"
    assert resp.headers.get("content-length") is not None
    # past the limit (1024): 413 without calling upstream
    req = Request("POST", "/", body=Body.from_iter(_chunks(2000)))
    resp = await stack.serve(Context(), req)
    assert resp.status == 413


async def _chunks(n: int) -> AsyncIterator[bytes]:
    for _ in range(n // 100):
        yield b"x" * 100


def test_playbook_translate_lets_each_side_choose() -> None:
    hello = parse(hello_bytes("example.com", ["http/1.1"]))
    play(
        InterceptionLayer("example.com", translate=True),
        [
            (None, ReadMore()),
            (FirstBytes(H2_HELLO), ReadClientHello()),
            (HelloParsed(hello), AskPolicy(hello)),
            (PolicyDecided(Intercept()), ConnectUpstream("example.com", ("h2", "http/1.1"))),
            (UpstreamReady("h2"), AcceptClient(("example.com",), ("http/1.1",))),
            (ClientAccepted("http/1.1"), ServeHttp("http/1.1")),
        ],
    )
