"""The relay benchmark (tools/bench/bench_relay.sh) still runs: a tiny transfer on every path."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.peer

PATHS = [
    "direct",
    "rama zero-copy (asyncio)",
    "rama copy loop (asyncio)",
    "rama zero-copy (trio)",
    "rama copy loop (trio)",
    "haproxy",
    "haproxy tuned+splice",
]


def test_relay_bench_measures_every_path(require_peer: Callable[[str], str]) -> None:
    require_peer("haproxy")
    bench = ROOT / "tools/bench/relay/relay_bench.py"
    proc = subprocess.run(
        [sys.executable, str(bench), "--rounds", "1", "--size-mib", "64", "--timeout", "30"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {}
    for line in proc.stdout.splitlines():
        for name in PATHS:
            if line.startswith(name + "  "):
                rows[name] = line[len(name) :].split()
    assert sorted(rows) == sorted(PATHS), proc.stdout
    for name, cols in rows.items():
        assert float(cols[0]) > 10, f"{name}: {cols}"  # MB/s of a 64 MiB transfer
    assert rows["direct"][2:4] == ["-", "1.00"]  # no CPU column for direct; ratio to itself
    assert rows["haproxy"][-2] == "1.00"
