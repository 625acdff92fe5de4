"""The fast HTTP/1.1 client engine: a pure-Python response parser.

It works on a ``bytearray`` buffer with ``find``/slicing, one pass per head;
the policy is the one in :mod:`rama_http.client._h1_engine` (checked against
the h11 engine by the conformance suite).
"""

from __future__ import annotations

import re
from typing import Final

from .._errors import LocalProtocolError, RemoteProtocolError
from ._h1_engine import (
    NEED_DATA,
    PAUSED,
    BodyData,
    BodyEnd,
    ClientEngineLimits,
    H1ClientEvent,
    InformationalHead,
    ResponseHead,
    connection_close,
    response_framing,
    serialize_head,
)

__all__ = ["FastClientEngine"]

_STATUS_LINE: Final = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?\Z")
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
_CTL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Control bytes other than HTAB, CR and LF (CR/LF are checked as line ends)."""
_CHUNK_SIZE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;[^\x00-\x08\x0a-\x1f\x7f]*)?\Z")
_MAX_CHUNK_LINE: Final = 4096

# parser states
_HEAD, _LENGTH, _CHUNK_SIZE_S, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _CLOSE, _DONE, _END = range(9)


def _parse_fields(block: bytes, limits: ClientEngineLimits) -> list[tuple[str, str]]:
    """Header fields of a block of CRLF-separated lines (no status line, no final CRLF)."""
    if not block:
        return []
    text = block.decode("latin-1")
    n = text.count("\r\n")
    if text.count("\r") != n or text.count("\n") != n:
        raise RemoteProtocolError("bare CR or LF in response head", status=502)
    if _CTL.search(text):
        raise RemoteProtocolError("control character in response head", status=502)
    if n + 1 > limits.max_headers:
        raise RemoteProtocolError("too many header fields", status=502)
    fields: list[tuple[str, str]] = []
    token = _TOKEN
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep or token(name) is None:
            if line[:1] in (" ", "\t"):
                raise RemoteProtocolError("obs-fold in response header", status=502)
            raise RemoteProtocolError("invalid header line in response", status=502)
        fields.append((name, value.strip(" \t")))
    return fields


def _take(buf: bytearray, n: int) -> bytes:
    """The first ``n`` bytes of ``buf`` as bytes, removed from it (one copy)."""
    if n >= len(buf):
        data = bytes(buf)
        buf.clear()
        return data
    with memoryview(buf) as view:
        data = bytes(view[:n])
    del buf[:n]
    return data


class FastClientEngine:
    """The client side of one HTTP/1.1 connection (see :class:`H1ClientEngine`)."""

    __slots__ = (
        "_buf",
        "_chunked_out",
        "_close_after",
        "_direct",
        "_eof",
        "_keep_alive",
        "_limits",
        "_method",
        "_remaining",
        "_state",
        "_trailing",
    )

    def __init__(self, limits: ClientEngineLimits | None = None) -> None:
        self._limits = limits or ClientEngineLimits()
        self._buf = bytearray()
        self._direct = b""
        """A received chunk kept as it is (a body read without copying), before ``_buf``."""
        self._eof = False
        self._state = _DONE
        self._method = "GET"
        self._remaining = 0
        self._keep_alive = True
        self._close_after = False
        self._chunked_out = False
        self._trailing = False

    # -- sending ---------------------------------------------------------------------
    def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
    ) -> bytes:
        """Serialize a request head, plus ``body`` when given."""
        if self._state != _DONE:
            raise LocalProtocolError("a request is already in progress")
        self._method = method
        self._state = _HEAD
        self._close_after = False
        chunked = False
        for name, value in headers:
            n = name.lower()
            if n == "transfer-encoding":
                chunked = True
            elif n == "connection" and "close" in value.lower():
                self._close_after = True
        self._chunked_out = chunked
        out = serialize_head(method, target, headers)
        if body is not None:
            if chunked:
                out += self.data(body) + self.end()
            else:
                out += body
        return out

    def data(self, chunk: bytes) -> bytes:
        """Frame a chunk of a streamed request body."""
        if not self._chunked_out:
            return chunk
        if not chunk:
            return b""
        return b"%x\r\n%b\r\n" % (len(chunk), chunk)

    def end(self, trailers: list[tuple[str, str]] | None = None) -> bytes:
        """Finish a streamed request body."""
        if not self._chunked_out:
            return b""
        tail = "".join(f"{n}: {v}\r\n" for n, v in trailers or ())
        return b"0\r\n" + tail.encode("latin-1") + b"\r\n"

    # -- receiving -------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        state = self._state
        if state == _DONE and data:
            self._trailing = True
        if not self._direct and not self._buf and state in (_LENGTH, _CLOSE, _HEAD):
            self._direct = data  # a head is looked for in it in place (see _head)
            return
        if self._direct:
            self._buf += self._direct
            self._direct = b""
        self._buf += data

    def feed_eof(self) -> None:
        """The server closed its side."""
        self._eof = True

    @property
    def keep_alive(self) -> bool:
        """Whether another request may follow on this connection."""
        return self._keep_alive and not self._eof

    @property
    def trailing_data(self) -> bool:
        """Whether bytes arrived after the complete response."""
        return self._trailing or (self._state == _DONE and bool(self._buf or self._direct))

    def start_next_cycle(self) -> None:
        """Get ready for the next request."""
        if self._state != _DONE:
            raise LocalProtocolError("the response is not complete")

    def next_event(self) -> H1ClientEvent:
        """The next event (see :meth:`H1ClientEngine.next_event`)."""
        state = self._state
        buf = self._buf
        direct = self._direct
        if direct:
            if state == _LENGTH:
                n = self._remaining
                self._direct = b""
                if len(direct) > n:
                    buf += direct[n:]
                    direct = direct[:n]
                self._remaining -= len(direct)
                if self._remaining == 0:
                    self._state = _END
                return BodyData(direct)
            if state == _CLOSE:
                self._direct = b""
                return BodyData(direct)
            if state == _HEAD and not buf:
                return self._head_in(direct)
            buf[:0] = direct
            self._direct = b""
        if state == _LENGTH:
            if buf:
                n = min(self._remaining, len(buf))
                data = _take(buf, n)
                self._remaining -= n
                if self._remaining == 0:
                    self._state = _END  # BodyEnd next
                return BodyData(data)
            if self._remaining == 0:
                self._state = _DONE
                return BodyEnd()
            if self._eof:
                raise RemoteProtocolError(
                    "connection closed before the body was complete", status=502
                )
            return NEED_DATA
        if state == _END:
            self._state = _DONE
            return BodyEnd()
        if state == _HEAD:
            return self._head()
        if state == _CHUNK_DATA:
            if not buf:
                if self._eof:
                    raise RemoteProtocolError("connection closed inside a chunk", status=502)
                return NEED_DATA
            n = min(self._remaining, len(buf))
            data = _take(buf, n)
            self._remaining -= n
            if self._remaining == 0:
                self._state = _CHUNK_CRLF
            return BodyData(data)
        if state == _CHUNK_CRLF:
            if len(buf) < 2:
                if self._eof:
                    raise RemoteProtocolError("connection closed inside a chunk", status=502)
                return NEED_DATA
            if buf[:2] != b"\r\n":
                raise RemoteProtocolError("missing CRLF after chunk data", status=502)
            del buf[:2]
            self._state = _CHUNK_SIZE_S
            state = _CHUNK_SIZE_S
        if state == _CHUNK_SIZE_S:
            i = buf.find(b"\r\n")
            if i < 0:
                if len(buf) > _MAX_CHUNK_LINE:
                    raise RemoteProtocolError("chunk size line too long", status=502)
                if self._eof:
                    raise RemoteProtocolError("connection closed inside a chunked body", status=502)
                return NEED_DATA
            m = _CHUNK_SIZE.match(bytes(buf[:i]))
            if m is None:
                raise RemoteProtocolError("invalid chunk size", status=502)
            del buf[: i + 2]
            size = int(m.group(1), 16)
            if size == 0:
                self._state = _TRAILERS
                return self.next_event()
            self._remaining = size
            self._state = _CHUNK_DATA
            return self.next_event()
        if state == _TRAILERS:
            if buf[:2] == b"\r\n":
                del buf[:2]
                self._state = _DONE
                return BodyEnd()
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                if len(buf) > self._limits.max_header_size:
                    raise RemoteProtocolError("trailer section too large", status=502)
                if self._eof:
                    raise RemoteProtocolError("connection closed inside trailers", status=502)
                return NEED_DATA
            block = bytes(buf[:i])
            del buf[: i + 4]
            fields = _parse_fields(block, self._limits)
            for name, _ in fields:
                if name.lower() in ("content-length", "transfer-encoding"):
                    raise RemoteProtocolError(f"{name} in trailers", status=502)
            self._state = _DONE
            return BodyEnd(fields)
        if state == _CLOSE:
            if buf:
                data = bytes(buf)
                buf.clear()
                return BodyData(data)
            if self._eof:
                self._state = _DONE
                return BodyEnd()
            return NEED_DATA
        return PAUSED

    def _head_in(self, data: bytes) -> H1ClientEvent:
        """A head at the start of a received chunk, parsed without buffering the chunk:
        only the body bytes after it are copied (once), not the whole chunk (three times)."""
        i = data.find(b"\r\n\r\n")
        if i < 0 or i + 4 > self._limits.max_header_size:
            self._buf += data  # an incomplete head (or too large): the buffered path
            self._direct = b""
            return self._head()
        self._direct = b""
        ev = self._framing(*self._parse_head(data[:i]))
        if i + 4 < len(data):
            rest = data[i + 4 :]
            if self._state in (_LENGTH, _CLOSE):
                self._direct = rest  # the body's first bytes, handed out as they are
            else:
                self._buf += rest
        return ev

    def _head(self) -> H1ClientEvent:
        buf = self._buf
        i = buf.find(b"\r\n\r\n")
        if i < 0:
            if len(buf) > self._limits.max_header_size:
                raise RemoteProtocolError("response head too large", status=502)
            if self._eof:
                if buf:
                    raise RemoteProtocolError(
                        "connection closed inside the response head", status=502
                    )
                raise RemoteProtocolError(
                    "server closed the connection without a response", status=502
                )
            return NEED_DATA
        if i + 4 > self._limits.max_header_size:
            raise RemoteProtocolError("response head too large", status=502)
        block = bytes(buf[:i])
        del buf[: i + 4]
        version, status, reason, fields = self._parse_head(block)
        return self._framing(version, status, reason, fields)

    def _parse_head(self, block: bytes) -> tuple[str, int, str, list[tuple[str, str]]]:
        """``(version, status, reason, fields)`` of a head block (without its final CRLFs)."""
        status_line, _, rest = block.partition(b"\r\n")
        m = _STATUS_LINE.match(status_line)
        if m is None:
            raise RemoteProtocolError(f"invalid status line {status_line[:60]!r}", status=502)
        minor, status_b, reason_b = m.groups()
        status = int(status_b)
        if status < 100:
            raise RemoteProtocolError(f"invalid status {status}", status=502)
        reason = (reason_b or b"").decode("latin-1")
        fields = _parse_fields(rest, self._limits)
        return ("1.1" if minor == b"1" else "1.0"), status, reason, fields

    def _framing(
        self, version: str, status: int, reason: str, fields: list[tuple[str, str]]
    ) -> H1ClientEvent:
        """The event for a parsed head; sets up the body state."""
        if status < 200:
            if status == 101:
                raise RemoteProtocolError("unexpected 101 Switching Protocols", status=502)
            return InformationalHead(status, reason, fields)
        keys = [n.lower() for n, _ in fields]
        content_length, chunked, close_delimited = response_framing(
            self._method, status, fields, keys
        )
        keep_alive = not close_delimited and not self._close_after
        if keep_alive and (version == "1.0" or connection_close(fields, keys)):
            keep_alive = False  # HTTP/1.0 closes, as in h11
        self._keep_alive = keep_alive
        has_body = chunked or close_delimited or bool(content_length)
        if chunked:
            self._state = _CHUNK_SIZE_S
        elif close_delimited:
            self._state = _CLOSE
        elif content_length:
            self._state = _LENGTH
            self._remaining = content_length
        else:
            self._state = _END
        return ResponseHead(
            status,
            reason,
            version,
            fields,
            keys,
            content_length=content_length,
            chunked=chunked,
            has_body=has_body,
            keep_alive=keep_alive,
        )
