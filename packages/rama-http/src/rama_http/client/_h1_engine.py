"""The sans-IO interface every HTTP/1.1 client engine implements.

An engine turns a request into bytes and received bytes into events
(:class:`ResponseHead`, :class:`InformationalHead`, :class:`BodyData`,
:class:`BodyEnd`, or the sentinels :data:`NEED_DATA` and :data:`PAUSED`). It
does no I/O and knows no clock: :class:`~rama_http.client.Http1Connection`
owns the socket and the timeouts. A peer that breaks the protocol raises
:class:`~rama_http.RemoteProtocolError`.

Rules all engines follow (the conformance suite in
``tests/test_client_h1_engine.py`` checks them at every split point):

- The request goes out exactly as given: header order and casing are kept,
  and :func:`prepare_headers` adds only ``Host`` (first, when the caller gave
  none) and the framing field (``Content-Length`` or
  ``Transfer-Encoding: chunked``, last) when the body needs one.
- A response to HEAD, and any 1xx, 204 or 304, has no body.
- Body framing (RFC 9112 section 6.3): chunked, else Content-Length (one
  field of 1*DIGIT), else close-delimited (the connection then closes).
- 1xx answers (100-continue, 103 Early Hints) come out as
  :class:`InformationalHead` before the final head; 101 is not supported.
- Trailers of a chunked body come with :class:`BodyEnd`.
- A header value with CR, LF or another control byte, obs-fold, a bad status
  line, a bad chunk size, a truncated body or a head above the limit raise
  :class:`~rama_http.RemoteProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from .._errors import LocalProtocolError, RemoteProtocolError
from ..server._h1_engine import NEED_DATA, PAUSED, BodyData, BodyEnd, Sentinel

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "BodyData",
    "BodyEnd",
    "ClientEngineLimits",
    "H1ClientEngine",
    "H1ClientEvent",
    "InformationalHead",
    "ResponseHead",
    "Sentinel",
    "connection_close",
    "prepare_headers",
    "response_framing",
    "serialize_head",
]

_OWS: Final = " \t"
_NO_BODY_STATUS: Final = frozenset({204, 304})


class ResponseHead:
    """A parsed final status line and header fields."""

    __slots__ = (
        "chunked",
        "content_length",
        "has_body",
        "headers",
        "keep_alive",
        "keys",
        "reason",
        "status",
        "version",
    )

    def __init__(
        self,
        status: int,
        reason: str,
        version: str,
        headers: list[tuple[str, str]],
        keys: list[str],
        *,
        content_length: int | None,
        chunked: bool,
        has_body: bool,
        keep_alive: bool,
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        """``"1.1"`` or ``"1.0"``."""
        self.headers = headers
        """``(name, value)`` pairs in order and original casing."""
        self.keys = keys
        """Lower-cased names, parallel to :attr:`headers`."""
        self.content_length = content_length
        self.chunked = chunked
        self.has_body = has_body
        """False for HEAD, 1xx, 204, 304 and ``Content-Length: 0``."""
        self.keep_alive = keep_alive
        """Whether the connection can carry another request after this response."""

    def __repr__(self) -> str:
        return f"ResponseHead({self.status} {self.reason!r} HTTP/{self.version})"


class InformationalHead:
    """A 1xx interim response (100 Continue, 103 Early Hints)."""

    __slots__ = ("headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]]) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers

    def __repr__(self) -> str:
        return f"InformationalHead({self.status})"


H1ClientEvent = ResponseHead | InformationalHead | BodyData | BodyEnd | Sentinel
"""Anything :meth:`H1ClientEngine.next_event` returns."""


@dataclass(frozen=True, slots=True)
class ClientEngineLimits:
    """Parser limits for responses."""

    max_header_size: int = 64 * 1024
    """Bytes of a response head (status line and fields); more is a RemoteProtocolError."""
    max_headers: int = 200
    """Header fields in a response head."""


class H1ClientEngine(Protocol):
    """The client side of one HTTP/1.1 connection, without I/O."""

    def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
    ) -> bytes:
        """Serialize a request head (from :func:`prepare_headers`' output), plus ``body``.

        With ``body=None`` the body follows through :meth:`data` and :meth:`end`
        (chunked when the headers say so); ``b""`` means no body.
        """
        ...

    def data(self, chunk: bytes) -> bytes:
        """Frame a chunk of a streamed request body."""
        ...

    def end(self, trailers: list[tuple[str, str]] | None = None) -> bytes:
        """Finish a streamed request body (trailers only when chunked)."""
        ...

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        ...

    def feed_eof(self) -> None:
        """The server closed its sending side."""
        ...

    def next_event(self) -> H1ClientEvent:
        """The next event, NEED_DATA, or PAUSED once the response is complete."""
        ...

    @property
    def keep_alive(self) -> bool:
        """Whether the connection can carry another request after this cycle."""
        ...

    @property
    def trailing_data(self) -> bool:
        """Whether bytes arrived after the response (a reuse would misparse them)."""
        ...

    def start_next_cycle(self) -> None:
        """Request and response are both done: get ready for the next request."""
        ...


def prepare_headers(
    method: str,
    authority: str,
    headers: list[tuple[str, str]],
    body_length: int | None,
) -> tuple[list[tuple[str, str]], bool]:
    """Add what HTTP/1.1 requires and nothing else; return ``(headers, chunked)``.

    ``Host`` goes first when the caller gave none (its own Host keeps its
    place). When the caller gave no framing field, a body of known length
    gets ``Content-Length`` (also ``0`` for POST/PUT/PATCH, as curl does) and
    one of unknown length (``body_length=None``) ``Transfer-Encoding:
    chunked``, both appended last.
    """
    has_host = has_cl = chunked = False
    for name, value in headers:
        n = name.lower()
        if n == "host":
            has_host = True
        elif n == "content-length":
            has_cl = True
        elif n == "transfer-encoding":
            if value.strip(_OWS).lower() != "chunked":
                raise LocalProtocolError("only Transfer-Encoding: chunked can be sent")
            chunked = True
    out = headers if has_host else [("Host", authority), *headers]
    if not has_cl and not chunked:
        if body_length is None:
            out = [*out, ("Transfer-Encoding", "chunked")]
            chunked = True
        elif body_length > 0 or method in ("POST", "PUT", "PATCH"):
            out = [*out, ("Content-Length", str(body_length))]
    elif body_length is None and has_cl and not chunked:
        pass  # the caller's Content-Length frames the stream
    return out, chunked


def serialize_head(method: str, target: str, headers: list[tuple[str, str]]) -> bytes:
    """The request line and header block, byte for byte as given (both engines use this)."""
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    lines += [f"{n}: {v}\r\n" for n, v in headers]
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def response_framing(
    method: str,
    status: int,
    fields: list[tuple[str, str]],
    keys: list[str],
) -> tuple[int | None, bool, bool]:
    """``(content_length, chunked, close_delimited)`` of a response (RFC 9112 section 6.3)."""
    if method == "HEAD" or status < 200 or status in _NO_BODY_STATUS:
        return 0, False, False
    if "transfer-encoding" in keys:
        tes = [fields[i][1] for i, k in enumerate(keys) if k == "transfer-encoding"]
        codings = [c.strip(_OWS).lower() for v in tes for c in v.split(",")]
        if codings[-1] != "chunked":
            raise RemoteProtocolError(f"unsupported Transfer-Encoding {tes!r}", status=502)
        if len(codings) > 1:
            raise RemoteProtocolError(f"unsupported Transfer-Encoding {tes!r}", status=502)
        return None, True, False
    if "content-length" in keys:
        values = {
            p.strip(_OWS)
            for i, k in enumerate(keys)
            if k == "content-length"
            for p in fields[i][1].split(",")
        }
        if len(values) != 1:
            raise RemoteProtocolError("conflicting Content-Length values", status=502)
        value = values.pop()
        if not value.isascii() or not value.isdigit() or len(value) > 18:
            raise RemoteProtocolError(f"invalid Content-Length {value[:20]!r}", status=502)
        return int(value), False, False
    return None, False, True


def connection_close(fields: list[tuple[str, str]], keys: list[str]) -> bool:
    """Whether a ``Connection`` field lists ``close``."""
    for i, k in enumerate(keys):
        if k == "connection" and "close" in (
            t.strip(_OWS).lower() for t in fields[i][1].split(",")
        ):
            return True
    return False
