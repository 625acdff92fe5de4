"""Limits and settings of the h2 server side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["H2Config"]


@dataclass(frozen=True, slots=True)
class H2Config:
    """What an h2 server connection advertises and enforces.

    Every limit is finite by default: a server must not trust its peers. It
    lives in one place, ``ServerConfig(h2=H2Config(...))``, and is exported as
    ``rama_http.H2Config`` and ``rama_http.server.H2Config``. The shared
    :class:`~rama_http.server.ServerConfig` fields that are not version-specific
    (``max_body_size``, ``body_read_timeout``, ``write_timeout``, ``date_header``,
    ``server_header``, ``shutdown_grace``) apply to h2 as they do to HTTP/1.1.

    On shutdown an h2 connection sends GOAWAY at once (no new streams) and gives
    its in-flight streams ``ServerConfig.shutdown_grace``; the Shutdown's own
    grace and ``TcpServerConfig.drain_timeout`` can only shorten that (the
    smallest of the three wins, see :attr:`ServerConfig.shutdown_grace`).
    """

    max_concurrent_streams: int = 100
    """SETTINGS_MAX_CONCURRENT_STREAMS; a stream opened past it is refused with
    RST_STREAM(REFUSED_STREAM) and the connection goes on (RFC 9113 section 5.1.2)."""
    max_header_list_size: int = 64 * 1024
    """SETTINGS_MAX_HEADER_LIST_SIZE (decoded bytes, RFC 9113 accounting); larger
    header blocks end the connection with ENHANCE_YOUR_CALM."""
    initial_window_size: int = 1024 * 1024
    """SETTINGS_INITIAL_WINDOW_SIZE: how much request body a stream may buffer unread."""
    connection_window_size: int = 4 * 1024 * 1024
    """The connection-level receive window (raised from 65535 with a WINDOW_UPDATE)."""
    max_frame_size: int = 16384
    """SETTINGS_MAX_FRAME_SIZE we accept."""
    enable_connect_protocol: bool = True
    """Advertise RFC 8441 extended CONNECT (``:protocol``, e.g. WebSocket over h2)."""
    keep_alive_timeout: float | None = 30.0
    """Close (with GOAWAY) a connection that had no open stream for this long.

    Its own knob, not ``ServerConfig.keep_alive_timeout`` (HTTP/1.1's wait for the
    next request): an idle h2 connection may deserve a different bound than an idle
    HTTP/1.1 one (browsers keep one h2 connection per origin). The default is the
    same 30 s (nginx: ``keepalive_timeout`` 75 s for both)."""
    max_write_buffer: int = 256 * 1024
    """Bytes waiting to be written (queued, or handed to a socket that has not taken
    them yet) above which the connection stops reading from the peer; response
    writers wait while more than this is queued behind the write in progress. A peer
    that makes the server write (PING, SETTINGS, ...) without reading cannot grow the
    buffer past about this plus one read's worth of answers; if the socket takes
    nothing for ``ServerConfig.write_timeout`` the connection ends."""
    max_queued_response_bytes: int = 4 * 1024 * 1024
    """Response bytes that streams may hold, per connection, while they wait for the
    peer to open its flow-control window. The first waiting stream may always wait
    (up to ``ServerConfig.write_timeout``); a stream whose bytes go past this is
    reset (RST_STREAM(CANCEL)) once the peer opened no window at all for a second.
    A client that advertises a zero window (or never returns any) cannot pin
    ``max_concurrent_streams`` answers in memory for the write timeout; a slow
    client that keeps opening windows is not affected."""
    flood_window: float = 10.0
    """Seconds over which the ``max_pings``, ``max_settings``, ``max_resets`` and
    ``max_idle_frames`` allowances are counted (a fixed window, restarted when it
    runs out). All are checked per frame."""
    max_pings: int | None = 1000
    """PING frames (each answered with a PING ACK) allowed per ``flood_window``; past it
    the connection ends with GOAWAY(ENHANCE_YOUR_CALM). None: no limit."""
    max_settings: int | None = 100
    """SETTINGS frames (each answered with a SETTINGS ACK) allowed per ``flood_window``;
    past it GOAWAY(ENHANCE_YOUR_CALM). None: no limit."""
    max_resets: int | None = 200
    """Streams reset while in progress (by the client, or by h2 for a malformed
    request) or refused (over ``max_concurrent_streams``, or after GOAWAY) allowed per
    ``flood_window``; past it GOAWAY(ENHANCE_YOUR_CALM). This stops the "rapid reset"
    attack (CVE-2023-44487), where each opened-and-reset stream starts a handler the
    concurrency limit never sees. None: no limit."""
    max_idle_frames: int | None = 1000
    """Frames that make no progress allowed per ``flood_window``: empty DATA, a
    WINDOW_UPDATE for window the server never used (``+1`` floods), unknown frame
    types, RST_STREAM/HEADERS/small DATA for streams no longer open (each answered
    with RST_STREAM), unsolicited ACKs. Each stream the client opens forgives two.
    Past it GOAWAY(ENHANCE_YOUR_CALM) (CVE-2019-9518 class; nginx: its "http2 flood
    detected" byte heuristic). PRIORITY frames have their own budget, tied to
    ``max_concurrent_streams`` as in nginx: ``max(100, max_concurrent_streams)``
    plus ``max_concurrent_streams`` per stream opened (CVE-2019-9513 class).
    None: no limit."""
    read_size: int = 65536
    """Bytes read from the socket at a time."""
    engine: Literal["fast", "h2"] = "fast"
    """Which h2 implementation serves the connection: ``"fast"`` (the default),
    rama's own sans-IO engine (:mod:`rama_http._h2._engine`), or ``"h2"``, the
    ``h2`` library, kept as the strict reference. Both pass the same server suite
    and enforce every limit below alike."""

    def __post_init__(self) -> None:
        if self.engine not in ("fast", "h2"):
            raise ValueError('engine must be "fast" or "h2"')
        if not 1 <= self.max_concurrent_streams <= 2**31 - 1:
            raise ValueError("max_concurrent_streams must be in 1..2**31-1")
        if not 65535 <= self.connection_window_size <= 2**31 - 1:
            raise ValueError("connection_window_size must be in 65535..2**31-1")
        if not 0 <= self.initial_window_size <= 2**31 - 1:
            raise ValueError("initial_window_size must be in 0..2**31-1")
        if not 16384 <= self.max_frame_size <= 2**24 - 1:
            raise ValueError("max_frame_size must be in 16384..2**24-1")
        if self.max_header_list_size < 1024:
            raise ValueError("max_header_list_size must be at least 1024")
        if self.max_write_buffer < 1:
            raise ValueError("max_write_buffer must be positive")
        if self.max_queued_response_bytes < 1:
            raise ValueError("max_queued_response_bytes must be positive")
        if not self.flood_window > 0:
            raise ValueError("flood_window must be positive")
        for name in ("max_pings", "max_settings", "max_resets", "max_idle_frames"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None for no limit)")
