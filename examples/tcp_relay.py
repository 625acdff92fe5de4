"""A TCP relay (port forwarder) with rama-net.

Run:  python examples/tcp_relay.py --listen 127.0.0.1:0 --target example.com:80

Every connection accepted on ``--listen`` is connected to ``--target`` and the
bytes are copied both ways until both sides are done (half-closes are passed
on). On Linux, when both ends are plain TCP sockets, the bytes move with
``os.splice`` and never enter Python; ``--no-zero-copy`` forces the portable
copy loop. It prints ``listening on HOST:PORT``, logs one line per connection
to stderr (bytes each way, which path carried them), and stops gracefully on
SIGINT/SIGTERM like ``tcp_echo.py``.

What it shows:

- ``TcpForwarder(target, idle_timeout=, zero_copy=)`` is a ready-made stream
  service; it returns (and puts in the Context) a ``ForwardStats``;
- wrapping a service in another one to add behaviour (here: a log line);
- upstream failures (refused, unresolvable, timeout) are typed
  ``ConnectError``s: they end that one connection, never the listener.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import anyio
from anyio.abc import ByteStream

from rama_core import Context, Shutdown
from rama_net import (
    ConnectError,
    ConnectionId,
    ForwardStats,
    SocketInfo,
    TcpForwarder,
    TcpListener,
    TcpServerConfig,
)

__all__ = ["LoggedRelay", "main", "run"]

log = logging.getLogger("rama.examples.tcp_relay")


class LoggedRelay:
    """A stream service: forward with ``inner`` and log what moved."""

    def __init__(self, inner: TcpForwarder) -> None:
        self.inner = inner

    async def serve(self, ctx: Context, stream: ByteStream) -> ForwardStats | None:
        """Relay one connection."""
        conn, peer = ctx.require(ConnectionId), ctx.require(SocketInfo).peer_addr
        try:
            stats = await self.inner.serve(ctx, stream)
        except ConnectError:
            return None  # TcpForwarder logged it (WARNING on rama.net.forwarder)
        log.info(
            "%s from %s: %d bytes up, %d bytes down, %s, %.3fs%s",
            conn,
            peer,
            stats.left_to_right,
            stats.right_to_left,
            "zero-copy" if stats.zero_copy else "copy loop",
            stats.duration,
            " (idle timeout)" if stats.idle_timed_out else "",
        )
        return stats


async def run(listen: str, target: str, *, zero_copy: bool, idle: float, grace: float) -> None:
    """Relay ``listen`` to ``target`` until a signal asks to stop."""
    listener = TcpListener.bind(listen)
    relay = LoggedRelay(TcpForwarder(target, idle_timeout=idle, zero_copy=zero_copy))
    config = TcpServerConfig(max_connections=5000, idle_timeout=None)  # the forwarder times out
    async with Shutdown(grace=grace) as shutdown:
        shutdown.spawn(listener.serve, relay, config)  # joins the Shutdown
        print(f"listening on {listener.local_addr}", flush=True)
    # "forced" when a second signal cut the drain short
    print(f"stopped ({shutdown.outcome})", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="TCP port forwarder (rama-net example)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: any)")
    parser.add_argument("--target", required=True, help="host:port to connect to")
    parser.add_argument("--no-zero-copy", action="store_true", help="always copy in Python")
    parser.add_argument("--idle-timeout", type=float, default=300.0, help="seconds")
    parser.add_argument("--grace", type=float, default=5.0, help="drain seconds on shutdown")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    anyio.run(
        lambda: run(
            args.listen,
            args.target,
            zero_copy=not args.no_zero_copy,
            idle=args.idle_timeout,
            grace=args.grace,
        ),
        backend=args.backend,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
