"""What the fast path reads and writes, without I/O: request heads in, heads out.

The fast path answers exactly what :class:`~rama_proxy.HttpProxy` behind
rama-http's HTTP/1.1 server answers (same status lines, fields, field order
and bodies); these functions are the byte-level half of that promise and are
tested against the general path's output.
"""

from __future__ import annotations

from typing import Final

from rama_http import RemoteProtocolError, Uri
from rama_http import Version as HttpVersion
from rama_http._status import reason_phrase
from rama_http.client._h1_engine import ResponseHead
from rama_http.server._h1_conn import _http_date, error_response
from rama_http.server._h1_engine import EngineLimits, RequestHead
from rama_http.server._h1_fast import parse_head_text
from rama_http.server._h1_head import make_head

from .._hop_by_hop import strip_hop_by_hop_fields

__all__ = [
    "CONNECT_ESTABLISHED",
    "connect_established",
    "error_response",
    "parse_request_head",
    "request_fields",
    "response_head",
    "text_response",
]

CONNECT_ESTABLISHED: Final = "Connection established"
_SERVED_METHODS: Final = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT")
)
"""Methods the fast path serves; any other (extension methods, lower-case spellings)
goes to the general path, whose HTTP/1.1 engine decides whether it is one."""


def parse_request_head(block: bytes, limits: EngineLimits) -> RequestHead | None:
    """The request head in ``block`` (up to and including its empty line), or None
    when it is not one the fast path serves as it is: anything the general
    path answers differently (bad syntax, bodies it must reframe, upgrades,
    ``Expect``) is handed over to it untouched."""
    if len(block) > limits.max_header_size:
        return None  # the general path answers 431
    try:
        method, target, version, fields, keys = parse_head_text(
            block[:-2].decode("latin-1"), limits
        )
        head = make_head(method, target, version, fields, keys)
    except RemoteProtocolError:
        return None
    if (
        method not in _SERVED_METHODS
        or head.chunked
        or head.expect_continue
        or head.upgrade is not None
        or version is not HttpVersion.HTTP_11
        or "upgrade" in keys
    ):
        return None
    return head


def request_fields(head: RequestHead, uri: Uri, host: str) -> list[tuple[str, str]] | None:
    """The fields to send upstream for a forwarded request (RFC 9110 section 7.6.1:
    hop-by-hop fields removed, order and casing kept; RFC 9112 section 3.2.2:
    the target's authority replaces a stale Host), or None to hand it over."""
    stripped = strip_hop_by_hop_fields(head.headers, head.keys)
    fields, keys = (head.headers, head.keys) if stripped is None else stripped
    expected = uri.authority or host
    try:
        i = keys.index("host")
    except ValueError:
        return None  # HTTP/1.1 without Host never gets here (make_head refuses it)
    if fields[i][1].lower() != expected.lower():
        fields = list(fields)
        fields[i] = (fields[i][0], expected)
    return fields


def response_head(
    head: ResponseHead, *, chunked: bool, close: bool, head_request: bool = False
) -> tuple[bytes, bool]:
    """The head to send the client for an upstream response, and whether the
    body is re-chunked. ``chunked``: the body has no length of its own (chunked
    upstream, or delimited by the upstream closing) and is sent chunked;
    ``close``: the client connection ends after this response. The answer to a
    HEAD request announces the framing the GET would get through the proxy
    (chunked, when the origin gave no length) and has no body."""
    if head_request and head.status not in (204, 304) and "content-length" not in head.keys:
        head_out, _ = response_head(head, chunked=True, close=close)
        return head_out, False
    stripped = strip_hop_by_hop_fields(head.headers, head.keys)
    fields, keys = (head.headers, head.keys) if stripped is None else stripped
    if chunked and "content-length" in keys:
        # RFC 9112 section 6.2: never both (and a smuggling vector downstream)
        fields = [f for f, k in zip(fields, keys, strict=True) if k != "content-length"]
    parts = [f"HTTP/1.1 {head.status} {head.reason}\r\n"]
    parts += [f"{n}: {v}\r\n" for n, v in fields]
    if "date" not in keys:
        parts.append(f"Date: {_http_date()}\r\n")
    if chunked:
        parts.append("Transfer-Encoding: chunked\r\n")
    if close:
        parts.append("Connection: close\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("latin-1"), chunked


def text_response(
    status: int,
    text: str,
    headers: tuple[tuple[str, str], ...] = (),
    *,
    close: bool = False,
) -> bytes:
    """The short plain-text answer :class:`~rama_proxy.HttpProxy` gives for errors."""
    body = (text + "\n").encode()
    lines = "".join(f"{n}: {v}\r\n" for n, v in headers)
    conn = "Connection: close\r\n" if close else ""
    head = (
        f"HTTP/1.1 {status} {reason_phrase(status)}\r\n{lines}"
        f"Content-Type: text/plain; charset=utf-8\r\nDate: {_http_date()}\r\n"
        f"Content-Length: {len(body)}\r\n{conn}\r\n"
    )
    return head.encode("latin-1") + body


def connect_established() -> bytes:
    """The ``200`` that opens a CONNECT tunnel."""
    return f"HTTP/1.1 200 {CONNECT_ESTABLISHED}\r\nDate: {_http_date()}\r\n\r\n".encode()
