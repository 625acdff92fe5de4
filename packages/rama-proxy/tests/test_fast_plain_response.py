"""The plain-response shortcut of the fast path gives what the full parse gives.

:func:`plain_response` passes the common upstream answer on as bytes; for every
head it accepts, the head it sends, the body length and the upstream keep-alive
must equal what rama-http's response parser plus :func:`response_head` give,
and it must refuse (None) every head whose framing it does not own.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rama_http.client._h1_engine import BodyData, BodyEnd, ResponseHead
from rama_http.client._h1_fast import FastClientEngine
from rama_proxy._fast._wire import plain_response, response_head


def full_parse(block: bytes, *, head_request: bool, close: bool) -> tuple[bytes, int, bool]:
    """What the parsed path sends for ``block`` (plus a body of its Content-Length)."""
    engine = FastClientEngine()
    engine.request("HEAD" if head_request else "GET", "/", [("Host", "x")], None)
    engine.feed(block)
    ev = engine.next_event()
    assert isinstance(ev, ResponseHead)
    length = 0 if not ev.has_body else (ev.content_length or 0)
    engine.feed(b"x" * length)
    while not isinstance(ev, BodyEnd):
        ev = engine.next_event()
        assert isinstance(ev, BodyData | BodyEnd)
    head, _ = response_head(
        engine_head(block, head_request),
        chunked=False,
        close=close,
        head_request=head_request,
    )
    return head, length, engine.keep_alive


def engine_head(block: bytes, head_request: bool) -> ResponseHead:
    engine = FastClientEngine()
    engine.request("HEAD" if head_request else "GET", "/", [("Host", "x")], None)
    engine.feed(block)
    ev = engine.next_event()
    assert isinstance(ev, ResponseHead)
    return ev


NGINX = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 02:40:58 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\n"
)


def test_nginx_answer_is_passed_on_without_its_connection_field() -> None:
    plan = plain_response(NGINX, head_request=False, close=False)
    assert plan == (NGINX.replace(b"Connection: keep-alive\r\n", b""), 6, True)
    assert plan == full_parse(NGINX, head_request=False, close=False)


def test_close_is_appended_and_upstream_close_is_seen() -> None:
    block = NGINX.replace(b"keep-alive", b"close")
    head, length, reuse = plain_response(block, head_request=False, close=True) or (b"", 0, True)
    assert head.endswith(b"Content-Length: 6\r\nConnection: close\r\n\r\n")
    assert (length, reuse) == (6, False)
    assert (head, length, reuse) == full_parse(block, head_request=False, close=True)


def test_date_is_added_when_missing() -> None:
    block = b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"
    plan = plain_response(block, head_request=False, close=False)
    assert plan is not None
    assert plan[0].startswith(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\nDate: ")
    assert plan[1:] == (0, True)


REFUSED = {
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    "no length": b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n",
    "head without length": b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n",
    "two lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
    "length list": b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n",
    "odd spacing": b"HTTP/1.1 200 OK\r\nContent-Length:  1\r\n\r\n",
    "no space": b"HTTP/1.1 200 OK\r\nContent-Length:1\r\n\r\n",
    "trailing space": b"HTTP/1.1 200 OK\r\nContent-Length: 1 \r\n\r\n",
    "HTTP/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
    "interim": b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
    "connection lists a field": b"HTTP/1.1 200 OK\r\nConnection: x-a\r\nContent-Length: 1\r\n\r\n",
    "upgrade": b"HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nContent-Length: 1\r\n\r\n",
    "shouting te": b"HTTP/1.1 200 OK\r\nTRANSFER-ENCODING: chunked\r\nContent-Length: 1\r\n\r\n",
    "bare lf": b"HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n",
    "control char": b"HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 1\r\n\r\n",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 1\r\n\r\n",
    "no reason space": b"HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n",
}


def test_heads_it_does_not_own_are_refused() -> None:
    for name, block in REFUSED.items():
        head_request = name == "head without length"
        assert plain_response(block, head_request=head_request, close=False) is None, name


_NAMES = st.sampled_from(
    [
        "Server",
        "X-Thing",
        "Content-Type",
        "Date",
        "date",
        "Content-Length",
        "content-length",
        "Connection",
        "connection",
        "Keep-Alive",
        "Proxy-Connection",
        "Proxy-Authenticate",
        "Transfer-Encoding",
        "Trailer",
        "Upgrade",
        "Set-Cookie",
    ]
)
_VALUES = st.sampled_from(
    ["a", "b c", "keep-alive", "close", "Keep-Alive", "0", "5", "12", "x, y", "chunked", ""]
)


@settings(max_examples=400, deadline=None)
@given(
    status=st.sampled_from([200, 201, 204, 301, 304, 404, 500]),
    fields=st.lists(st.tuples(_NAMES, _VALUES), max_size=8),
    head_request=st.booleans(),
    close=st.booleans(),
)
def test_plain_answers_equal_the_full_parse(
    status: int, fields: list[tuple[str, str]], head_request: bool, close: bool
) -> None:
    lines = "".join(f"{n}: {v}\r\n" for n, v in fields)
    block = f"HTTP/1.1 {status} Something\r\n{lines}\r\n".encode()
    plan = plain_response(block, head_request=head_request, close=close)
    if plan is None:
        return  # the full parse serves it (or refuses it)
    head, length, reuse = plan
    want_head, want_length, want_reuse = full_parse(block, head_request=head_request, close=close)
    # the Date a missing one gets is the current second on both sides
    assert head.split(b"\r\nDate: ")[0] == want_head.split(b"\r\nDate: ")[0]
    assert head.count(b"\r\n") == want_head.count(b"\r\n")
    assert (length, reuse) == (want_length, want_reuse)
