"""WebSocket echo client for tools/bench/bench_asgi.sh: messages per second.

Usage: ws_client.py URL SECONDS [CONNECTIONS]
Opens CONNECTIONS (default 4) python-websockets connections and, on each,
sends a 32-byte text message and waits for its echo, in a loop, for SECONDS;
prints the total echoed messages per second. Bounded by SECONDS (+ a 5 s
connect timeout).
"""

from __future__ import annotations

import asyncio
import sys
import time

import uvloop
from websockets.asyncio.client import connect

__all__ = ["main"]


async def one(url: str, deadline: float) -> int:
    """Echo loop on one connection until the deadline; returns messages echoed."""
    n = 0
    message = "x" * 32
    async with connect(url, open_timeout=5, compression=None, max_queue=None) as ws:
        while time.monotonic() < deadline:
            await ws.send(message)
            await ws.recv()
            n += 1
    return n


async def run(url: str, seconds: float, conns: int) -> float:
    """Total echoes per second over ``conns`` connections."""
    start = time.monotonic()
    counts = await asyncio.gather(*(one(url, start + seconds) for _ in range(conns)))
    return sum(counts) / (time.monotonic() - start)


def main() -> None:
    """Parse argv, run, print messages/s."""
    url, seconds = sys.argv[1], float(sys.argv[2])
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    print(int(uvloop.run(run(url, seconds, conns))))


if __name__ == "__main__":
    main()
