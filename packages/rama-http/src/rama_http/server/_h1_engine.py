"""The sans-IO interface every HTTP/1.1 server engine implements.

An engine turns received bytes into events (:class:`RequestHead`,
:class:`BodyData`, :class:`BodyEnd`, or the sentinels :data:`NEED_DATA` and
:data:`PAUSED`) and responses into bytes. It does no I/O and knows no
clock: the connection loop in :mod:`rama_http.server._h1_conn` owns sockets,
timeouts and the service. Engines raise :class:`~rama_http.ProtocolError`
with the status to answer (400, 413, 414, 431, 501, 505).

Rules all engines follow (and the conformance suite checks):

- A request whose :attr:`RequestHead.has_body` is false is complete: no body
  events follow it.
- Bytes after a request are not parsed until :meth:`H1Engine.start_next_cycle`,
  so after a protocol switch :meth:`H1Engine.switch_protocol` returns them intact.
- A complete response (``body`` given) gets ``Content-Length`` unless it has
  framing headers or its status forbids a body; HEAD answers never carry body
  bytes; streamed responses are chunked for HTTP/1.1 and close-delimited for
  HTTP/1.0.
- Keep-alive is off after a request with ``Connection: close``, an HTTP/1.0
  request, a response with ``Connection: close`` or a close-delimited body.
- Requests parsed before a protocol error in the same bytes are handed out
  (and answered) first; the error is raised after them.

One framing policy (a proxy whose engines frame a message differently is
open to request smuggling). Every engine applies it, and the table in
``tests/test_http_h1_engine.py`` checks it at every split point:

- obs-fold (a field line starting with SP/HTAB) is rejected (400) in every
  field, framing fields included (RFC 9112 section 5.2 allows either).
- Lines end with CRLF. A bare LF in a request head, chunk-size line or
  trailer section is rejected (400); a stray CR too. Empty lines (CRLF or
  LF) before a request line are ignored (RFC 9112 section 2.2).
- Optional whitespace is SP and HTAB only (RFC 9110 section 5.6.3), never
  what ``str.strip()`` takes after a latin-1 decode (NBSP ``\xa0``, NEL
  ``\x85``, VT, FF): ``Content-Length: 5\xa0`` is a 400, not a length.
- ``Content-Length`` is one field of 1*DIGIT; lists (``5, 5``) and repeated
  fields are rejected (400), even with equal values.
- ``Transfer-Encoding`` is one field whose value is ``chunked`` (any case,
  SP/HTAB around it, but no trailing HTAB, which llhttp rejects): another
  coding is 501, a repeated field 400, with ``Content-Length`` also 400.
- ``Connection`` is a comma-separated token list with SP/HTAB around the
  tokens: ``keep-alive,<HTAB>close`` closes.
- A chunk size is hex digits followed directly by ``;`` or CRLF (``5 `` and
  ``5 ;ext`` are 400); extensions must not hold control bytes (NUL, DEL).
- Trailer fields may not carry framing: ``Content-Length`` or
  ``Transfer-Encoding`` in trailers is a 400 (RFC 9110 section 6.5.1).
- A request target not in origin-form must parse (absolute-form,
  authority-form for CONNECT, ``*``); otherwise 400, the peer's fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from .._uri import Uri
from .._version import Version

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "BodyData",
    "BodyEnd",
    "EngineLimits",
    "H1Engine",
    "H1Event",
    "RequestHead",
    "Sentinel",
]


class Sentinel:
    """A named marker event."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = Sentinel("NEED_DATA")
"""More bytes are needed before the next event."""
PAUSED: Final = Sentinel("PAUSED")
"""The request is complete; call start_next_cycle after answering it."""


class RequestHead:
    """A parsed request line and header fields."""

    __slots__ = (
        "chunked",
        "content_length",
        "expect_continue",
        "has_body",
        "headers",
        "keep_alive",
        "keys",
        "method",
        "target",
        "upgrade",
        "uri",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        version: Version,
        headers: list[tuple[str, str]],
        keys: list[str],
        *,
        content_length: int | None,
        chunked: bool,
        keep_alive: bool,
        expect_continue: bool,
        upgrade: str | None,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        """``(name, value)`` pairs in order and original casing."""
        self.keys = keys
        """Lower-cased names, parallel to :attr:`headers`."""
        self.content_length = content_length
        self.chunked = chunked
        self.has_body = chunked or bool(content_length)
        self.keep_alive = keep_alive
        """Whether the client allows another request on this connection."""
        self.expect_continue = expect_continue
        """The client sent ``Expect: 100-continue`` and waits before sending the body."""
        self.upgrade = upgrade
        """The Upgrade header when the request asks to switch protocols."""
        self.uri: Uri | None = None
        """The parsed target when it is not in origin-form (checked at parse time)."""

    def __repr__(self) -> str:
        return f"RequestHead({self.method} {self.target} {self.version})"


class BodyData:
    """A chunk of the request body."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"BodyData({len(self.data)} bytes)"


class BodyEnd:
    """The end of the request body, with trailer fields of a chunked body."""

    __slots__ = ("trailers",)

    def __init__(self, trailers: list[tuple[str, str]] | None = None) -> None:
        self.trailers = trailers

    def __repr__(self) -> str:
        return f"BodyEnd(trailers={self.trailers!r})"


H1Event = RequestHead | BodyData | BodyEnd | Sentinel
"""Anything :meth:`H1Engine.next_event` returns."""


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """Parser limits (see :class:`~rama_http.server.ServerConfig`)."""

    max_request_line: int = 8 * 1024
    max_header_size: int = 64 * 1024
    max_headers: int = 100


class H1Engine(Protocol):
    """The server side of one HTTP/1.1 connection, without I/O."""

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        ...

    def feed_eof(self) -> None:
        """The peer closed its sending side."""
        ...

    def next_event(self) -> H1Event:
        """The next event, NEED_DATA or PAUSED; raises ProtocolError on bad input.

        At EOF between requests this returns :data:`PAUSED` with
        :attr:`at_eof` set; EOF inside a message raises ProtocolError.
        """
        ...

    @property
    def at_eof(self) -> bool:
        """Whether the peer closed and no buffered bytes remain."""
        ...

    @property
    def head_bytes_pending(self) -> int:
        """Bytes of a request head received so far (0 between requests)."""
        ...

    @property
    def keep_alive(self) -> bool:
        """Whether the connection can carry another request after this one."""
        ...

    def continue_response(self) -> bytes:
        """The ``100 Continue`` interim response."""
        ...

    def response(
        self,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
    ) -> bytes:
        """Serialize a response head, plus the whole body when ``body`` is given.

        With ``body=None`` the body follows through :meth:`data` and
        :meth:`end`. Status 101 is the switching-protocols answer.
        """
        ...

    def data(self, chunk: bytes) -> bytes:
        """Frame a chunk of a streamed response body."""
        ...

    def end(self, trailers: list[tuple[str, str]] | None = None) -> bytes:
        """Finish a streamed response body (trailers only when chunked)."""
        ...

    def start_next_cycle(self) -> None:
        """Both messages are done: get ready to parse the next request."""
        ...

    def switch_protocol(self) -> bytes:
        """After a 101 or a 2xx answer to CONNECT: stop parsing, return unparsed bytes."""
        ...
