"""A stream service that relays each connection to a fixed target (a port forwarder)."""

from __future__ import annotations

import logging

from anyio.abc import ByteStream

from rama_core import Context

from .._address import Authority
from .._forward import ForwardStats, forward
from ._connector import ConnectError, TcpConnector
from ._server import ConnectionId, SocketInfo

__all__ = ["TcpForwarder"]

_log = logging.getLogger("rama.net.forwarder")


class TcpForwarder:
    """Connects to ``target`` for every incoming stream and forwards both ways.

    The upstream connection's errors (resolve, refused, timeout) are logged
    at WARNING on ``rama.net.forwarder`` (target, connection and peer; no
    traceback: an unreachable upstream is an event, not a bug) and propagate
    as :class:`~rama_net.ConnectError`; the incoming stream is then closed
    by the listener. The returned :class:`ForwardStats` is also put in the
    Context.
    """

    def __init__(
        self,
        target: Authority | str,
        *,
        connector: TcpConnector | None = None,
        idle_timeout: float | None = 300.0,
        zero_copy: bool = True,
    ) -> None:
        self.target = target if isinstance(target, Authority) else Authority.parse(target)
        self.connector = connector or TcpConnector()
        self.idle_timeout = idle_timeout
        self.zero_copy = zero_copy

    async def serve(self, ctx: Context, stream: ByteStream) -> ForwardStats:
        """Relay ``stream`` to the target until both sides are done."""
        try:
            upstream = await self.connector.serve(ctx, self.target)
        except ConnectError as exc:
            info = ctx.get(SocketInfo)
            _log.warning(
                "upstream %s unreachable for %s from %s: %s",
                self.target,
                ctx.get(ConnectionId) or "connection",
                info.peer_addr if info is not None else "?",
                exc,
            )
            raise
        stats = await forward(
            stream, upstream.stream, idle_timeout=self.idle_timeout, zero_copy=self.zero_copy
        )
        ctx.insert(stats)
        return stats
