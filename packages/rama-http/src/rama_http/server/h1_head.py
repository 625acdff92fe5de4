"""Request-head semantics shared by the HTTP/1.1 parsers.

Once a parser has split a request head into a request line and
``(name, value)`` fields, :func:`make_head` applies the message rules every
engine must agree on (RFC 9112): exactly one Host on HTTP/1.1, body framing
(chunked or a single valid Content-Length, never both), keep-alive,
``Expect: 100-continue`` and protocol upgrades.
"""

from __future__ import annotations

from ..errors import RemoteProtocolError
from ..version import Version
from .h1_engine import RequestHead

__all__ = ["check_head_size", "framing", "make_head"]


def make_head(
    method: str,
    target: str,
    version: Version,
    fields: list[tuple[str, str]],
    keys: list[str],
) -> RequestHead:
    """Validate a parsed head and derive its framing and connection facts."""
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
                tokens = fields[i][1].lower().replace(" ", "").split(",")
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
    return RequestHead(
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


def framing(fields: list[tuple[str, str]], keys: list[str]) -> tuple[int | None, bool]:
    """``(content_length, chunked)`` of a request; raises on ambiguous framing."""
    lengths: set[str] = set()
    te: list[str] = []
    for i, k in enumerate(keys):
        if k == "content-length":
            lengths.update(p.strip() for p in fields[i][1].split(","))
        elif k == "transfer-encoding":
            te.append(fields[i][1])
    if te:
        if lengths:
            raise RemoteProtocolError("both Content-Length and Transfer-Encoding")
        if len(te) > 1 or te[0].strip().lower() != "chunked":
            raise RemoteProtocolError("only Transfer-Encoding: chunked is supported", status=501)
        return None, True
    if len(lengths) != 1:
        raise RemoteProtocolError("conflicting Content-Length values")
    value = lengths.pop()
    if not value.isdigit() or not value.isascii() or len(value) > 18:
        raise RemoteProtocolError(f"invalid Content-Length {value[:20]!r}")
    return int(value), False


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
