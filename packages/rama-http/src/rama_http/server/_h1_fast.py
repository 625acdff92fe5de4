"""The fast HTTP/1.1 server engine: a tuned pure-Python parser and serializer.

It implements :class:`~rama_http.server.H1Engine` with the same
rules as the h11 engine, but parses a request head with two regex passes
over the whole header block (validate, then extract) instead of per-line
work, and writes a complete response with one encode. Bodies and chunked
framing are parsed incrementally with every size bounded.
"""

from __future__ import annotations

import re

from .._errors import LocalProtocolError, RemoteProtocolError
from .._version import Version
from ._h1_engine import NEED_DATA, PAUSED, BodyData, BodyEnd, EngineLimits, H1Event, RequestHead
from ._h1_head import check_trailers, make_head
from ._h1_writer import ResponseWriter

__all__ = ["FastEngine", "parse_head_text"]

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VCHAR = r"[^\x00-\x20\x7f]"
# Linear-time field pattern: the value is runs of visible chars joined by
# whitespace, so surrounding whitespace is stripped by the regex itself and
# no backtracking is quadratic.
_FIELD = rf"({_TOKEN}):[ \t]*((?:{_VCHAR}+(?:[ \t]+{_VCHAR}+)*)?)[ \t]*\r\n"
_FIELD_RE = re.compile(_FIELD)
_BLOCK_RE = re.compile(rf"(?:{_FIELD})*")
_REQUEST_LINE_RE = re.compile(rf"({_TOKEN}) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
# The size is followed directly by ';' or CRLF (no whitespace, as llhttp);
# extensions may not hold control characters (NUL, DEL, bare CR/LF).
_CHUNK_SIZE_RE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;[^\x00-\x08\x0a-\x1f\x7f]*)?")
_BARE_LF_RE = re.compile(rb"(?<!\r)\n")
_TE_TAB_RE = re.compile(r"(?im)^transfer-encoding:[^\r\n]*\t\r$")
_MAX_CHUNK_LINE = 4096

_IDLE, _CL_BODY, _CL_END, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _DONE, _SWITCHED = (
    range(9)
)


def _parse_fields(block: str, max_headers: int) -> list[tuple[str, str]]:
    if not _BLOCK_RE.fullmatch(block):
        m = _BLOCK_RE.match(block)
        bad = block[m.end() if m else 0 :].split("\r\n", 1)[0]
        if bad[:1] in (" ", "\t"):
            raise RemoteProtocolError("obsolete line folding is not allowed")
        raise RemoteProtocolError(f"invalid header line {bad[:80]!r}")
    fields: list[tuple[str, str]] = _FIELD_RE.findall(block)
    if len(fields) > max_headers:
        raise RemoteProtocolError(f"more than {max_headers} header fields", status=431)
    return fields


def parse_head_text(
    text: str, limits: EngineLimits
) -> tuple[str, str, Version, list[tuple[str, str]], list[str]]:
    """Split a CRLF-terminated request head into its request line and fields.

    ``text`` is the latin-1 decoded head without its final empty line. The
    h11 engine uses it too, so every engine derives framing from the same
    field values.
    """
    line_end = text.find("\r\n")
    line = text[:line_end]
    if len(line) > limits.max_request_line:
        raise RemoteProtocolError("request line too long", status=414)
    m = _REQUEST_LINE_RE.fullmatch(line)
    if m is None:
        raise RemoteProtocolError(f"invalid request line {line[:100]!r}")
    method, target, major, minor = m.groups()
    if major != "1":
        raise RemoteProtocolError(f"HTTP version {major}.{minor} not supported", status=505)
    version = Version.HTTP_10 if minor == "0" else Version.HTTP_11
    block = text[line_end + 2 :]
    fields = _parse_fields(block, limits.max_headers) if block else []
    keys = [n.lower() for n, _ in fields]
    if "transfer-encoding" in keys and _TE_TAB_RE.search(block):
        # The field pattern strips OWS; llhttp rejects a trailing HTAB here, so all do.
        raise RemoteProtocolError("invalid Transfer-Encoding value")
    return method, target, version, fields, keys


class FastEngine(ResponseWriter):
    """Pure-Python HTTP/1.1 server engine (see module docs)."""

    __slots__ = ("_buf", "_eof", "_limits", "_remaining", "_scan_from", "_state")

    def __init__(self, limits: EngineLimits | None = None) -> None:
        super().__init__()
        self._limits = limits or EngineLimits()
        self._buf: bytes | bytearray = b""
        self._scan_from = 0
        self._state = _IDLE
        self._eof = False
        self._remaining = 0

    # -- receiving -------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        if not data:
            return
        if not self._buf:
            self._buf = data
        else:
            if type(self._buf) is bytes:
                self._buf = bytearray(self._buf)
            self._buf += data

    def feed_eof(self) -> None:
        """The peer closed its sending side."""
        self._eof = True

    @property
    def at_eof(self) -> bool:
        """Whether the peer closed and no buffered bytes remain."""
        return self._eof and not self._buf

    @property
    def head_bytes_pending(self) -> int:
        """Bytes of an incomplete request head buffered."""
        return len(self._buf) if self._state == _IDLE else 0

    def _consume(self, n: int) -> None:
        buf = self._buf
        self._buf = buf[n:] if n < len(buf) else b""
        self._scan_from = 0

    def next_event(self) -> H1Event:
        """The next event (see :class:`~rama_http.server.H1Engine`)."""
        state = self._state
        if state == _IDLE:
            return self._read_head()
        if state == _CL_BODY:
            buf = self._buf
            if not buf:
                if self._eof:
                    raise RemoteProtocolError("peer closed the connection inside a request body")
                return NEED_DATA
            n = self._remaining
            if len(buf) <= n:
                self._buf = b""
                data = bytes(buf)
            else:
                data = bytes(buf[:n])
                self._consume(n)
            self._remaining = n - len(data)
            if self._remaining == 0:
                self._state = _CL_END
            return BodyData(data)
        if state == _CL_END:
            self._state = _DONE
            return BodyEnd()
        if state in (_CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS):
            return self._read_chunked()
        return PAUSED

    def _read_head(self) -> H1Event:
        buf = self._buf
        # Tolerate empty lines before a request (RFC 9112 section 2.2).
        while buf[:2] == b"\r\n" or buf[:1] == b"\n":
            self._consume(2 if buf[:2] == b"\r\n" else 1)
            buf = self._buf
        if not buf:
            return PAUSED if self._eof else NEED_DATA
        limits = self._limits
        end = buf.find(b"\r\n\r\n", self._scan_from)
        if end < 0:
            lf = buf.find(b"\n\n", self._scan_from)
            if lf < 0:
                lf = buf.find(b"\n\r\n", self._scan_from)
            if lf >= 0:
                raise RemoteProtocolError("bare LF line ending in request head")
            if (
                len(buf) > limits.max_request_line
                and buf.find(b"\n", 0, limits.max_request_line + 2) < 0
            ):
                raise RemoteProtocolError("request line too long", status=414)
            if len(buf) > limits.max_header_size:
                raise RemoteProtocolError("request head too large", status=431)
            if self._eof:
                raise RemoteProtocolError("peer closed the connection inside a request head")
            self._scan_from = max(0, len(buf) - 3)
            return NEED_DATA
        if end + 4 > limits.max_header_size:
            raise RemoteProtocolError("request head too large", status=431)
        text = bytes(buf[: end + 2]).decode("latin-1")
        self._consume(end + 4)
        return self._parse_head(text)

    def _parse_head(self, text: str) -> RequestHead:
        method, target, version, fields, keys = parse_head_text(text, self._limits)
        head = make_head(method, target, version, fields, keys)
        keep_alive = head.keep_alive
        self._req_method = method
        self._req_version = version
        self._req_keep_alive = keep_alive
        self._keep_alive = keep_alive
        self._start_body(head)
        return head

    def _start_body(self, head: RequestHead) -> None:
        if head.chunked:
            self._state = _CHUNK_SIZE
        elif head.content_length:
            self._state = _CL_BODY
            self._remaining = head.content_length
        else:
            self._state = _DONE

    @classmethod
    def body_only(cls, head: RequestHead, limits: EngineLimits | None = None) -> FastEngine:
        """An engine placed just after ``head``: it parses that request's body only.

        Feed it the bytes behind the head; it returns :class:`BodyData` events
        and one :class:`BodyEnd`, after which :meth:`switch_protocol` hands back
        what follows the body. Other engines use it for bodies their own parser
        will not read (llhttp stops at an Upgrade request even when a body follows).
        """
        engine = cls(limits)
        engine._start_body(head)
        return engine

    def _read_chunked(self) -> H1Event:
        while True:
            state = self._state
            buf = self._buf
            if state == _CHUNK_SIZE:
                nl = buf.find(b"\r\n", 0, _MAX_CHUNK_LINE)
                if nl < 0:
                    if len(buf) >= _MAX_CHUNK_LINE:
                        raise RemoteProtocolError("chunk size line too long")
                    return self._need()
                m = _CHUNK_SIZE_RE.fullmatch(buf, 0, nl)
                if m is None:
                    raise RemoteProtocolError(f"invalid chunk size line {bytes(buf[:nl])[:40]!r}")
                size = int(m.group(1), 16)
                self._consume(nl + 2)
                if size == 0:
                    self._state = _TRAILERS
                else:
                    self._remaining = size
                    self._state = _CHUNK_DATA
                continue
            if state == _CHUNK_DATA:
                if not buf:
                    return self._need()
                n = self._remaining
                if len(buf) <= n:
                    data = bytes(buf)
                    self._buf = b""
                else:
                    data = bytes(buf[:n])
                    self._consume(n)
                self._remaining = n - len(data)
                if self._remaining == 0:
                    self._state = _CHUNK_CRLF
                return BodyData(data)
            if state == _CHUNK_CRLF:
                if len(buf) < 2:
                    if buf and buf[:1] != b"\r":
                        raise RemoteProtocolError("missing CRLF after chunk data")
                    return self._need()
                if buf[:2] != b"\r\n":
                    raise RemoteProtocolError("missing CRLF after chunk data")
                self._consume(2)
                self._state = _CHUNK_SIZE
                continue
            # trailers
            if buf[:2] == b"\r\n":
                self._consume(2)
                self._state = _DONE
                return BodyEnd()
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if _BARE_LF_RE.search(buf):
                    raise RemoteProtocolError("bare LF line ending in trailers")
                if len(buf) > self._limits.max_header_size:
                    raise RemoteProtocolError("trailers too large", status=431)
                return self._need()
            text = bytes(buf[: end + 2]).decode("latin-1")
            self._consume(end + 4)
            self._state = _DONE
            return BodyEnd(check_trailers(_parse_fields(text, self._limits.max_headers)))

    def _need(self) -> H1Event:
        if self._eof:
            raise RemoteProtocolError("peer closed the connection inside a chunked body")
        return NEED_DATA

    def start_next_cycle(self) -> None:
        """Get ready for the next request."""
        if self._state != _DONE:
            raise LocalProtocolError("the request body was not fully read")
        self._state = _IDLE
        self._scan_from = 0

    def switch_protocol(self) -> bytes:
        """Stop parsing and hand back unparsed bytes."""
        self._state = _SWITCHED
        self._keep_alive = False
        data = bytes(self._buf)
        self._buf = b""
        return data
