"""Limits and timeouts shared by the HTTP/1.1, h2 and auto servers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .._h2._config import H2Config

__all__ = ["Http1Engine", "ServerConfig"]

Http1Engine = Literal["auto", "fast", "h11", "httptools"]
"""Which HTTP/1.1 engine to use: ``h11`` is the strict reference, ``fast`` a tuned
pure-Python parser, ``httptools`` needs the ``rama-http[fast]`` extra; ``auto``
is ``httptools`` when installed, else ``fast``."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Limits of an HTTP server. Every limit has a default; None disables one."""

    # -- HTTP/1.x ----------------------------------------------------------------------
    http1_engine: Http1Engine = "auto"
    """The HTTP/1.1 engine; all engines pass the same conformance suite."""
    max_request_line: int = 8 * 1024
    """Longest request line (method, target, version); longer gets 414."""
    max_header_size: int = 64 * 1024
    """Largest request head (request line plus header fields); larger gets 431."""
    max_headers: int = 100
    """Most header fields in one request; more gets 431."""
    max_body_size: int | None = 16 * 1024 * 1024
    """Largest request body a server accepts; larger gets 413 (None: unlimited)."""
    header_read_timeout: float | None = 10.0
    """Seconds a client has to send a complete request head once it started; 408 after."""
    keep_alive_timeout: float | None = 30.0
    """Seconds an idle HTTP/1.1 keep-alive connection is kept open waiting for the next
    request. An idle h2 connection has its own: ``H2Config.keep_alive_timeout``."""
    body_read_timeout: float | None = 60.0
    """Seconds a client may stay silent while the handler waits for body bytes."""
    write_timeout: float | None = 60.0
    """Seconds a write may wait for a peer that does not read."""
    server_header: str | None = None
    """Value of a Server header added to responses (None: none added)."""
    date_header: bool = True
    """Add a Date header to responses that lack one."""

    # -- h2 ------------------------------------------------------------------------------
    h2: H2Config = field(default_factory=H2Config)
    """Everything h2-specific (SETTINGS, windows, flood allowances, its idle timeout):
    the one place for it. The shared fields above (body size and read timeout,
    write timeout, Date/Server headers, ``shutdown_grace``) apply to h2 too;
    ``keep_alive_timeout`` does not (h2 has ``H2Config.keep_alive_timeout``)."""

    # -- shutdown ------------------------------------------------------------------------
    shutdown_grace: float = 10.0
    """Seconds an in-flight request (HTTP/1.1) or stream (h2) gets to finish once
    shutdown starts; h2 sends GOAWAY at once, then cancels what is left.

    Shutdown precedence, the same for both versions: ``rama_core.Shutdown``'s grace
    is the overall cap; ``rama_net.TcpServerConfig.drain_timeout`` bounds how long
    a listener waits for its connections (None: up to the Shutdown's grace); this
    field bounds each in-flight request. The effective bound is the smallest."""
