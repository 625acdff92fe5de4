"""The READMEs' server snippet, run as written: Ctrl-C (SIGINT) drains and exits 0, no traceback."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", ROOT / "packages/rama-core/README.md"]
ADDRESS = '"127.0.0.1:8080"'


def server_snippet(readme: Path) -> str:
    """The first python block of ``readme`` that serves (``await serve(``)."""
    for block in re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S):
        if "await serve(" in block:
            return str(block)
    raise AssertionError(f"{readme} has no server snippet")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    return got


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_server_exits_cleanly_on_sigint(readme: Path, backend: str) -> None:
    code = server_snippet(readme)
    assert ADDRESS in code
    assert "anyio.run(main)" in code
    port = free_port()
    code = code.replace(ADDRESS, f'"127.0.0.1:{port}"')
    code = code.replace("anyio.run(main)", f"anyio.run(main, backend={backend!r})")
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 15
        while True:  # listening means the signal handlers are in place (Shutdown came first)
            try:
                answer = get(port)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the snippet did not start: {proc.communicate()}")
                time.sleep(0.05)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert answer.endswith(b"hello\n"), answer
        # a client holding an idle keep-alive connection must not keep it from exiting
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
            pytest.fail(f"still running 10 s after SIGINT; stderr:\n{err}")
        idle.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in err, err
    assert "KeyboardInterrupt" not in err, err
    assert proc.returncode == 0, err
