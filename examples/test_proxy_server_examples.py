"""Run the rama-proxy server examples as a user would: real processes, curl, SIGINT to stop."""

from __future__ import annotations

import json
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HERE = Path(__file__).parent
BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class Example:
    """A running example process and the address it printed first."""

    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        if not ready:
            self.proc.kill()
            pytest.fail(f"{script} printed nothing; stderr:\n{self.proc.communicate()[1]}")
        first = self.proc.stdout.readline()
        assert first.startswith("listening on "), (first, self.proc.communicate()[1])
        self.address = first.removeprefix("listening on ").strip()
        self.stdout = self.stderr = ""

    def stop(self) -> None:
        """SIGINT, then a clean exit within the bound."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            out, err = self.proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"example did not exit on SIGINT; stderr:\n{err}")
        self.stdout += out
        self.stderr += err
        assert self.proc.returncode == 0, self.stderr
        assert "Traceback" not in self.stderr, self.stderr
        assert time.monotonic() - started < STOP_TIMEOUT

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"origin {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("curl"), "curl is a required peer"
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--noproxy", "", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


@BACKENDS
def test_socks5_and_http_proxy_on_one_port(origin: str, backend: str) -> None:
    ex = Example(
        "socks5_and_http_proxy.py", "--listen", "127.0.0.1:0", "--tls-self-signed",
        "--backend", backend,
    )  # fmt: skip
    try:
        a = ex.address
        modes = {
            "forward": ["-x", f"http://{a}"],
            "connect": ["-p", "-x", f"http://{a}"],
            "socks5h": ["--socks5-hostname", a],
            "https": ["--proxy-insecure", "-x", f"https://{a}"],
        }
        for name, args in modes.items():
            done = curl(*args, f"{origin}/{name}")
            assert (done.returncode, done.stdout) == (0, f"origin /{name}"), done.stderr
        ex.stop()
    finally:
        ex.kill()
    records = [json.loads(line) for line in ex.stdout.splitlines()]
    assert [r["protocol"] for r in records] == ["http", "connect", "socks5", "http"]
    assert records[1]["target"] == origin.removeprefix("http://")


def test_http_connect_proxy_with_auth_and_labels(origin: str, tmp_path: Path) -> None:
    upstream = Example("socks5_and_http_proxy.py", "--listen", "127.0.0.1:0")
    edge: Example | None = None
    try:
        db = tmp_path / "proxies.csv"
        db.write_text(
            "id,tcp,udp,http,https,socks5,socks5h,datacenter,residential,mobile,address,"
            "pool_id,continent,country,state,city,carrier,asn\n"
            f"us-1,true,,true,,,,,true,,{upstream.address},pool-a,north-america,us,,,,\n"
        )
        edge = Example(
            "http_connect_proxy.py", "--listen", "127.0.0.1:0", "--user", "john:secret",
            "--proxy-db", str(db),
        )  # fmt: skip
        proxy = f"http://{edge.address}"
        via_us = curl("-x", proxy, "-U", "john-country-us-residential:secret", f"{origin}/us")
        assert (via_us.returncode, via_us.stdout) == (0, "origin /us"), via_us.stderr
        tunnel = curl("-p", "-x", proxy, "-U", "john-country-us:secret", f"{origin}/tunnel")
        assert tunnel.stdout == "origin /tunnel", tunnel.stderr
        no_auth = curl("-x", proxy, "-o", "/dev/null", "-w", "%{http_code}", origin)
        assert no_auth.stdout == "407"
        unknown = curl(
            "-x", proxy, "-U", "john-planet-mars:secret", "-o", "/dev/null", "-w", "%{http_code}",
            origin,
        )  # fmt: skip
        assert unknown.stdout == "407"  # strict labels: an unknown one is refused
        nowhere = curl(
            "-x", proxy, "-U", "john-country-fr:secret", "-o", "/dev/null", "-w", "%{http_code}",
            origin,
        )  # fmt: skip
        assert nowhere.stdout not in ("200", "407")  # no upstream matches
        edge.stop()
        upstream.stop()
    finally:
        upstream.kill()
        if edge is not None:
            edge.kill()
    lines = edge.stdout.splitlines()
    assert f"john labels=[country=us residential] GET {origin}/us -> 200" in lines
    assert any(line.startswith("john labels=[country=us] CONNECT") for line in lines)
    # both went through the upstream from the DB
    seen = [json.loads(line) for line in upstream.stdout.splitlines()]
    assert any(r["target"] == f"{origin}/us" or r["protocol"] == "connect" for r in seen)
    assert len(seen) >= 2
