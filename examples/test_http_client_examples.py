"""Run the HTTP client examples as a user would (each starts its own local server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def _run(script: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, str(HERE / script)], capture_output=True, text=True, timeout=60, check=True
    )
    return proc.stdout.splitlines()


def test_http_client_get_example() -> None:
    lines = _run("http_client_get.py")
    assert lines[0] == "status: 200 OK"
    received = [line for line in lines if line.startswith("received: ")]
    assert received[0] == "received: GET /hello?x=1"
    assert received[1].startswith("received: Host: 127.0.0.1:")
    assert received[2:] == ["received: X-B: 2", "received: x-a: 1"]
    assert any(line.startswith("streamed: 200, ") for line in lines)
    assert lines[-1] == "pool: 1 idle connection(s)"


def test_httpx_transport_example() -> None:
    lines = _run("httpx_transport.py")
    assert lines == [
        "status: 200 HTTP/1.1",
        "redirects: [302]",
        "body: hello from /hello",
        "pool: 1 idle connection(s)",
        "error: httpx.ConnectError (ConnectError in rama)",
    ]
