"""Limits and settings of the h2 server side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..server.config import ServerConfig

__all__ = ["H2Config"]


@dataclass(frozen=True, slots=True)
class H2Config:
    """What an h2 server connection advertises and enforces.

    Every limit is finite by default: a server must not trust its peers.
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
    keep_alive_timeout: float | None = 60.0
    """Close (with GOAWAY) a connection that had no open stream for this long."""
    max_write_buffer: int = 256 * 1024
    """Outbound bytes queued before response writers wait for the socket."""
    read_size: int = 65536
    """Bytes read from the socket at a time."""

    @classmethod
    def from_server_config(cls, config: ServerConfig) -> H2Config:
        """The h2 settings implied by the shared server configuration."""
        return cls(
            max_concurrent_streams=config.h2_max_concurrent_streams,
            max_header_list_size=config.h2_max_header_list_size,
            initial_window_size=config.h2_initial_window_size,
            max_frame_size=config.h2_max_frame_size,
            keep_alive_timeout=config.keep_alive_timeout,
        )

    def __post_init__(self) -> None:
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
