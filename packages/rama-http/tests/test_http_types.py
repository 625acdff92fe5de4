"""HTTP types without sockets: Headers, Uri, Method, Version, status, Body, Request, Response."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rama_http import (
    Body,
    BodyAlreadyConsumed,
    BodyError,
    BodyTooLarge,
    Headers,
    InvalidHeader,
    InvalidUri,
    Method,
    Request,
    Response,
    Uri,
    UriForm,
    Version,
)
from rama_http._status import is_client_error, is_informational, is_server_error, reason_phrase

# -- Headers ------------------------------------------------------------------------------------


def test_headers_keep_order_casing_and_duplicates() -> None:
    h = Headers(
        [("Host", "a"), ("X-Custom-Header", "1"), ("x-custom-header", "2"), ("ACCEPT", "*")]
    )
    assert h.names() == ["Host", "X-Custom-Header", "x-custom-header", "ACCEPT"]
    assert h.get("x-CUSTOM-header") == "1"
    assert h.get_all("X-Custom-Header") == ["1", "2"]
    assert h["accept"] == "*"
    assert "HOST" in h
    assert h.keys() == ["host", "x-custom-header", "accept"]
    assert h.to_bytes() == b"Host: a\r\nX-Custom-Header: 1\r\nx-custom-header: 2\r\nACCEPT: *\r\n"
    assert h.raw()[1] == (b"X-Custom-Header", b"1")
    with pytest.raises(KeyError):
        h["missing"]


def test_headers_set_keeps_the_position_of_the_first_field() -> None:
    h = Headers([("A", "1"), ("B", "2"), ("b", "3"), ("C", "4")])
    h.set("B", "new")
    assert h.items() == [("A", "1"), ("B", "new"), ("C", "4")]
    h["D"] = "5"
    assert h.names()[-1] == "D"
    assert h.remove("a") == 1
    assert h.remove("a") == 0
    del h["c"]
    with pytest.raises(KeyError):
        del h["c"]
    assert h.items() == [("B", "new"), ("D", "5")]
    assert h.setdefault("b", "ignored") == "new"
    assert h.setdefault("E", "6") == "6"
    copy = h.copy()
    copy.add("F", "7")
    assert "F" not in h
    h.clear()
    assert not h
    assert len(copy) == 4


def test_headers_lists_and_tokens() -> None:
    h = Headers([("Connection", "keep-alive, Upgrade"), ("connection", " ,close")])
    assert h.get_list("connection") == ["keep-alive", "Upgrade", "close"]
    assert h.has_token("Connection", "upgrade")
    assert not h.has_token("Connection", "te")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Bad Name", "v"),
        ("", "v"),
        ("Name:", "v"),
        ("X", "a\r\nInjected: yes"),
        ("X", "nul\x00"),
        ("X", "del\x7f"),
        ("X", "lf\n"),
    ],
)
def test_headers_reject_what_http_does_not_allow(name: str, value: str) -> None:
    with pytest.raises(InvalidHeader):
        Headers([(name, value)])
    with pytest.raises(InvalidHeader):
        Headers().add(name, value)


def test_headers_accept_tabs_and_obs_text_in_values_and_bytes_input() -> None:
    h = Headers([(b"X-Bytes", b"caf\xe9\tok")])
    assert h.get("x-bytes") == "caf\xe9\tok"
    assert h.raw() == [(b"X-Bytes", b"caf\xe9\tok")]
    assert Headers({"A": "1"}) == Headers([("A", "1")])
    assert Headers([("A", "1")]) != Headers([("a", "1")])  # casing is part of the value


_token = st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcdefXYZ", min_size=1, max_size=12)
_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=20).map(
    lambda v: v.replace("\x7f", "")
)


@given(st.lists(st.tuples(_token, _value), max_size=12))
def test_headers_round_trip_through_wire_bytes(pairs: list[tuple[str, str]]) -> None:
    h = Headers(pairs)
    assert h.items() == pairs
    assert Headers(h.raw()) == h
    for name, value in pairs:
        assert h.get(name.upper()) == next(v for n, v in pairs if n.lower() == name.lower())
        assert value in h.get_all(name)


# -- Uri ----------------------------------------------------------------------------------------


def test_uri_forms() -> None:
    origin = Uri.parse("/a/b?x=1&y")
    assert (origin.form, origin.path, origin.query, origin.host) == (
        UriForm.ORIGIN,
        "/a/b",
        "x=1&y",
        None,
    )
    absolute = Uri.parse("HTTP://user:pw@Example.com:8080/p?q#frag")
    assert absolute.form is UriForm.ABSOLUTE
    assert (absolute.scheme, absolute.userinfo, absolute.host, absolute.port) == (
        "http",
        "user:pw",
        "Example.com",
        8080,
    )
    assert (absolute.path, absolute.query) == ("/p", "q")
    assert absolute.authority == "Example.com:8080"
    assert str(absolute.to_origin_form()) == "/p?q"
    authority = Uri.parse("[::1]:443", method="CONNECT")
    assert (authority.form, authority.host, authority.port) == (UriForm.AUTHORITY, "::1", 443)
    assert authority.authority == "[::1]:443"
    assert str(authority) == "[::1]:443"
    assert Uri.parse("*").form is UriForm.ASTERISK
    assert Uri.parse("https://h").path == "/"
    assert Uri.parse("https://h").effective_port == 443
    assert Uri.parse("http://h").effective_port == 80
    assert Uri.parse("ftp://h").effective_port is None


@pytest.mark.parametrize(
    "target",
    [
        "",
        "/a b",
        "/a\x00",
        "http://",
        "http://:80/",
        "http://h:99999/",
        "http://h:8x/",
        "http://h:\u0668\u0660/",  # Arabic-Indic digits are not a port
        "1bad://h/",
        "http://[::1/",
        "http://[::1]x/",
        "example.com",  # authority-form without a port
        "example.com:443/path",
    ],
)
def test_bad_uris_raise_invalid_uri(target: str) -> None:
    with pytest.raises(InvalidUri):
        Uri.parse(target)


def test_uri_from_h2_pseudo_headers() -> None:
    u = Uri.from_parts(scheme="https", authority="a.example:8443", path_and_query="/x?y")
    assert (u.form, u.host, u.port, u.path, u.query) == (
        UriForm.ABSOLUTE,
        "a.example",
        8443,
        "/x",
        "y",
    )
    connect = Uri.from_parts(scheme=None, authority="a.example:443", path_and_query="")
    assert connect.form is UriForm.AUTHORITY
    assert Uri.from_parts(scheme="https", authority=None, path_and_query="/p").host is None


_seg = st.text(alphabet="abcxyz019-._~%", min_size=1, max_size=8)


@given(
    st.sampled_from(["http", "https", "ws"]),
    st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z]{2,5}){0,2}", fullmatch=True),
    st.one_of(st.none(), st.integers(1, 65535)),
    st.lists(_seg, max_size=4),
    st.one_of(st.none(), st.text(alphabet="a=&b1", max_size=10)),
)
def test_absolute_uris_round_trip(
    scheme: str, host: str, port: int | None, segments: list[str], query: str | None
) -> None:
    text = f"{scheme}://{host}{'' if port is None else f':{port}'}/{'/'.join(segments)}"
    if query is not None:
        text += f"?{query}"
    parsed = Uri.parse(text)
    assert str(parsed) == text
    assert Uri.parse(str(parsed)) == parsed


# -- Method, Version, status ---------------------------------------------------------------------


def test_method_constants_and_extension_methods() -> None:
    assert Method("GET") is Method.GET
    assert Method.GET == "GET"
    assert Method("PROPFIND") == "PROPFIND"
    assert Method.HEAD.is_safe
    assert Method.PUT.is_idempotent
    assert not Method.POST.is_idempotent
    assert Method("get") != Method.GET  # methods are case-sensitive
    for bad in ["", "GE T", "GET\r\n", "caf\xe9"]:
        with pytest.raises(ValueError, match="invalid method"):
            Method(bad)


def test_versions() -> None:
    assert Version.parse("HTTP/1.1") is Version.HTTP_11
    assert Version.parse("h2") is Version.HTTP_2
    assert Version.parse("HTTP/2.0") is Version.HTTP_2
    assert Version.parse("1.0") is Version.HTTP_10
    assert str(Version.HTTP_3) == "HTTP/3"
    assert Version.HTTP_2.alpn == "h2"
    assert Version.HTTP_10.is_http1
    assert not Version.HTTP_2.is_http1
    with pytest.raises(ValueError, match="unknown HTTP version"):
        Version.parse("HTTP/4")


def test_status_helpers() -> None:
    assert reason_phrase(404) == "Not Found"
    assert reason_phrase(299) == ""  # unknown codes: an empty phrase, as RFC 9112 allows
    assert is_informational(101)
    assert is_client_error(431)
    assert is_server_error(502)
    assert not is_server_error(499)


# -- Body ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_body_reading_helpers_and_limits() -> None:
    assert await Body.from_bytes("h\xe9").text() == "h\xe9"
    assert await Body(b'{"a": [1, 2]}').json() == {"a": [1, 2]}
    with pytest.raises(BodyError, match="not valid JSON"):
        await Body(b"{nope").json()
    with pytest.raises(BodyError, match="not valid utf-8"):
        await Body(b"\xff").text()
    with pytest.raises(BodyTooLarge):
        await Body(b"x" * 11).read(limit=10)

    async def chunks() -> object:
        for part in (b"ab", b"cd", b"ef"):
            yield part

    streamed = Body.from_iter(chunks())  # type: ignore[arg-type]
    with pytest.raises(BodyTooLarge):
        await streamed.read(limit=5)
    declared = Body.from_iter(chunks(), length=100)  # type: ignore[arg-type]
    with pytest.raises(BodyTooLarge):  # refused from the declared length, before reading
        await declared.read(limit=10)


@pytest.mark.anyio
async def test_body_is_consumed_once_but_read_is_cached() -> None:
    async def chunks() -> object:
        yield b"one"
        yield b"two"

    body = Body.from_iter(chunks())  # type: ignore[arg-type]
    assert await body.read() == b"onetwo"
    assert await body.read() == b"onetwo"
    assert [c async for c in body] == [b"onetwo"]
    other = Body.from_iter(chunks())  # type: ignore[arg-type]
    assert [c async for c in other] == [b"one", b"two"]
    assert other.consumed
    with pytest.raises(BodyAlreadyConsumed):
        [c async for c in other]


@pytest.mark.anyio
async def test_body_channel_has_backpressure_and_trailers() -> None:
    writer, body = Body.channel()
    sent: list[str] = []

    async def produce() -> None:
        async with writer:
            for part in (b"a", b"b", b"c"):
                await writer.send(part)
                sent.append(part.decode())
            await writer.send_trailers(Headers([("X-Checksum", "abc")]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        await anyio.sleep(0.05)
        assert sent == []  # nothing is taken yet: the producer waits (buffer 0)
        got = [chunk async for chunk in body]
    assert got == [b"a", b"b", b"c"]
    assert body.trailers == Headers([("X-Checksum", "abc")])


@pytest.mark.anyio
async def test_body_producer_error_reaches_the_consumer_typed() -> None:
    writer, body = Body.channel(buffer=2)
    await writer.send(b"part")
    await writer.abort(RuntimeError("disk gone"))
    with pytest.raises(BodyError, match="disk gone"):
        await body.read()


@pytest.mark.anyio
async def test_body_aclose_closes_the_iterator_it_handed_out() -> None:
    closed: list[str] = []

    class Source:
        def __aiter__(self) -> object:
            async def gen() -> object:
                try:
                    while True:
                        yield b"x"
                finally:
                    closed.append("iterator")

            return gen()

    body = Body.from_iter(Source())  # type: ignore[arg-type]
    iterator = aiter(body)
    assert await anext(iterator) == b"x"
    await body.aclose()
    assert closed == ["iterator"]


# -- Request and Response ------------------------------------------------------------------------


def test_request_target_host_and_authority() -> None:
    req = Request("GET", "/p?q=1", headers=[("Host", "example.com:8080")])
    assert (req.path, req.query, req.host, req.authority) == (
        "/p",
        "q=1",
        "example.com",
        "example.com:8080",
    )
    proxy_style = Request("GET", "http://[::1]:81/x")
    assert (proxy_style.host, proxy_style.authority, proxy_style.path) == ("::1", "[::1]:81", "/x")
    connect = Request("CONNECT", "a.example:443")
    assert connect.is_connect
    assert connect.uri.form is UriForm.AUTHORITY
    assert Request("GET", "/", headers=[("Host", "[::1]:80")]).host == "::1"
    req.uri = Uri.parse("/other")
    assert req.target == "/other"


def test_response_constructors() -> None:
    text = Response.from_text("hi", 201)
    assert (text.status, text.headers["content-type"]) == (201, "text/plain; charset=utf-8")
    assert text.body.bytes_now() == b"hi"
    js = Response.from_json({"k": "\xe9"})
    assert js.body.bytes_now() == '{"k":"\xe9"}'.encode()
    assert Response.redirect("/there").headers["location"] == "/there"
    assert Response.empty().status == 204
    assert Response.error(404).body.bytes_now() == b"Not Found\n"
    assert Response(418, reason="I'm a teapot\tindeed").reason_phrase == "I'm a teapot\tindeed"
    assert Response(404).reason_phrase == "Not Found"


@pytest.mark.parametrize("reason", ["OK\r\nSet-Cookie: evil=1", "OK\n", "nul\x00", "bell\x07"])
def test_response_reason_cannot_smuggle_header_lines(reason: str) -> None:
    with pytest.raises(InvalidHeader, match="reason phrase"):
        Response(200, reason=reason)
    resp = Response(200)
    with pytest.raises(InvalidHeader, match="reason phrase"):
        resp.reason = reason
    assert resp.reason is None


def test_list_elements_are_trimmed_of_sp_and_htab_only() -> None:
    from rama_http import Headers

    h = Headers([("Connection", "keep-alive,\tclose"), ("X", "a\xa0, b")])
    assert h.get_list("connection") == ["keep-alive", "close"]
    assert h.has_token("connection", "close")
    assert h.get_list("x") == ["a\xa0", "b"]
