"""Process helpers the proxy and MITM benches share: ports, pinned sessions, RSS, medians."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["free_port", "med", "session_rss_kib", "started"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def session_rss_kib(sid: int) -> int:
    """Summed VmRSS (KiB) of every process in session ``sid`` (the proxy and its children)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[3]) != sid:  # fields after the name: state ppid pgrp session ...
                continue
            for line in Path(entry.path, "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total


@contextmanager
def started(argv: list[str], cpus: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` pinned to ``cpus`` in its own session; stop the whole session on exit."""
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            ["taskset", "-c", cpus, *argv],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        for sig, wait in ((signal.SIGINT, 3.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                # the leader is gone; give its children (same session) a moment too
                deadline = time.monotonic() + wait
                while session_rss_kib(proc.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not session_rss_kib(proc.pid):
                    break
            except subprocess.TimeoutExpired:
                continue


def med(values: list[float] | None) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None
