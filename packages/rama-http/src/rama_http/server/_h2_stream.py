"""One h2 server stream's record, and the small helpers the server units share."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import anyio

from .._h2._inbound import H2InboundData
from .._headers import Headers

__all__ = ["DATE", "H2ServerStream", "StreamGone", "to_headers"]


class StreamGone(Exception):
    """The stream can no longer be written (reset by the peer or connection closed)."""


class H2ServerStream:
    """One request's stream: its body, what was sent, how to stop its handler."""

    __slots__ = ("body", "cancelled", "head", "headers_sent", "id", "reset_code", "scope", "window")

    def __init__(self, stream_id: int, body: H2InboundData, *, head: bool = False) -> None:
        self.id = stream_id
        self.body = body
        self.head = head  # a HEAD request: answers carry no body
        self.scope: anyio.CancelScope | None = None
        """The scope the handler runs in once it awaited (None while it runs inline)."""
        self.cancelled = False
        self.headers_sent = False
        self.reset_code: int | None = None
        self.window: anyio.Event | None = None

    def cancel(self) -> None:
        """Stop the handler (nobody can read its answer any more)."""
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()

    def wake(self) -> None:
        """Wake a writer waiting for flow-control window."""
        if self.window is not None:
            self.window.set()
            self.window = None


class _DateCache:
    __slots__ = ("second", "value")

    def __init__(self) -> None:
        self.second = -1
        self.value = b""

    def get(self) -> bytes:
        now = int(time.time())  # wall-clock time, for the Date header
        if now != self.second:
            self.second = now
            self.value = email.utils.formatdate(now, usegmt=True).encode()
        return self.value


DATE = _DateCache()
"""The Date header's value, formatted once a second."""


def to_headers(raw: list[tuple[bytes, bytes]] | Any) -> Headers:
    """Decoded h2 fields as :class:`~rama_http.Headers`."""
    return Headers.from_trusted(
        [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in raw]
    )
