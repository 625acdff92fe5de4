"""HTTP servers: HTTP/1.1 (three engines), h2 and the auto server for both.

- :func:`serve` binds (or takes) a listener and serves HTTP/1.1 and h2 on one
  port: ALPN behind TLS, preface detection on cleartext.
  :class:`HttpServer` is the same as a stream service for any listener.
- ``serve_http1(ctx, stream, service, config, initial=b"")`` and
  :func:`serve_h2` serve one connection of a known version;
  :class:`Http1Server` and :class:`H2Server` are the single-version stream
  services.

Limits live in :class:`ServerConfig`, shared by every version; what is h2's
alone lives in :class:`H2Config`, as ``ServerConfig(h2=H2Config(...))``.
"""

from .._h2._config import H2Config
from ._auto import HttpServer, HttpVersionChoice, detect_version, serve
from ._config import Http1Engine, ServerConfig
from ._failure import HandlerFailure, handler_failure
from ._h1_conn import Http1Connection, serve_http1
from ._h1_engines import available_engines
from ._h1_server import Http1Server
from ._h2 import ExtendedConnectProtocol, H2Connection, H2Server, serve_h2

__all__ = [
    "ExtendedConnectProtocol",
    "H2Config",
    "HandlerFailure",
    "H2Connection",
    "H2Server",
    "Http1Connection",
    "Http1Engine",
    "Http1Server",
    "HttpServer",
    "HttpVersionChoice",
    "ServerConfig",
    "available_engines",
    "detect_version",
    "handler_failure",
    "serve",
    "serve_h2",
    "serve_http1",
]
