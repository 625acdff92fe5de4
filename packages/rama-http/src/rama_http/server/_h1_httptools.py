"""The httptools HTTP/1.1 engine (the ``rama-http[fast]`` extra).

httptools wraps llhttp, the parser of Node.js, in C. It is callback driven
and parses everything it is fed, so this engine queues the events of each
message and hands them out one at a time, with a cycle marker between
messages: events of a pipelined request stay queued until
:meth:`HttptoolsEngine.start_next_cycle`. llhttp stops by itself after an
upgrade or CONNECT request, which keeps the bytes behind it unparsed for
:meth:`HttptoolsEngine.switch_protocol`.

Limits llhttp does not know (request-line and head size, header count) are
enforced from the callbacks; the message rules shared with the other engines
come from :func:`~rama_http.server.make_head`. Responses are written
by :class:`~rama_http.server.ResponseWriter`.
"""

from __future__ import annotations

from collections import deque

import httptools

from .._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .._version import Version
from ._h1_engine import NEED_DATA, PAUSED, BodyData, BodyEnd, EngineLimits, H1Event, RequestHead
from ._h1_fast import FastEngine
from ._h1_head import make_head
from ._h1_writer import ResponseWriter

__all__ = ["HttptoolsEngine"]


class _Cycle:
    """Queued between two messages."""


_CYCLE = _Cycle()
_UPGRADE_BODY = _Cycle()
"""Queued where the body of an Upgrade request starts (llhttp does not parse it)."""
_QueueItem = RequestHead | BodyData | BodyEnd | _Cycle


class HttptoolsEngine(ResponseWriter):
    """HTTP/1.1 server engine backed by httptools (see module docs)."""

    __slots__ = (
        "_body",
        "_buf",
        "_eof",
        "_error",
        "_events",
        "_fields",
        "_head",
        "_head_bytes",
        "_in_head",
        "_limits",
        "_parser",
        "_partial",
        "_paused",
        "_rest",
        "_switched",
        "_upgrade_at",
        "_url",
    )

    def __init__(self, limits: EngineLimits | None = None) -> None:
        super().__init__()
        self._limits = limits or EngineLimits()
        self._parser = httptools.HttpRequestParser(self)
        self._buf = b""
        self._eof = False
        self._events: deque[_QueueItem] = deque()
        self._fields: list[tuple[str, str]] = []
        self._url = b""
        self._head: RequestHead | None = None
        self._in_head = False
        self._head_bytes = 0
        self._partial = 0
        self._error: ProtocolError | None = None
        self._paused = False
        self._rest: bytes | None = None
        self._switched = False
        self._upgrade_at = False
        self._body: FastEngine | None = None

    # -- llhttp callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_head = True
        self._fields = []
        self._url = b""
        self._head_bytes = 0
        self._partial = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_request_line:
            raise RemoteProtocolError("request line too long", status=414)

    def on_header(self, name: bytes, value: bytes) -> None:
        # After the head, trailer fields of a chunked body arrive here too.
        fields = self._fields
        fields.append((name.decode("latin-1"), value.decode("latin-1")))
        self._head_bytes += len(name) + len(value) + 4
        if len(fields) > self._limits.max_headers:
            raise RemoteProtocolError(
                f"more than {self._limits.max_headers} header fields", status=431
            )

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        major, _, minor = parser.get_http_version().partition(".")
        if major != "1":
            raise RemoteProtocolError(f"HTTP version {major}.{minor} not supported", status=505)
        version = Version.HTTP_10 if minor == "0" else Version.HTTP_11
        fields = self._fields
        keys = [n.lower() for n, _ in fields]
        method = parser.get_method().decode("ascii")
        target = self._url.decode("latin-1")
        line = len(method) + len(target) + 10
        if line > self._limits.max_request_line:
            raise RemoteProtocolError("request line too long", status=414)
        # as check_head_size, from the field bytes on_header counted
        if line + self._head_bytes + 5 > self._limits.max_header_size:
            raise RemoteProtocolError("request head too large", status=431)
        head = make_head(method, target, version, fields, keys)
        self._head = head
        self._fields = []
        self._events.append(head)

    def on_body(self, body: bytes) -> None:
        self._events.append(BodyData(body))

    def on_message_complete(self) -> None:
        head = self._head
        if head is not None and head.has_body and self._parser.should_upgrade():
            # llhttp ends an Upgrade request at its head and stops; its body
            # is read by _read_upgrade_body from the bytes behind it.
            self._events.append(_UPGRADE_BODY)
            return
        self._head = None
        if head is not None and head.has_body:
            trailers = self._fields
            self._events.append(BodyEnd(trailers or None))
        self._fields = []
        self._events.append(_CYCLE)

    # -- receiving -------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        if data:
            self._buf = self._buf + data if self._buf else data

    def feed_eof(self) -> None:
        """The peer closed its sending side."""
        self._eof = True

    @property
    def at_eof(self) -> bool:
        """Whether the peer closed and nothing is left to parse."""
        return self._eof and not self._buf and not self._events and not self._rest

    @property
    def head_bytes_pending(self) -> int:
        """Bytes of an incomplete request head received."""
        if self._paused or self._events:
            return 0
        started = self._head_bytes + self._partial + len(self._url) + 1 if self._in_head else 0
        return started + len(self._buf)

    def next_event(self) -> H1Event:
        """The next event (see :class:`~rama_http.server.H1Engine`)."""
        events = self._events
        while True:
            if events:
                ev = events[0]
                if ev is _CYCLE:
                    self._paused = True
                    return PAUSED
                if ev is _UPGRADE_BODY:
                    return self._read_upgrade_body()
                events.popleft()
                if type(ev) is RequestHead:
                    self._req_method = ev.method
                    self._req_version = ev.version
                    self._req_keep_alive = ev.keep_alive
                    self._keep_alive = ev.keep_alive
                return ev  # type: ignore[return-value]
            if self._error is not None:
                # Raised only once the events parsed before it were handed out.
                raise self._error
            if self._rest is not None or self._switched:
                # llhttp stopped after an upgrade/CONNECT request; the bytes
                # behind it wait for switch_protocol or start_next_cycle.
                return PAUSED
            if not self._buf:
                if self._eof:
                    if self._in_head or self._head is not None:
                        raise RemoteProtocolError("peer closed the connection inside a request")
                    return PAUSED
                return NEED_DATA
            self._parse()

    def _read_upgrade_body(self) -> H1Event:
        body = self._body
        if body is None:
            head = self._head
            assert head is not None
            body = self._body = FastEngine.body_only(head, self._limits)
            rest, self._rest = self._rest or b"", None
            body.feed(rest)
        if self._buf:
            body.feed(self._buf)
            self._buf = b""
        if self._eof:
            body.feed_eof()
        ev = body.next_event()
        if type(ev) is BodyEnd:
            # Done: what follows is the new protocol's (or, when the upgrade is
            # refused, the next request's) and waits as after any upgrade.
            self._rest = body.switch_protocol()
            self._body = None
            self._head = None
            self._events.popleft()
            self._events.append(_CYCLE)
        return ev

    def _parse(self) -> None:
        data = self._buf
        self._buf = b""
        try:
            self._feed_parser(data)
        except ProtocolError as e:
            # Requests parsed before the error in this read are still served
            # (next_event raises it once their events are out); nothing after it.
            self._error = e

    def _feed_parser(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            offset = int(e.args[0]) if e.args else len(data)
            self._rest = data[offset:]
            return
        except httptools.HttpParserCallbackError as e:
            ctx = e.__context__
            if isinstance(ctx, ProtocolError):
                raise ctx from None
            raise RemoteProtocolError(str(ctx or e)) from e
        except httptools.HttpParserError as e:
            # llhttp only knows the versions it can parse; others are well-formed
            # requests of a version we do not support.
            status = 505 if "invalid http version" in str(e).lower() else 400
            raise RemoteProtocolError(str(e), status=status) from e
        if self._in_head:
            # The current head only: its completed fields (counted by on_header)
            # plus the field llhttp is still accumulating, which holds no LF, so
            # it is what follows the last LF of this read (or all of it).
            nl = data.rfind(b"\n")
            self._partial = self._partial + len(data) if nl < 0 else len(data) - nl - 1
            size = self._head_bytes + self._partial + len(self._url)
            if size > self._limits.max_header_size:
                raise RemoteProtocolError("request head too large", status=431)

    def start_next_cycle(self) -> None:
        """Get ready for the next request."""
        events = self._events
        if not events or events[0] is not _CYCLE:
            raise LocalProtocolError("the request body was not fully read")
        events.popleft()
        self._paused = False
        if self._rest is not None:
            # The upgrade/CONNECT was refused: parse what follows with a fresh parser.
            rest, self._rest = self._rest, None
            self._parser = httptools.HttpRequestParser(self)
            self._buf = rest + self._buf

    def switch_protocol(self) -> bytes:
        """Stop parsing and hand back the bytes behind the request."""
        self._switched = True
        self._keep_alive = False
        data = (self._rest or b"") + self._buf
        self._rest = None
        self._buf = b""
        self._events.clear()
        return data
