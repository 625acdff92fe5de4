"""The reference HTTP/1.1 client engine on h11 (client role).

h11 is strict and well tested; the fast engine is checked against it. Header
names keep their casing on the wire (h11 writes what it was given).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import h11

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
    response_framing,
    serialize_head,
)

__all__ = ["H11ClientEngine"]


_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _pairs(headers: Any) -> list[tuple[str, str]]:
    """Fields as str; a control byte in a value (h11 lets some through) is the peer's error."""
    out = []
    for n, v in headers.raw_items():
        if _CTL.search(v):
            raise RemoteProtocolError("control character in a response header", status=502)
        out.append((n.decode("latin-1"), v.decode("latin-1")))
    return out


def _raw_fields(head: bytes) -> list[tuple[str, str]]:
    """The field lines of a validated head, name and value exactly as received (OWS trimmed)."""
    out = []
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        out.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return out


class H11ClientEngine:
    """The client side of one HTTP/1.1 connection on h11 (see :class:`H1ClientEngine`)."""

    __slots__ = (
        "_conn",
        "_final_head",
        "_head_scan",
        "_limits",
        "_method",
        "_scanning",
        "_trailing",
    )

    def __init__(self, limits: ClientEngineLimits | None = None) -> None:
        self._limits = limits or ClientEngineLimits()
        self._conn = h11.Connection(
            h11.CLIENT, max_incomplete_event_size=self._limits.max_header_size
        )
        self._method = "GET"
        self._trailing = False
        self._head_scan = b""
        self._final_head = b""
        self._scanning = True

    def _scan_heads(self, data: bytes) -> None:
        """Reject bare CR/LF and obs-fold in a response head (h11 accepts and unfolds them)."""
        buf = self._head_scan + data
        while self._scanning:
            end = buf.find(b"\r\n\r\n")
            head = buf if end < 0 else buf[:end]
            if len(head) + 4 > self._limits.max_header_size:
                raise RemoteProtocolError("response head too large", status=502)
            lines = head.replace(b"\r\n", b"")
            if lines.translate(None, b"\r\n") != lines and (end >= 0 or not head.endswith(b"\r")):
                raise RemoteProtocolError("bare CR or LF in response head", status=502)
            if b"\r\n " in head or b"\r\n\t" in head:
                raise RemoteProtocolError("obs-fold in response head", status=502)
            if end < 0:
                self._head_scan = buf
                return
            interim = buf[9:10] == b"1"
            buf = buf[end + 4 :]
            if not interim:
                self._scanning = False
                self._final_head = head
        self._head_scan = b""

    def _send(self, event: Any) -> bytes:
        try:
            return self._conn.send(event) or b""
        except h11.LocalProtocolError as e:
            raise LocalProtocolError(str(e)) from e

    def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
    ) -> bytes:
        """Serialize a request head, plus ``body`` when given."""
        self._method = method
        # h11 tracks the state; the bytes are ours (h11 would move Host first)
        self._send(h11.Request(method=method, target=target, headers=headers))
        out = serialize_head(method, target, headers)
        if body is not None:
            if body:
                out += self._send(h11.Data(data=body))
            out += self._send(h11.EndOfMessage())
        return out

    def data(self, chunk: bytes) -> bytes:
        """Frame a chunk of a streamed request body."""
        if not chunk:
            return b""
        return self._send(h11.Data(data=chunk))

    def end(self, trailers: list[tuple[str, str]] | None = None) -> bytes:
        """Finish a streamed request body."""
        return self._send(h11.EndOfMessage(headers=trailers or []))

    def feed(self, data: bytes) -> None:
        """Add received bytes (an empty chunk is nothing, not EOF as in h11)."""
        if not data:
            return
        if self._conn.their_state is h11.DONE:
            self._trailing = True
        if self._scanning:
            self._scan_heads(data)
        try:
            self._conn.receive_data(data)
        except RuntimeError as e:
            raise RemoteProtocolError(str(e), status=502) from e

    def feed_eof(self) -> None:
        """The server closed its side."""
        with contextlib.suppress(RuntimeError):
            self._conn.receive_data(b"")

    @property
    def keep_alive(self) -> bool:
        """Whether another request may follow on this connection."""
        c = self._conn
        return c.our_state is h11.DONE and c.their_state is h11.DONE

    @property
    def trailing_data(self) -> bool:
        """Whether bytes arrived after the complete response."""
        return self._trailing or bool(self._conn.trailing_data[0]) or self._conn.trailing_data[1]

    def start_next_cycle(self) -> None:
        """Get ready for the next request."""
        try:
            self._conn.start_next_cycle()
            self._scanning = True
            self._head_scan = b""
        except h11.LocalProtocolError as e:
            raise LocalProtocolError(str(e)) from e

    def next_event(self) -> H1ClientEvent:
        """The next event (see :meth:`H1ClientEngine.next_event`)."""
        try:
            ev = self._conn.next_event()
        except h11.RemoteProtocolError as e:
            raise RemoteProtocolError(f"invalid response: {e}", status=502) from e
        if ev is h11.NEED_DATA:
            if self._conn.their_state is h11.DONE:
                return PAUSED
            return NEED_DATA
        if ev is h11.PAUSED:
            return PAUSED
        if isinstance(ev, h11.Data):
            return BodyData(bytes(ev.data))
        if isinstance(ev, h11.EndOfMessage):
            trailers = _pairs(ev.headers)
            return BodyEnd(trailers or None)
        if isinstance(ev, h11.InformationalResponse | h11.Response):
            if _CTL.search(ev.reason):
                raise RemoteProtocolError("control character in the reason phrase", status=502)
            if ev.http_version not in (b"1.1", b"1.0"):
                raise RemoteProtocolError("not an HTTP/1.x response", status=502)
            if len(ev.headers) > self._limits.max_headers:
                raise RemoteProtocolError("too many header fields", status=502)
        if isinstance(ev, h11.InformationalResponse):
            if ev.status_code == 101:
                raise RemoteProtocolError("unexpected 101 Switching Protocols", status=502)
            return InformationalHead(
                ev.status_code, ev.reason.decode("latin-1"), _pairs(ev.headers)
            )
        if isinstance(ev, h11.Response):
            # h11 lowercases some values (Transfer-Encoding); the fields as received
            # come from the head bytes it validated.
            _pairs(ev.headers)
            fields = _raw_fields(self._final_head)
            keys = [n.lower() for n, _ in fields]
            content_length, chunked, close_delimited = response_framing(
                self._method, ev.status_code, fields, keys
            )
            return ResponseHead(
                ev.status_code,
                ev.reason.decode("latin-1"),
                ev.http_version.decode("ascii"),
                fields,
                keys,
                content_length=content_length,
                chunked=chunked,
                has_body=chunked or close_delimited or bool(content_length),
                keep_alive=self._conn._cstate.keep_alive and not close_delimited,
            )
        if isinstance(ev, h11.ConnectionClosed):
            raise RemoteProtocolError("server closed the connection without a response", status=502)
        raise RemoteProtocolError(
            f"unexpected event {type(ev).__name__}", status=502
        )  # pragma: no cover
