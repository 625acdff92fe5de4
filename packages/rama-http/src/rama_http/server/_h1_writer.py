"""Serializing HTTP/1.1 responses, shared by the fast and httptools engines.

:class:`ResponseWriter` is the sending half of an engine: it frames a
response for the request being answered (Content-Length, chunked, or
close-delimited for HTTP/1.0), never writes body bytes for HEAD, 204, 304 or
a 2xx to CONNECT, and decides whether the connection stays open. A parser
subclass sets ``_req_method``, ``_req_version`` and ``_req_keep_alive`` when
it reads a request head.
"""

from __future__ import annotations

from .._errors import LocalProtocolError
from .._status import NO_BODY_STATUSES, reason_phrase
from .._version import Version

__all__ = ["ResponseWriter"]

_W_NONE, _W_CL, _W_CHUNKED, _W_CLOSE, _W_NOBODY = range(5)
_STATUS_LINES: dict[tuple[int, str], str] = {}


def _status_line(status: int, reason: str) -> str:
    key = (status, reason)
    line = _STATUS_LINES.get(key)
    if line is None:
        line = f"HTTP/1.1 {status} {reason}\r\n"
        if len(_STATUS_LINES) < 256:
            _STATUS_LINES[key] = line
    return line


class ResponseWriter:
    """The response side of an HTTP/1.1 server engine (see module docs)."""

    __slots__ = (
        "_keep_alive",
        "_req_keep_alive",
        "_req_method",
        "_req_version",
        "_w_remaining",
        "_wstate",
    )

    def __init__(self) -> None:
        self._req_method = ""
        self._req_version = Version.HTTP_11
        self._req_keep_alive = True
        self._keep_alive = True
        self._wstate = _W_NONE
        self._w_remaining = 0

    @property
    def keep_alive(self) -> bool:
        """Whether another request may follow on this connection."""
        return self._keep_alive

    def continue_response(self) -> bytes:
        """The ``100 Continue`` interim response."""
        return b"HTTP/1.1 100 Continue\r\n\r\n"

    def response(
        self,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
    ) -> bytes:
        """Serialize a response head (and body when complete)."""
        if not reason:
            reason = reason_phrase(status) or "Unknown"
        lines = [_status_line(status, reason)]
        if status < 200:
            lines.extend([f"{n}: {v}\r\n" for n, v in headers])
            lines.append("\r\n")
            return "".join(lines).encode("latin-1")
        has_cl = has_te = close = False
        cl_value = 0
        for n, v in headers:
            # Only three framing names matter; their lengths filter out the rest cheaply.
            if len(n) in (10, 14, 17):
                k = n.lower()
                if k == "content-length":
                    has_cl = True
                    try:
                        cl_value = int(v)
                    except ValueError:
                        raise LocalProtocolError(f"invalid Content-Length {v!r}") from None
                elif k == "transfer-encoding":
                    has_te = True
                elif k == "connection" and "close" in v.lower():
                    close = True
            lines.append(f"{n}: {v}\r\n")
        method = self._req_method
        no_body = status in NO_BODY_STATUSES or (method == "CONNECT" and 200 <= status < 300)
        keep_alive = self._req_keep_alive and not close
        if no_body:
            wstate = _W_NOBODY
        elif has_te:
            wstate = _W_CHUNKED
        elif has_cl:
            wstate = _W_CL
            self._w_remaining = cl_value
        elif body is not None:
            wstate = _W_CL
            self._w_remaining = len(body)
            lines.append(f"Content-Length: {len(body)}\r\n")
        elif self._req_version is Version.HTTP_11:
            wstate = _W_CHUNKED
            lines.append("Transfer-Encoding: chunked\r\n")
        else:
            wstate = _W_CLOSE
            keep_alive = False
        if not keep_alive and not close:
            lines.append("Connection: close\r\n")
        self._keep_alive = keep_alive
        if method == "HEAD":
            wstate = _W_NOBODY
        self._wstate = wstate
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        if body is None:
            return head
        if wstate == _W_CL and len(body) == self._w_remaining:
            self._wstate = _W_NONE
            return head + body if body else head
        return head + self.data(body) + self.end()

    def data(self, chunk: bytes) -> bytes:
        """Frame one chunk of a streamed body."""
        wstate = self._wstate
        if not chunk or wstate == _W_NOBODY:
            return b""
        if wstate == _W_CL:
            if len(chunk) > self._w_remaining:
                self._keep_alive = False
                raise LocalProtocolError("response body longer than its Content-Length")
            self._w_remaining -= len(chunk)
            return chunk
        if wstate == _W_CHUNKED:
            return b"%x\r\n%b\r\n" % (len(chunk), chunk)
        if wstate == _W_CLOSE:
            return chunk
        raise LocalProtocolError("no response body is being sent")

    def end(self, trailers: list[tuple[str, str]] | None = None) -> bytes:
        """Finish a streamed body (trailers are sent only when chunked)."""
        wstate = self._wstate
        self._wstate = _W_NONE
        if wstate == _W_CHUNKED:
            if trailers:
                lines = "".join(f"{n}: {v}\r\n" for n, v in trailers)
                return ("0\r\n" + lines + "\r\n").encode("latin-1")
            return b"0\r\n\r\n"
        if wstate == _W_CL and self._w_remaining:
            self._keep_alive = False
            raise LocalProtocolError(
                f"response body ended {self._w_remaining} bytes short of its Content-Length"
            )
        return b""
