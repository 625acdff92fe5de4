"""Run examples/haproxy_client_ip.py behind a real haproxy (send-proxy-v2), as a user would."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from rama_example_process import start_example, stop_example
from rama_peer_process import free_port, spawn_peer

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
    return start_example(HERE / script, *args, timeout=START_TIMEOUT)


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    return stop_example(proc)


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
    fe = free_port()
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(HAPROXY_CONF.format(fe=fe, app=port))
    try:
        with spawn_peer([haproxy, "-f", str(conf), "-db"], ports=(fe,), name="haproxy"):
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
