"""The strict reference HTTP/1.1 engine, on h11.

Adapts :class:`h11.Connection` to
:class:`~rama_http.server.H1Engine`. h11 keeps the original
casing of header names in both directions (``raw_items``), so proxies see
headers as sent. h11 validates the syntax; the framing policy all engines
share (see :mod:`rama_http.server._h1_engine`) is applied on top of it: the
fields come from the raw head bytes through the fast engine's field parser
(h11 unfolds obs-fold, accepts bare LF and merges equal Content-Length
fields), a chunked body is also run through the fast engine's chunk parser
(h11 allows whitespace after a chunk size and control bytes in extensions),
empty lines before a request are skipped, and request-line length (414) and
HTTP major versions other than 1 (505) are checked here.
"""

from __future__ import annotations

import h11

from .._errors import InvalidHeader, LocalProtocolError, ProtocolError, RemoteProtocolError
from .._headers import validate_header
from .._status import reason_phrase
from ._h1_engine import NEED_DATA, PAUSED, BodyData, BodyEnd, EngineLimits, H1Event, RequestHead
from ._h1_fast import FastEngine, parse_head_text
from ._h1_head import check_head_size, check_trailers, make_head

__all__ = ["H11Engine"]


def _str_pairs(items: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in items]


def _skip_empty_lines(data: bytes) -> bytes:
    """``data`` without the empty lines (CRLF or LF) in front of a request line."""
    while data[:2] == b"\r\n" or data[:1] == b"\n":
        data = data[2:] if data[:1] == b"\r" else data[1:]
    return data


class H11Engine:
    """HTTP/1.1 server engine backed by h11 (see module docs)."""

    def __init__(self, limits: EngineLimits | None = None) -> None:
        self._limits = limits or EngineLimits()
        self._conn = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self._limits.max_header_size
        )
        self._pending = 0
        self._line_seen = False
        self._eof = False
        self._skip_end = False
        self._method = ""
        self._switched = False
        self._error: ProtocolError | None = None
        # The raw bytes of the head being received: h11 unfolds obs-fold,
        # accepts bare LF and merges equal Content-Length fields, so the
        # framing policy is applied to these bytes, as the fast engine does.
        self._raw = bytearray()
        # A chunked body is also parsed by the fast engine's rules, so that
        # h11's lenient corners (whitespace after the size, control bytes in
        # extensions, bare LF in trailers) are rejected like elsewhere.
        self._shadow: FastEngine | None = None
        self._held = b""

    # -- receiving -------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        if not data or self._error is not None:
            return
        try:
            self._feed(data)
        except ProtocolError as e:
            self._error = e

    def _feed(self, data: bytes) -> None:
        state = self._conn.their_state
        if state is h11.IDLE:
            if not self._raw:
                data = _skip_empty_lines(self._held + data)
                self._held = b""
                if not data or data == b"\r":
                    self._held = data  # maybe the CR of an empty line
                    return
            self._raw += data
        elif self._shadow is not None:
            self._shadow.feed(data)
        if state is h11.IDLE or state is h11.DONE:
            if not self._line_seen:
                nl = data.find(b"\n")
                if nl >= 0:
                    self._line_seen = True
                    if self._pending + nl > self._limits.max_request_line + 1:
                        raise RemoteProtocolError("request line too long", status=414)
                elif self._pending + len(data) > self._limits.max_request_line:
                    raise RemoteProtocolError("request line too long", status=414)
            self._pending += len(data)
        try:
            self._conn.receive_data(data)
        except h11.RemoteProtocolError as e:
            raise RemoteProtocolError(str(e), status=e.error_status_hint) from e

    def feed_eof(self) -> None:
        """The peer closed its sending side."""
        self._eof = True
        if self._error is not None:
            return
        try:
            self._conn.receive_data(b"")
        except h11.RemoteProtocolError as e:
            self._error = RemoteProtocolError(str(e), status=e.error_status_hint)

    @property
    def at_eof(self) -> bool:
        """Whether the peer closed and nothing is left to parse."""
        return self._eof and not self._conn.trailing_data[0]

    @property
    def head_bytes_pending(self) -> int:
        """Bytes of an incomplete request head received."""
        return self._pending if self._conn.their_state is h11.IDLE else 0

    @property
    def keep_alive(self) -> bool:
        """Whether another request may follow."""
        return self._conn.our_state is not h11.MUST_CLOSE and (
            self._conn.their_state is not h11.MUST_CLOSE
        )

    def next_event(self) -> H1Event:
        """The next event (see H1Engine)."""
        if self._error is not None:
            raise self._error
        if self._shadow is not None:
            self._check_shadow()
        try:
            ev = self._conn.next_event()
        except h11.RemoteProtocolError as e:
            status = e.error_status_hint
            if "Receive buffer too long" in str(e):
                status = 431
            elif self._conn.their_state is h11.IDLE or self._conn.their_state is h11.ERROR:
                status = self._policy_status(status)
            raise RemoteProtocolError(str(e), status=status) from e
        if ev is h11.NEED_DATA:
            if self._eof:
                if self._conn.their_state is h11.IDLE and not self._conn.trailing_data[0]:
                    return PAUSED
                raise RemoteProtocolError("peer closed the connection inside a request")
            return NEED_DATA
        if ev is h11.PAUSED:
            return PAUSED
        t = type(ev)
        if t is h11.Request:
            return self._head(ev)  # type: ignore[arg-type]
        if t is h11.Data:
            return BodyData(bytes(ev.data))  # type: ignore[union-attr]
        if t is h11.EndOfMessage:
            if self._shadow is not None:
                self._check_shadow()
                if self._shadow is not None:
                    raise RemoteProtocolError("malformed chunked body")
            trailers = list(ev.headers.raw_items())  # type: ignore[union-attr]
            return BodyEnd(check_trailers(_str_pairs(trailers)) if trailers else None)
        if t is h11.ConnectionClosed:
            return PAUSED
        raise RemoteProtocolError(f"unexpected h11 event {ev!r}")

    def _policy_status(self, status: int) -> int:
        """The status the shared rules give a head h11 rejected (h11's when they accept it)."""
        raw = bytes(self._raw)
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            return status
        try:
            method, target, version, fields, keys = parse_head_text(
                raw[: end + 2].decode("latin-1"), self._limits
            )
            make_head(method, target, version, fields, keys)
        except RemoteProtocolError as e:
            return e.status
        return status

    def _check_shadow(self) -> None:
        shadow = self._shadow
        assert shadow is not None
        while True:
            ev = shadow.next_event()
            if ev is NEED_DATA:
                return
            if type(ev) is BodyEnd:
                self._shadow = None
                return

    def _head(self, ev: h11.Request) -> RequestHead:
        self._pending = 0
        self._line_seen = False
        major, _, _minor = ev.http_version.partition(b".")
        if major != b"1":
            raise RemoteProtocolError(f"HTTP version {ev.http_version!r} not supported", status=505)
        rest = self._conn.trailing_data[0]
        raw = bytes(self._raw[: len(self._raw) - len(rest)])
        self._raw = bytearray()
        if not raw.endswith(b"\r\n\r\n") or raw.count(b"\n") != raw.count(b"\r\n"):
            raise RemoteProtocolError("bare LF line ending in request head")
        method, target, version, fields, keys = parse_head_text(
            raw[:-2].decode("latin-1"), self._limits
        )
        if len(fields) > self._limits.max_headers:
            raise RemoteProtocolError(
                f"more than {self._limits.max_headers} header fields", status=431
            )
        for n, v in fields:
            # h11 lets control characters through in values; the other engines do not.
            try:
                validate_header(n, v)
            except InvalidHeader as e:
                raise RemoteProtocolError(str(e)) from e
        self._method = method
        if len(method) + len(target) + 10 > self._limits.max_request_line:
            # A pipelined request's line arrived with the one before it, past
            # the incremental check in _feed.
            raise RemoteProtocolError("request line too long", status=414)
        check_head_size(method, target, fields, self._limits.max_header_size)
        head = make_head(method, target, version, fields, keys)
        if head.chunked:
            shadow = self._shadow = FastEngine.body_only(head, self._limits)
            shadow.feed(rest)
        if not head.has_body:
            # h11 reports EndOfMessage right away for bodiless requests; the
            # H1Engine contract says no body events follow, so swallow it.
            end = self._conn.next_event()
            assert type(end) is h11.EndOfMessage, end
        # h11 decides 100-continue itself (it knows whether the body was sent).
        head.expect_continue = self._conn.they_are_waiting_for_100_continue
        return head

    # -- sending ---------------------------------------------------------------------
    def _send(self, event: h11.Event) -> bytes:
        try:
            return self._conn.send(event) or b""
        except h11.LocalProtocolError as e:
            raise LocalProtocolError(str(e)) from e

    def continue_response(self) -> bytes:
        """The ``100 Continue`` interim response."""
        return self._send(h11.InformationalResponse(status_code=100, headers=[]))

    def response(
        self,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
    ) -> bytes:
        """Serialize a response head (and body when complete)."""
        try:
            return self._response(status, reason, headers, body)
        except h11.LocalProtocolError as e:  # h11's events validate their fields
            raise LocalProtocolError(str(e)) from e

    def _response(
        self,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
    ) -> bytes:
        reason_b = (reason or reason_phrase(status) or "Unknown").encode("latin-1")
        hdrs = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        if status < 200:
            return self._send(
                h11.InformationalResponse(status_code=status, headers=hdrs, reason=reason_b)
            )
        connect_ok = self._method == "CONNECT" and 200 <= status < 300
        if (
            body is not None
            and status not in (204, 304)
            and not connect_ok
            and not any(n.lower() in (b"content-length", b"transfer-encoding") for n, _ in hdrs)
        ):
            hdrs.append((b"Content-Length", str(len(body)).encode()))
        out = self._send(h11.Response(status_code=status, headers=hdrs, reason=reason_b))
        if body is None or connect_ok:
            # After a 2xx to CONNECT h11 has switched protocols: no message end.
            return out
        if self._method != "HEAD" and status not in (204, 304) and not connect_ok and body:
            out += self._send(h11.Data(data=body))
        return out + self._send(h11.EndOfMessage())

    def data(self, chunk: bytes) -> bytes:
        """Frame one chunk of a streamed body (h11 drops it for HEAD)."""
        if not chunk:
            return b""
        if self._method == "HEAD":
            return b""
        return self._send(h11.Data(data=chunk))

    def end(self, trailers: list[tuple[str, str]] | None = None) -> bytes:
        """Finish a streamed body."""
        hdrs = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in trailers or []]
        return self._send(h11.EndOfMessage(headers=hdrs))

    def start_next_cycle(self) -> None:
        """Get ready for the next request."""
        try:
            self._conn.start_next_cycle()
        except h11.LocalProtocolError as e:
            raise LocalProtocolError(str(e)) from e
        self._shadow = None
        rest = self._conn.trailing_data[0]
        skipped = _skip_empty_lines(rest)
        if len(skipped) != len(rest) or skipped == b"\r":
            # Empty lines before a request are ignored (RFC 9112 section 2.2);
            # h11 rejects them, so start over on a connection without them.
            self._conn = h11.Connection(
                h11.SERVER, max_incomplete_event_size=self._limits.max_header_size
            )
            rest = skipped
            if rest == b"\r":
                self._held, rest = rest, b""
            try:
                if rest:  # (receive_data(b"") means EOF)
                    self._conn.receive_data(rest)
                if self._eof:
                    self._conn.receive_data(b"")
            except h11.RemoteProtocolError as e:
                self._error = RemoteProtocolError(str(e), status=e.error_status_hint)
        self._raw = bytearray(rest)
        self._pending = len(rest)
        self._line_seen = b"\n" in rest

    def switch_protocol(self) -> bytes:
        """Return bytes after the request once h11 switched protocols."""
        self._switched = True
        return bytes(self._conn.trailing_data[0])
