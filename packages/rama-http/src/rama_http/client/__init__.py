"""rama_http.client: the HTTP client of rama.

::

    from rama_http.client import HttpClient

    async with HttpClient() as client:
        r = await client.get("https://example.com/", headers=[("X-B", "2"), ("x-a", "1")])
        print(r.status, await r.read())

Requests go out exactly as given (header order and casing); the client adds
only Host and body framing, and what an argument asks for. The stack is made
of Services usable alone: :class:`HttpConnector` (TCP -> :class:`ProxyConnector`
-> TLS -> HTTP connection by ALPN), :class:`ConnectionPool`,
:class:`PoolTransport`, and the layers :class:`FollowRedirects`,
:class:`Retry`, :class:`Decompress`, :class:`CookieLayer`. HTTP/1.1 runs on a
sans-IO engine (``http1_engine="fast"`` or the strict ``"h11"``).
:class:`HttpxTransport` lets ``httpx.AsyncClient`` send through it.
"""

from typing import TYPE_CHECKING, Any

from ._client import BasicAuth, BearerAuth, HttpClient, Limits
from ._connect import (
    ALPN_PROTOCOLS,
    HttpConnector,
    HttpConnectProxyConnector,
    PoolKey,
    ProxyConfig,
    ProxyConnector,
    ProxyRequest,
)
from ._connection import ClientConnection, Http1Connection
from ._env_proxy import EnvProxies, NoProxy
from ._errors import (
    ConnectError,
    ConnectTimeout,
    HTTPStatusError,
    NetworkError,
    PoolTimeout,
    ProxyError,
    ReadError,
    ReadTimeout,
    TimeoutException,
    TooManyRedirects,
    TotalTimeout,
    WriteError,
    WriteTimeout,
)
from ._h1_engine import ClientEngineLimits, H1ClientEngine
from ._h2_connection import (
    H2ClientLimits,
    H2ClientSettings,
    H2FloodError,
    H2PriorityFrame,
    Http2Connection,
    StreamResetError,
)
from ._layers import (
    CookieJar,
    CookieLayer,
    DecodingError,
    Decompress,
    FollowRedirects,
    RedirectHistory,
    Retry,
    RetryPolicy,
)
from ._pool import ConnectionPool, HostStats, PoolStats
from ._response import ClientResponse
from ._timeout import Timeout
from ._transport import PoolTransport, ProxyChooser, ProxyMode

if TYPE_CHECKING:
    from ._httpx import HttpxTransport


def __getattr__(name: str) -> Any:
    # httpx is an optional extra: import the transport only when asked for
    if name == "HttpxTransport":
        from ._httpx import HttpxTransport

        return HttpxTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALPN_PROTOCOLS",
    "BasicAuth",
    "BearerAuth",
    "ClientConnection",
    "ClientEngineLimits",
    "ClientResponse",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionPool",
    "CookieJar",
    "CookieLayer",
    "DecodingError",
    "EnvProxies",
    "Decompress",
    "FollowRedirects",
    "H1ClientEngine",
    "H2ClientLimits",
    "H2ClientSettings",
    "H2FloodError",
    "H2PriorityFrame",
    "HTTPStatusError",
    "HostStats",
    "Http1Connection",
    "Http2Connection",
    "HttpClient",
    "HttpConnectProxyConnector",
    "HttpConnector",
    "HttpxTransport",
    "Limits",
    "NetworkError",
    "NoProxy",
    "PoolKey",
    "PoolStats",
    "PoolTimeout",
    "PoolTransport",
    "ProxyConfig",
    "ProxyChooser",
    "ProxyConnector",
    "ProxyError",
    "ProxyMode",
    "ProxyRequest",
    "ReadError",
    "ReadTimeout",
    "RedirectHistory",
    "Retry",
    "RetryPolicy",
    "StreamResetError",
    "Timeout",
    "TimeoutException",
    "TooManyRedirects",
    "TotalTimeout",
    "WriteError",
    "WriteTimeout",
]
