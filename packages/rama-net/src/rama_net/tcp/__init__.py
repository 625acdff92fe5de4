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
from .server import ConnectionId, SocketInfo, TcpListener, TcpServerConfig

__all__ = [
    "ConnectError",
    "ConnectRefused",
    "ConnectTimeout",
    "ConnectionId",
    "EstablishedConnection",
    "ResolveError",
    "SocketInfo",
    "TcpConnector",
    "TcpListener",
    "TcpServerConfig",
    "connect_tcp",
]
