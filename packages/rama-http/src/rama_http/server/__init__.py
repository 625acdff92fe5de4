"""HTTP servers: HTTP/1.1 (two engines), h2 and auto-detection.

``serve_http1(ctx, stream, service, config, initial=b"")`` serves one
connection; :class:`Http1Server` is the same as a stream service for a TCP
listener. Limits live in :class:`ServerConfig`, shared by every version.
"""

from .config import Http1Engine, ServerConfig
from .h1_conn import Http1Connection, serve_http1
from .h1_engines import available_engines, make_engine
from .h1_server import Http1Server
from .h1_stream import RewindStream

__all__ = [
    "Http1Connection",
    "Http1Engine",
    "Http1Server",
    "RewindStream",
    "ServerConfig",
    "available_engines",
    "make_engine",
    "serve_http1",
]
