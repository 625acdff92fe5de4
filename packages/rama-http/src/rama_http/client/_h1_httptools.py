"""The HTTP/1.1 client engine with httptools' (llhttp's) response-head parser.

``HttpClient(http1_engine="httptools")``, with the ``fast`` extra
(``pip install rama-http[fast]``). The status line and header fields are
parsed and validated by llhttp, in C; body framing, keep-alive and the
policy of :mod:`rama_http.client._h1_engine` are the fast engine's (the
conformance suite checks all three engines against each other). A head
llhttp rejects (a CR, LF or NUL inside a value, obs-fold, a bad token, a
malformed or duplicate Content-Length, garbage) is a
:class:`~rama_http.RemoteProtocolError`.
"""

from __future__ import annotations

from typing import Any

from .._errors import RemoteProtocolError
from ._h1_engine import ClientEngineLimits
from ._h1_fast import _STATUS_LINE, FastClientEngine

try:
    import httptools
except ImportError as e:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "http1_engine='httptools' needs httptools: pip install rama-http[fast]"
    ) from e

__all__ = ["HttptoolsClientEngine"]


class _HeadDone(Exception):
    """Raised by the callback at the end of the head: the body is not llhttp's business."""


class _Collector:
    __slots__ = ("complete", "error", "fields", "max_headers", "reason")

    def __init__(self, max_headers: int) -> None:
        self.complete = False
        self.error: RemoteProtocolError | None = None
        self.fields: list[tuple[str, str]] = []
        self.reason = b""
        self.max_headers = max_headers

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes | None) -> None:
        if len(self.fields) >= self.max_headers:
            self.error = RemoteProtocolError("too many header fields", status=502)
            raise self.error
        self.fields.append((name.decode("latin-1"), (value or b"").decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.complete = True
        raise _HeadDone


class HttptoolsClientEngine(FastClientEngine):
    """The fast engine with llhttp parsing each response head (see the module docs)."""

    __slots__ = ()

    def __init__(self, limits: ClientEngineLimits | None = None) -> None:
        super().__init__(limits)

    def _parse_head(self, block: bytes) -> tuple[str, int, str, list[tuple[str, str]]]:
        got = _Collector(self._limits.max_headers)
        parser: Any = httptools.HttpResponseParser(got)
        try:
            parser.feed_data(block + b"\r\n\r\n")
        except httptools.HttpParserCallbackError as e:
            # (the callbacks' exceptions are told apart by what they recorded: the
            # chaining of the error httptools raises is not to be relied on)
            if got.error is not None:
                raise got.error from None
            if not got.complete:
                raise RemoteProtocolError("invalid response head", status=502) from e
        except httptools.HttpParserError as e:
            raise RemoteProtocolError(f"invalid response head: {e}", status=502) from None
        else:  # pragma: no cover - a complete head always ends in the callback
            raise RemoteProtocolError("invalid response head", status=502)
        # the stricter policy of the other engines on top of llhttp's: the status
        # line exactly (llhttp skips leading empty lines and lets control bytes
        # into the reason phrase)
        m = _STATUS_LINE.match(block.partition(b"\r\n")[0])
        if m is None:
            raise RemoteProtocolError("invalid status line", status=502)
        minor, status_b, reason_b = m.groups()
        status = int(status_b)
        if status < 100:
            raise RemoteProtocolError(f"invalid status {status}", status=502)
        fields = got.fields
        for _, value in fields:
            if value != value.strip(" \t"):
                fields = [(n, v.strip(" \t")) for n, v in fields]
                break
        version = "1.1" if minor == b"1" else "1.0"
        return version, status, (reason_b or b"").decode("latin-1"), fields
