"""JA4H against FoxIO's published vectors, the ja4plus package, and real clients."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ja4plus.fingerprinters.ja4h import JA4HFingerprinter
from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

from rama_core import Context, service_fn
from rama_http import Request, Response, Version
from rama_http.fingerprint import Ja4hFingerprint, ja4h
from rama_http.server import Http1Server, ServerConfig
from rama_net import TcpListener

FOXIO_COOKIE_REQUEST = [
    ("Host", "localhost:8000"),
    ("User-Agent", "curl/8.1.2"),
    ("Accept", "*/*"),
    ("Referer", "https://fake.example"),
    ("Cookie", "yummy_cookie=choco; tasty_cookie=strawberry"),
    ("Accept-Language", "da, en-GB;q=0.8, en;q=0.7"),
]


def test_foxio_cookie_vector_all_four_parts_and_raw_forms() -> None:
    # python/test/testdata/http1-with-cookies.pcapng.json in FoxIO-LLC/ja4
    fp = Ja4hFingerprint.from_parts("GET", "HTTP/1.1", FOXIO_COOKIE_REQUEST)
    assert fp.text == "ge11cr04da00_8ddaef5d77af_280f366eaa04_c2fb0fe53442"
    assert (fp.a, fp.b, fp.c, fp.d) == (
        "ge11cr04da00",
        "8ddaef5d77af",
        "280f366eaa04",
        "c2fb0fe53442",
    )
    assert fp.raw == (
        "ge11cr04da00_Host,User-Agent,Accept,Accept-Language_"
        "tasty_cookie,yummy_cookie_tasty_cookie=strawberry,yummy_cookie=choco"
    )
    assert fp.raw_original == (
        "ge11cr04da00_Host,User-Agent,Accept,Accept-Language_"
        "yummy_cookie,tasty_cookie_yummy_cookie=choco,tasty_cookie=strawberry"
    )


def test_foxio_empty_user_agent_vector() -> None:
    # python/test/testdata/http-empty-useragent.pcap.json
    fp = Ja4hFingerprint.from_parts("GET", Version.HTTP_10, [("User-Agent", "")])
    assert fp.text == "ge10nn010000_b8bcd45ac095_000000000000_000000000000"
    assert fp.raw == "ge10nn010000_User-Agent_"


def test_foxio_post_raw_vector_and_versions() -> None:
    headers = [
        ("Host", "h"),
        ("Accept", "*/*"),
        ("User-Agent", "x"),
        ("Content-Type", "text/plain"),
        ("Content-Length", "3"),
    ]
    fp = Ja4hFingerprint.from_parts("POST", "HTTP/1.1", headers)
    assert fp.raw == "po11nn050000_Host,Accept,User-Agent,Content-Type,Content-Length_"
    h2 = Ja4hFingerprint.from_parts("GET", Version.HTTP_2, [(":method", "GET"), ("a", "b")])
    assert h2.a == "ge20nn010000"
    assert Ja4hFingerprint.from_parts("GET", Version.HTTP_3, []).a == "ge30nn000000"


def test_header_count_caps_at_99_and_language_is_padded() -> None:
    many = [(f"X-{i}", "v") for i in range(120)] + [("Accept-Language", "en;q=0.5")]
    fp = Ja4hFingerprint.from_parts("DELETE", "HTTP/1.1", many)
    assert fp.a == "de11nn99en00"
    assert len(fp.header_names) == 121


def _ja4plus(raw: bytes) -> tuple[str, str, str]:
    """JA4H, JA4H_r and JA4H_ro of a raw request, computed by the ja4plus package."""
    pkt = IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=80, flags="PA") / Raw(raw)
    fingerprinter = JA4HFingerprinter()
    text = fingerprinter.process_packet(pkt)
    assert text is not None
    return text, fingerprinter.last_raw, fingerprinter.last_raw_original_order


_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_token = st.text(alphabet=_ALNUM + "-_", min_size=1, max_size=12)
_value = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ./*=,", max_size=20).map(str.strip)
_cookie = st.tuples(_token, st.text(alphabet="abcdefghij0123456789", max_size=8))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "OPTIONS", "PATCH"]),
    version=st.sampled_from(["1.0", "1.1"]),
    fields=st.lists(st.tuples(_token, _value), max_size=15, unique_by=lambda f: f[0].lower()),
    cookies=st.lists(_cookie, max_size=5, unique_by=lambda c: c[0]),
    referer=st.booleans(),
    language=st.sampled_from([None, "da, en-GB;q=0.8", "en-US,en;q=0.9", "fr"]),
)
def test_matches_ja4plus_on_generated_requests(
    method: str,
    version: str,
    fields: list[tuple[str, str]],
    cookies: list[tuple[str, str]],
    referer: bool,
    language: str | None,
) -> None:
    skip = {"cookie", "referer", "accept-language"}
    headers = [(n, v) for n, v in fields if n.lower() not in skip]
    if referer:
        headers.insert(len(headers) // 2, ("Referer", "https://r.example/"))
    if cookies:
        headers.append(("Cookie", "; ".join(f"{n}={v}" for n, v in cookies)))
    if language is not None:
        headers.insert(1 if headers else 0, ("Accept-Language", language))
    raw = f"{method} / HTTP/{version}\r\n".encode() + b"".join(
        f"{n}: {v}\r\n".encode() for n, v in headers
    )
    ours = Ja4hFingerprint.from_parts(method, version, headers)
    assert (ours.text, ours.raw, ours.raw_original) == _ja4plus(raw + b"\r\n")


@pytest.mark.anyio
async def test_ja4h_of_real_clients_through_the_server(require_peer: Callable[[str], str]) -> None:
    curl = require_peer("curl")
    seen: list[tuple[Ja4hFingerprint, bytes]] = []

    async def record(ctx: Context, req: Request) -> Response:
        # The server keeps field order and casing, so the wire head can be rebuilt.
        wire = f"{req.method} {req.target} {req.version}\r\n".encode() + req.headers.to_bytes()
        seen.append((Ja4hFingerprint.from_request(req), wire + b"\r\n"))
        return Response.from_text(ja4h(req).text)

    listener = TcpListener.bind("127.0.0.1:0")
    port = listener.local_addr.port
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, Http1Server(service_fn(record), ServerConfig()))
        url = f"http://127.0.0.1:{port}/path"
        done = await anyio.run_process(
            [curl, "-sS", "-b", "b=2;a=1", "-e", "https://ref.example/", "-H",
             "Accept-Language: de-CH", url]
        )  # fmt: skip
        async with httpx.AsyncClient() as client:
            r = await client.post(url, content=b"x", headers={"X-Extra": "1"})
        listener.close()
        tg.cancel_scope.cancel()
    curl_fp = seen[0][0]
    httpx_fp = seen[1][0]
    assert done.stdout.decode() == curl_fp.text
    assert curl_fp.a == "ge11cr04dech"
    assert curl_fp.header_names == ("Host", "User-Agent", "Accept", "Accept-Language")
    assert [n for n, _ in curl_fp.cookies] == ["b", "a"]
    assert r.text == httpx_fp.text
    assert httpx_fp.a.startswith("po11nn")
    for fp, wire in seen:
        assert (fp.text, fp.raw, fp.raw_original) == _ja4plus(wire)


def test_ja4h_returns_the_shared_fingerprint_shape() -> None:
    from rama_tls import Fingerprint

    req = Request("GET", "/", headers=FOXIO_COOKIE_REQUEST)
    fp = ja4h(req)
    assert isinstance(fp, Ja4hFingerprint)
    assert isinstance(fp, Fingerprint)
    assert str(fp) == fp.text == fp.hash
    assert fp.text == "ge11cr04da00_8ddaef5d77af_280f366eaa04_c2fb0fe53442"
    assert fp.raw.startswith("ge11cr04da00_Host,User-Agent,")
