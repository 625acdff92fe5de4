"""Benchmark sink: accept connections one at a time and swallow each until EOF.

Usage: python sink.py [--listen 127.0.0.1:0]

Prints ``listening PORT`` once, then one line per connection:
``BYTES SECONDS`` (seconds from accept to EOF). Reading goes into one
preallocated buffer with ``recv_into`` so the sink costs little CPU; runs until
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Sequence

__all__ = ["main", "swallow"]

BUFFER = 4 * 1024 * 1024


def swallow(conn: socket.socket, buffer: memoryview) -> int:
    """Read until EOF, return the byte count."""
    total = 0
    while n := conn.recv_into(buffer):
        total += n
    return total


def main(argv: Sequence[str] | None = None) -> int:
    """Serve connections serially until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:0")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    buffer = memoryview(bytearray(BUFFER))
    with socket.create_server((host, int(port))) as server:
        print(f"listening {server.getsockname()[1]}", flush=True)
        while True:
            conn, _ = server.accept()
            with conn:
                started = time.perf_counter()
                total = swallow(conn, buffer)
                elapsed = time.perf_counter() - started
            print(f"{total} {elapsed:.6f}", flush=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
