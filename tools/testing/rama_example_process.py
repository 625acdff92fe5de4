"""Run an example program as a user would: a real process that prints
``listening on HOST:PORT`` once it serves, stopped with SIGINT, exit status 0."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

__all__ = ["start_example", "start_example_lines", "stop_example"]


def _spawn(script: Path, args: tuple[str, ...]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _first_line(proc: subprocess.Popen[str], script: Path, timeout: float) -> str:
    """The ``listening on HOST:PORT`` line, waited for at most ``timeout`` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        pytest.fail(f"{script.name} printed nothing within {timeout}s: {proc.communicate()[1]}")
    first = proc.stdout.readline()
    if not first.startswith("listening on "):
        proc.kill()
        err = proc.communicate()[1]
        pytest.fail(f"{script.name} did not announce its address: {first!r} {err}")
    return first


def start_example(
    script: Path, *args: str, timeout: float = 15.0
) -> tuple[subprocess.Popen[str], int]:
    """Start ``python script args...``; return the process and the port it announced."""
    proc = _spawn(script, args)
    first = _first_line(proc, script, timeout)
    return proc, int(first.rsplit(":", 1)[1])


def start_example_lines(
    script: Path, *args: str, until: str, timeout: float = 15.0
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start an example that announces several ``key value`` lines, ``listening on`` first.

    Reads lines until the one whose key is ``until``; returns the process and
    ``{key: value}`` (``{"listening on": "127.0.0.1:PORT", "ca": "/path", ...}``).
    """
    proc = _spawn(script, args)
    assert proc.stdout is not None
    line = _first_line(proc, script, timeout)  # the later lines are buffered with it
    lines: dict[str, str] = {}
    while True:
        key, _, value = line.strip().rpartition(" ")
        lines[key] = value
        if key == until:
            return proc, lines
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"{script.name} exited: {proc.communicate()[1]}")


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
