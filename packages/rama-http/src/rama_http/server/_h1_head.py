"""Request-head semantics shared by the HTTP/1.1 parsers.

Once a parser has split a request head into a request line and
``(name, value)`` fields, :func:`make_head` applies the message rules every
engine must agree on (RFC 9112): exactly one Host on HTTP/1.1, body framing
(chunked or a single valid Content-Length, never both), keep-alive,
``Expect: 100-continue`` and protocol upgrades.
"""

from __future__ import annotations

from .._errors import InvalidUri, RemoteProtocolError
from .._uri import Uri
from .._version import Version
from ._h1_engine import RequestHead

__all__ = ["check_head_size", "check_trailers", "framing", "make_head"]


def make_head(
    method: str,
    target: str,
    version: Version,
    fields: list[tuple[str, str]],
    keys: list[str],
) -> RequestHead:
    """Validate a parsed head and derive its framing and connection facts."""
    uri: Uri | None = None
    if target[:1] != "/":
        # Origin-form (the common case) always parses; other forms are checked
        # now, so an unparsable target is the peer's 400, not a 500 raised
        # later by ``Request.uri`` in a handler (which gets this parse).
        try:
            uri = Uri.parse(target, method=method)
        except InvalidUri as e:
            raise RemoteProtocolError(f"invalid request target {target[:100]!r}") from e
    content_length: int | None = None
    chunked = False
    if "content-length" in keys or "transfer-encoding" in keys:
        content_length, chunked = framing(fields, keys)
    nhost = keys.count("host")
    if nhost > 1 or (nhost == 0 and version is Version.HTTP_11):
        raise RemoteProtocolError("a request needs exactly one Host header")
    keep_alive = version is Version.HTTP_11
    conn_upgrade = False
    if "connection" in keys:
        for i, k in enumerate(keys):
            if k == "connection":
                tokens = [t.strip(_OWS) for t in fields[i][1].lower().split(",")]
                if "close" in tokens:
                    keep_alive = False
                if "upgrade" in tokens:
                    conn_upgrade = True
    expect_continue = False
    if "expect" in keys:
        value = fields[keys.index("expect")][1]
        expect_continue = value.lower() == "100-continue" and version is Version.HTTP_11
    upgrade: str | None = None
    # RFC 9110 section 7.8: a sender of Upgrade must also list it in Connection;
    # without that the header is not an upgrade request.
    if conn_upgrade and "upgrade" in keys:
        upgrade = fields[keys.index("upgrade")][1] or None
    head = RequestHead(
        method,
        target,
        version,
        fields,
        keys,
        content_length=content_length,
        chunked=chunked,
        keep_alive=keep_alive,
        expect_continue=expect_continue,
        upgrade=upgrade,
    )
    if uri is not None:
        head.uri = uri
    return head


_OWS = " \t"
"""Optional whitespace (RFC 9110 section 5.6.3): SP and HTAB only, never ``str.strip()``'s
Unicode whitespace (NBSP, NEL... after a latin-1 decode)."""

_TRAILER_FORBIDDEN = frozenset({"content-length", "transfer-encoding"})


def framing(fields: list[tuple[str, str]], keys: list[str]) -> tuple[int | None, bool]:
    """``(content_length, chunked)`` of a request; raises on ambiguous framing.

    One policy for every engine: a single Content-Length field of 1*DIGIT
    (no lists, not even of equal values); a single ``Transfer-Encoding:
    chunked`` field (any other coding is 501); never both. Only SP/HTAB pad
    a value, and a trailing HTAB after ``chunked`` is rejected as llhttp does.
    """
    n_cl = n_te = 0
    cl = te = ""
    for i, k in enumerate(keys):
        if k == "content-length":
            n_cl += 1
            cl = fields[i][1]
        elif k == "transfer-encoding":
            n_te += 1
            te = fields[i][1]
    if n_te:
        if n_cl:
            raise RemoteProtocolError("both Content-Length and Transfer-Encoding")
        if n_te > 1 or te.endswith("\t"):
            raise RemoteProtocolError("invalid Transfer-Encoding")
        if te.strip(_OWS).lower() != "chunked":
            raise RemoteProtocolError("only Transfer-Encoding: chunked is supported", status=501)
        return None, True
    if n_cl != 1:
        raise RemoteProtocolError("more than one Content-Length field")
    value = cl.strip(_OWS)
    if not value.isdigit() or not value.isascii() or len(value) > 18:
        raise RemoteProtocolError(f"invalid Content-Length {value[:20]!r}")
    return int(value), False


def check_trailers(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Reject framing fields in chunked trailers (RFC 9110 section 6.5.1): 400."""
    for name, _ in fields:
        if name.lower() in _TRAILER_FORBIDDEN:
            raise RemoteProtocolError(f"{name} is not allowed in trailers")
    return fields


def check_head_size(method: str, target: str, fields: list[tuple[str, str]], limit: int) -> None:
    """Raise 431 when the head, as sent with single spaces, exceeds ``limit`` bytes.

    For parsers that hand over a complete head without its byte count; a
    head that arrives in one piece never trips their incremental limits.
    """
    size = len(method) + len(target) + 13
    for n, v in fields:
        size += len(n) + len(v) + 4
    if size + 2 > limit:
        raise RemoteProtocolError("request head too large", status=431)
