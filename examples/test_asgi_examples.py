"""Run the ASGI example as a user would: a real process, real clients, SIGINT to stop."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import websockets.sync.client

HERE = Path(__file__).parent
START_TIMEOUT = 15.0


def _start(script: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
    if not ready:
        proc.kill()
        pytest.fail(f"example printed nothing within {START_TIMEOUT}s: {proc.communicate()[1]}")
    first = proc.stdout.readline()
    assert first.startswith("listening on "), first + proc.communicate()[1]
    return proc, int(first.rsplit(":", 1)[1])


def _stop(proc: subprocess.Popen[str], timeout: float = 10.0) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"example did not exit within {timeout}s; stderr:\n{err}")
    assert proc.returncode == 0, err
    return out


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_asgi_fastapi_example(backend: str, require_peer: Callable[[str], str]) -> None:
    curl = require_peer("curl")
    proc, port = _start("asgi_fastapi.py", "--backend", backend)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            index = client.get("/").json()
            item = client.get("/items/3", params={"q": "x"}).json()
            bad = client.get("/items/three")
            created = client.post("/items", json={"name": "pen", "price": 2.5})
            invalid = client.post("/items", json={"name": "pen"})
            stream = client.get("/stream", params={"n": "4"})
            whoami = client.get("/whoami").json()
        h2 = subprocess.run(
            [curl, "-sS", "--http2-prior-knowledge", f"{base}/"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            ws.send("shout")
            echoed = ws.recv(timeout=5)
    finally:
        out = _stop(proc)
    assert index == {"message": "hello from FastAPI on rama", "http_version": "1.1"}
    assert item == {"item_id": 3, "q": "x"}
    assert bad.status_code == 422
    assert created.status_code == 201
    assert created.json() == {"id": 1, "name": "pen", "price": 2.5}
    assert invalid.status_code == 422
    assert stream.text == "".join(f"line {i}\n" for i in range(4))
    assert whoami == {"client": "127.0.0.1", "scheme": "http", "ja4": None}
    assert json.loads(h2.stdout)["http_version"] == "2"
    assert echoed == "SHOUT"
    assert out.strip().endswith("stopped (SIGINT)")


def test_asgi_fastapi_example_tls(require_peer: Callable[[str], str]) -> None:
    curl = require_peer("curl")
    proc, port = _start("asgi_fastapi.py", "--tls")
    try:
        p = subprocess.run(
            [curl, "-sS", "-k", "--http2", f"https://localhost:{port}/whoami"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    finally:
        _stop(proc)
    who = json.loads(p.stdout)
    assert who["scheme"] == "https"
    assert who["ja4"].startswith("t13d")  # TLS 1.3, with SNI (localhost)
    assert who["ja4"].split("_")[0].endswith("h2")
