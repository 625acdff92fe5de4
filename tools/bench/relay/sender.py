"""Benchmark sender: push a file N times over one TCP connection with sendfile.

Usage: python sender.py HOST:PORT FILE REPEAT

The kernel copies straight from the page cache to the socket, so the sender
costs little CPU. After the last byte it half-closes and waits for the peer to
close, so the whole transfer has been acknowledged when it exits.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence

__all__ = ["main", "send_file"]


def send_file(sock: socket.socket, path: str, repeat: int) -> int:
    """Send ``path`` ``repeat`` times; return the byte count."""
    total = 0
    with open(path, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        for _ in range(repeat):
            offset = 0
            while offset < size:
                sent = os.sendfile(sock.fileno(), source.fileno(), offset, size - offset)
                if sent == 0:
                    raise ConnectionError("peer stopped reading")
                offset += sent
            total += size
    return total


def main(argv: Sequence[str] | None = None) -> int:
    """Connect, send, half-close, wait for the peer's close."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", help="host:port")
    parser.add_argument("file")
    parser.add_argument("repeat", type=int)
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.settimeout(None)  # os.sendfile needs a blocking socket; the caller bounds time
        send_file(sock, args.file, args.repeat)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
