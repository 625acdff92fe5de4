"""Every ```python block in the READMEs is a complete program that runs as written.

A block runs in a fresh interpreter. One that ends by itself must exit 0. One that
serves (it names a ``127.0.0.1:PORT`` address) must start listening there, answer the
``# try: <command>`` lines it shows the reader (run here as written, with real
clients such as curl), and then drain on Ctrl-C: SIGINT ends it with exit 0 and no
traceback.
"""

from __future__ import annotations

import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
READMES = [ROOT / "README.md", *sorted((ROOT / "packages").glob("*/README.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
ADDRESS = re.compile(r"127\.0\.0\.1:(\d{2,5})")
TRY = re.compile(r"^#\s*try:\s*(.+)$", re.M)
RUN_TIMEOUT = 30.0


def _snippets() -> list[Any]:
    params = []
    for readme in READMES:
        text = readme.read_text()
        for n, match in enumerate(BLOCK.finditer(text), start=1):
            line = text[: match.start()].count("\n") + 2
            rel = readme.relative_to(ROOT)
            params.append(pytest.param(match.group(1), id=f"{rel}:{line}#{n}"))
    return params


def _wait_listening(port: int, proc: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"server snippet exited ({proc.returncode}) before listening:\n{err}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"server snippet did not listen on 127.0.0.1:{port} within {timeout}s")


@pytest.mark.parametrize("code", _snippets())
def test_readme_snippet_runs(code: str, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(code)
    ports = {int(p) for p in ADDRESS.findall(code)}
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if not ports:
            _, err = proc.communicate(timeout=RUN_TIMEOUT)
            assert proc.returncode == 0, f"snippet failed:\n{err}"
            return
        for port in ports:
            _wait_listening(port, proc, RUN_TIMEOUT)
        for command in TRY.findall(code):
            tried = subprocess.run(
                shlex.split(command), capture_output=True, text=True, timeout=RUN_TIMEOUT
            )
            assert tried.returncode == 0, f"{command!r} failed: {tried.stderr}"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=RUN_TIMEOUT)
        assert proc.returncode == 0, f"server snippet did not exit cleanly on SIGINT:\n{err}"
        assert "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
