"""A TCP echo server with rama-net: every byte a client sends comes back.

Run:  python examples/tcp_echo.py [--listen 127.0.0.1:0] [--backend asyncio|trio]

It prints ``listening on HOST:PORT`` once it accepts connections, then serves
until SIGINT (Ctrl-C) or SIGTERM. Shutdown is graceful: the listener stops
accepting, open connections get ``--grace`` seconds to finish and are then
cancelled, and the process prints ``stopped (REASON)`` and exits 0.

What it shows:

- a stream service is any ``async def serve(ctx, stream)``; ``service_fn``
  turns a plain function into one;
- ``TcpListener.bind`` (port 0 picks a free port) and ``serve`` with limits
  from ``TcpServerConfig``;
- each connection's Context carries a ``SocketInfo`` (peer and local address);
- ``rama_core.Shutdown`` ties the listener to SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import anyio
from anyio.abc import ByteStream

from rama_core import Context, Shutdown, service_fn
from rama_net import SocketInfo, TcpListener, TcpServerConfig

__all__ = ["echo", "main", "run"]

log = logging.getLogger("rama.examples.tcp_echo")


@service_fn
async def echo(ctx: Context, stream: ByteStream) -> None:
    """Send back everything received; half-close once the client has."""
    peer = ctx.require(SocketInfo).peer_addr
    total = 0
    async for chunk in stream:  # ends when the client half-closes (EOF)
        await stream.send(chunk)
        total += len(chunk)
    await stream.send_eof()
    log.info("%s: echoed %d bytes", peer, total)


async def run(listen: str, grace: float) -> None:
    """Serve the echo service on ``listen`` until a signal asks to stop."""
    listener = TcpListener.bind(listen)
    # Limits: at most 1000 clients at once, and a client silent for a minute is dropped.
    config = TcpServerConfig(max_connections=1000, idle_timeout=60)
    async with Shutdown(grace=grace) as shutdown:
        shutdown.spawn(listener.serve, echo, config)  # joins the Shutdown
        # Printed only now: the signal handlers are in place from here on.
        print(f"listening on {listener.local_addr}", flush=True)
    # "forced" when a second signal cut the drain short
    print(f"stopped ({shutdown.outcome})", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="TCP echo server (rama-net example)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: any)")
    parser.add_argument("--grace", type=float, default=5.0, help="drain seconds on shutdown")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each connection")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    anyio.run(run, args.listen, args.grace, backend=args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
