"""TCP: listener/server and connector."""

from .connector import (
    ConnectError,
    ConnectRefused,
    ConnectTimeout,
    EstablishedConnection,
    ResolveError,
    TcpConnector,
    connect_tcp,
)
from .forwarder import TcpForwarder
from .server import (
    ConnectionId,
    SocketInfo,
    TcpListener,
    TcpServerConfig,
    default_max_connections,
)

__all__ = [
    "ConnectError",
    "ConnectRefused",
    "ConnectTimeout",
    "ConnectionId",
    "EstablishedConnection",
    "ResolveError",
    "SocketInfo",
    "TcpConnector",
    "TcpForwarder",
    "TcpListener",
    "TcpServerConfig",
    "connect_tcp",
    "default_max_connections",
]
