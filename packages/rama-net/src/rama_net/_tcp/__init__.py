"""TCP: listener/server and connector."""

from ._connector import (
    ConnectError,
    ConnectRefused,
    ConnectTimeout,
    EstablishedConnection,
    ResolveError,
    TcpConnector,
    connect_tcp,
)
from ._forwarder import TcpForwarder
from ._server import (
    ConnectionId,
    ConnectionTakeover,
    SocketInfo,
    TakeoverHandle,
    TcpListener,
    TcpServerConfig,
    default_max_connections,
)

__all__ = [
    "ConnectError",
    "ConnectRefused",
    "ConnectTimeout",
    "ConnectionId",
    "ConnectionTakeover",
    "EstablishedConnection",
    "ResolveError",
    "SocketInfo",
    "TakeoverHandle",
    "TcpConnector",
    "TcpForwarder",
    "TcpListener",
    "TcpServerConfig",
    "connect_tcp",
    "default_max_connections",
]
