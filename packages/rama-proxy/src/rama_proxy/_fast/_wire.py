"""What the fast path reads and writes, without I/O: request heads in, heads out.

The fast path answers exactly what :class:`~rama_proxy.HttpProxy` behind
rama-http's HTTP/1.1 server answers (same status lines, fields, field order
and bodies); these functions are the byte-level half of that promise and are
tested against the general path's output.
"""

from __future__ import annotations

import re
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


# -- the plain response: passed on without a parse into fields ------------------------------
_TOKEN_B = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VCHAR_B = rb"[^\x00-\x20\x7f]"
# One field in the spelling the general path writes back (``Name: value``: one space, no
# trailing whitespace), so a copy of the bytes is what re-serializing would give.
_CANON_FIELD = (
    rb"(?:" + _TOKEN_B + rb": (?:" + _VCHAR_B + rb"+(?:[ \t]+" + _VCHAR_B + rb"+)*)?\r\n)"
)
_PLAIN_HEAD: Final = re.compile(
    rb"HTTP/1\.1 ([2-5][0-9][0-9]) [^\x00-\x08\x0a-\x1f\x7f]*\r\n" + _CANON_FIELD + rb"*\r\n"
)
_SPECIAL: Final = re.compile(
    rb"\r\n(connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade"
    rb"|proxy-authenticate|proxy-authorization|content-length|date): ([^\r]*)",
    re.IGNORECASE,
)
# what each special field means here, by its spellings (the common one first, then lower)
_KINDS: Final = {}
for _name, _kind in (
    (b"Connection", 1),
    (b"Keep-Alive", 2),
    (b"Proxy-Connection", 2),
    (b"Proxy-Authenticate", 2),
    (b"Proxy-Authorization", 2),
    (b"Content-Length", 3),
    (b"Date", 4),
    (b"TE", 5),
    (b"Trailer", 5),
    (b"Transfer-Encoding", 5),
    (b"Upgrade", 5),
):
    _KINDS[_name] = _KINDS[_name.lower()] = _kind
_CONNECTION, _DROP, _LENGTH, _DATE, _REFRAME = 1, 2, 3, 4, 5


def plain_response(
    block: bytes, *, head_request: bool, close: bool
) -> tuple[bytes, int, bool] | None:
    """The common upstream answer, passed on as bytes: ``(head to send, body length,
    upstream keep-alive)``, or None to parse it properly (:func:`response_head`).

    ``block`` is a complete response head. Only the plainest kind qualifies:
    HTTP/1.1, a final status, fields spelled as the general path writes them,
    one Content-Length (or no body: HEAD, 204, 304), and ``Connection``
    naming nothing but ``keep-alive`` or ``close``. Its hop-by-hop lines are
    cut out and ``Date``/``Connection: close`` appended exactly where
    :func:`response_head` puts them, so both give the same bytes.
    """
    m = _PLAIN_HEAD.fullmatch(block)
    if m is None:
        return None
    status = int(m.group(1))
    length: int | None = None
    keep_alive = True
    has_date = False
    cuts: list[tuple[int, int]] = []
    for f in _SPECIAL.finditer(block):
        name = f.group(1)
        kind = _KINDS.get(name) or _KINDS[name.lower()]
        if kind == _LENGTH:
            value = f.group(2)
            if length is not None or not value.isdigit() or len(value) > 18:
                return None
            length = int(value)
        elif kind == _DATE:
            has_date = True
        elif kind == _REFRAME:
            return None
        else:
            if kind == _CONNECTION:
                token = f.group(2).lower()
                if token == b"close":
                    keep_alive = False
                elif token != b"keep-alive":
                    return None  # it names fields to drop: the full parse does that
            cuts.append((f.start() + 2, f.end() + 2))
    no_body = head_request or status in (204, 304)
    if length is None and status not in (204, 304):
        # chunked or delimited by the close (the full parse re-chunks it), or a HEAD
        # answer without a length (the full parse announces the framing)
        return None
    if cuts:
        parts = []
        at = 0
        for start, end in cuts:
            parts.append(block[at:start])
            at = end
        parts.append(block[at:-2])
        head = b"".join(parts)
    else:
        head = block[:-2]
    if not has_date:
        head += f"Date: {_http_date()}\r\n".encode()
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n", 0 if no_body else (length or 0), keep_alive
