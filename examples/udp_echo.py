"""A UDP echo server with rama-net: every datagram is sent back to its sender.

Run:  python examples/udp_echo.py [--listen 127.0.0.1:0] [--backend asyncio|trio]

It prints ``listening on HOST:PORT`` and serves until SIGINT/SIGTERM, then
prints ``stopped (REASON)`` and exits 0.

What it shows:

- a datagram service takes ``(ctx, Datagram)`` and returns the reply payload,
  or ``None`` to send nothing (here: empty datagrams are ignored);
- UDP has no backpressure, so ``UdpServerConfig(max_in_flight=)`` bounds how
  many datagrams are served at once and the listener counts what it drops.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import anyio

from rama_core import Context, Shutdown, service_fn
from rama_net import Datagram, UdpListener, UdpServerConfig

__all__ = ["echo", "main", "run"]


@service_fn
async def echo(ctx: Context, datagram: Datagram) -> bytes | None:
    """Reply with the same payload."""
    return datagram.payload or None


async def run(listen: str) -> None:
    """Serve the echo service on ``listen`` until a signal asks to stop."""
    listener = await UdpListener.bind(listen)
    async with Shutdown(grace=2) as shutdown:
        shutdown.spawn(listener.serve, echo, UdpServerConfig(max_in_flight=256))
        print(f"listening on {listener.local_addr}", flush=True)
    # A second signal cancels at once, without a drain report.
    reason = shutdown.report.reason if shutdown.report else "forced"
    print(f"stopped ({reason}); dropped {listener.dropped}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="UDP echo server (rama-net example)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: any)")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args(argv)
    anyio.run(run, args.listen, backend=args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
