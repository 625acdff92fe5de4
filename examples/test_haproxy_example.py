"""Run examples/haproxy_client_ip.py behind a real haproxy (send-proxy-v2), as a user would."""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).parent
START_TIMEOUT = 8.0

HAPROXY_CONF = """\
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:{fe}
    default_backend app
backend app
    server app 127.0.0.1:{app} send-proxy-v2 proxy-v2-options crc32c
"""


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
    assert first.startswith("listening on "), first
    return proc, int(first.rsplit(":", 1)[1])


def _stop(proc: subprocess.Popen[str], timeout: float = 8.0) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"example did not exit within {timeout}s; stderr:\n{err}")
    assert proc.returncode == 0, err
    return out, err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            pytest.fail(f"haproxy exited: {proc.stderr.read() if proc.stderr else ''!r}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail("haproxy is not listening")
            time.sleep(0.05)


def _client(source: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_haproxy_client_ip_example(
    backend: str, tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    haproxy = require_peer("haproxy")
    curl = require_peer("curl")
    proc, port = _start(
        "haproxy_client_ip.py", "--trusted", "127.0.0.1/32", "--backend", backend, "-v"
    )
    fe = _free_port()
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(HAPROXY_CONF.format(fe=fe, app=port))
    lb = subprocess.Popen(
        [haproxy, "-f", str(conf), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_listening(lb, fe)
        # through haproxy, from addresses only the PROXY header can tell the app
        text = subprocess.run(
            [curl, "-sS", "--interface", "127.0.0.5", f"http://127.0.0.1:{fe}/"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        with _client("127.0.0.6") as c:
            info = c.get(f"http://127.0.0.1:{fe}/json").json()
        # directly (127.0.0.7 is not trusted, and sends no header): its own address
        with _client("127.0.0.7") as c:
            direct = c.get(f"http://127.0.0.1:{port}/").text
        # an untrusted peer claiming another address: closed without an answer
        with socket.create_connection(("127.0.0.1", port), 5, ("127.0.0.8", 0)) as s:
            s.sendall(b"PROXY TCP4 6.6.6.6 127.0.0.1 1 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                spoofed = s.recv(1024)
            except ConnectionResetError:  # closed with our bytes unread: a reset
                spoofed = b""
    finally:
        lb.terminate()
        lb.wait(5)
        out, err = _stop(proc)
    assert text == "127.0.0.5\n"
    assert info["client"].startswith("127.0.0.6:")
    assert info["via"].startswith("127.0.0.1:")
    assert info["local"] == f"127.0.0.1:{fe}"
    assert info["proxy_protocol"] == 2
    assert direct == "127.0.0.7\n"
    assert spoofed == b""
    assert err.count("PROXY header from untrusted peer 127.0.0.8") == 1
    assert out.strip().endswith("stopped (SIGINT)")
