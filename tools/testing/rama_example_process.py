"""Run an example program as a user would: a real process that prints
``listening on HOST:PORT`` once it serves, stopped with SIGINT, exit status 0."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

__all__ = ["start_example", "stop_example"]


def start_example(
    script: Path, *args: str, timeout: float = 15.0
) -> tuple[subprocess.Popen[str], int]:
    """Start ``python script args...``; return the process and the port it announced."""
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        pytest.fail(f"{script.name} printed nothing within {timeout}s: {proc.communicate()[1]}")
    first = proc.stdout.readline()
    if not first.startswith("listening on "):
        proc.kill()
        pytest.fail(
            f"{script.name} did not announce its address: {first!r} {proc.communicate()[1]}"
        )
    return proc, int(first.rsplit(":", 1)[1])


def stop_example(proc: subprocess.Popen[str], timeout: float = 10.0) -> tuple[str, str]:
    """SIGINT, then the process must exit 0 within ``timeout``; return (stdout, stderr)."""
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"example did not exit within {timeout}s; stderr:\n{err}")
    assert proc.returncode == 0, err
    return out, err
