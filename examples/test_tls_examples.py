"""Run the rama-tls examples as a user would: real processes, curl and openssl s_client."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rama_tls import self_signed

HERE = Path(__file__).parent


class Proc:
    """A running program whose stdout is read line by line with deadlines."""

    def __init__(self, argv: list[str], cwd: Path | None = None) -> None:
        self.popen = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
        )
        self.lines: list[str] = []
        self._partial = b""

    def wait_for(self, pattern: str, timeout: float = 15) -> re.Match[str]:
        """Read output until a line matches ``pattern``."""
        regex = re.compile(pattern)
        for line in self.lines:
            if m := regex.search(line):
                return m
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self._partial += chunk
            *complete, self._partial = self._partial.split(b"\n")
            for raw in complete:
                line = raw.decode(errors="replace")
                self.lines.append(line)
                if m := regex.search(line):
                    return m
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10) -> int:
        """Signal the program and wait for it to exit."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout=timeout)
        finally:
            if self.popen.poll() is None:
                self.popen.kill()
                self.popen.wait(timeout=5)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=5)


@pytest.fixture
def procs() -> Iterator[Callable[..., Proc]]:
    started: list[Proc] = []

    def start(argv: list[str], cwd: Path | None = None) -> Proc:
        proc = Proc(argv, cwd)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def run(
    argv: list[str], stdin: bytes = b"", timeout: float = 20
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, check=False)


@pytest.fixture
def backend(tmp_path: Path, procs: Callable[..., Proc]) -> tuple[int, dict[str, bytes]]:
    """A plain HTTP file server (the stdlib's) with a small and a 3 MiB file."""
    root = tmp_path / "www"
    root.mkdir()
    files = {"hello.txt": b"hello through TLS\n", "big.bin": os.urandom(3 * 1024 * 1024)}
    for name, data in files.items():
        (root / name).write_bytes(data)
    server = procs(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0"], cwd=root
    )
    port = int(server.wait_for(r"Serving HTTP on \S+ port (\d+)").group(1))
    return port, files


def test_tls_termination_proxy(
    tmp_path: Path,
    backend: tuple[int, dict[str, bytes]],
    procs: Callable[..., Proc],
    require_peer: Callable[[str], str],
) -> None:
    backend_port, files = backend
    ca_file = tmp_path / "ca.pem"
    proxy = procs(
        [
            sys.executable,
            "-u",
            str(HERE / "tls_termination_proxy.py"),
            "--listen",
            "127.0.0.1:0",
            "--backend",
            f"127.0.0.1:{backend_port}",
            "--ca-out",
            str(ca_file),
        ]
    )
    port = int(proxy.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))
    curl = [require_peer("curl"), "-sS", "--max-time", "15", "--cacert", str(ca_file)]

    small = run([*curl, f"https://localhost:{port}/hello.txt"])
    assert small.returncode == 0, small.stderr
    assert small.stdout == files["hello.txt"]

    big = run(
        [
            *curl,
            "--resolve",
            f"files.example.test:{port}:127.0.0.1",
            f"https://files.example.test:{port}/big.bin",
        ]
    )
    assert big.returncode == 0, big.stderr
    assert hashlib.sha256(big.stdout).digest() == hashlib.sha256(files["big.bin"]).digest()

    # s_client stays until the connection ends: the backend's close must reach it
    # as a TLS close_notify, or this would hang until the timeout
    s_client = run(
        [
            require_peer("openssl"),
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-servername",
            "other.example.test",
            "-CAfile",
            str(ca_file),
            "-verify_return_error",
            "-ign_eof",
            "-quiet",
        ],
        stdin=b"GET /hello.txt HTTP/1.0\r\n\r\n",
        timeout=10,
    )
    assert s_client.returncode == 0, s_client.stderr
    assert s_client.stdout.startswith(b"HTTP/1.0 200 OK")
    assert s_client.stdout.endswith(files["hello.txt"])

    assert proxy.stop() == 0
    proxy.wait_for(r"shutdown: reason=SIGINT clean=True")
    for sni in ("localhost", "files.example.test", "other.example.test"):
        proxy.wait_for(rf"sni={re.escape(sni)} TLSv1\.3 alpn=None ja4=t13d")
    downs = [int(m.group(1)) for line in proxy.lines if (m := re.search(r"up, (\d+) down", line))]
    assert len(downs) == 3
    assert max(downs) > len(files["big.bin"])  # the body plus the response head


def test_tls_termination_proxy_fixed_certificate_and_duration(
    tmp_path: Path,
    backend: tuple[int, dict[str, bytes]],
    procs: Callable[..., Proc],
    require_peer: Callable[[str], str],
) -> None:
    backend_port, files = backend
    cert = self_signed("localhost")
    cert.save(tmp_path / "cert.pem", tmp_path / "key.pem")
    proxy = procs(
        [
            sys.executable,
            "-u",
            str(HERE / "tls_termination_proxy.py"),
            "--listen",
            "127.0.0.1:0",
            "--backend",
            f"127.0.0.1:{backend_port}",
            "--cert",
            str(tmp_path / "cert.pem"),
            "--key",
            str(tmp_path / "key.pem"),
            "--alpn",
            "http/1.1",
            "--duration",
            "3",
        ]
    )
    port = int(proxy.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))
    out = run(
        [
            require_peer("curl"),
            "-sS",
            "--max-time",
            "10",
            "--tlsv1.2",
            "--tls-max",
            "1.2",
            "--cacert",
            str(tmp_path / "cert.pem"),
            f"https://localhost:{port}/hello.txt",
        ]
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == files["hello.txt"]
    proxy.wait_for(r"sni=localhost TLSv1\.2 alpn=http/1\.1 ja4=t12d")
    # a client that does not speak TLS: one INFO line with its address and the reason
    with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:
        plain.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        plain_port = plain.getsockname()[1]
        assert plain.recv(100) == b""  # closed without an answer
    proxy.wait_for(
        r"INFO rama\.tls\.acceptor: TLS handshake from "
        rf"127\.0\.0\.1:{plain_port} failed \(not_tls\)"
    )
    assert proxy.popen.wait(timeout=10) == 0
    proxy.wait_for(r"shutdown: reason=duration clean=True")


PROXY = HERE / "tls_termination_proxy.py"


def test_tls_termination_proxy_cert_without_key_is_a_usage_error() -> None:
    out = run([sys.executable, str(PROXY), "--backend", "127.0.0.1:9", "--cert", "cert.pem"])
    assert out.returncode == 2
    assert out.stderr.startswith(b"usage: ")
    assert b"--cert and --key go together" in out.stderr
    assert b"Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--key", "key.pem"], "--cert and --key go together"),
        (["--ca-cert", "ca.pem"], "--ca-cert and --ca-key go together"),
        (["--ca-key", "ca.key"], "--ca-cert and --ca-key go together"),
        (
            ["--cert", "c.pem", "--key", "k.pem", "--ca-cert", "ca.pem", "--ca-key", "ca.key"],
            "exclude each other",
        ),
        (["--cert", "c.pem", "--key", "k.pem", "--ca-out", "ca.pem"], "--ca-out"),
    ],
)
def test_tls_termination_proxy_usage_errors(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _load(PROXY)
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args(["--backend", "127.0.0.1:9", *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_tls_termination_proxy_unreadable_certificate_is_a_usage_error(tmp_path: Path) -> None:
    cert = self_signed("localhost")
    cert.save(tmp_path / "cert.pem", tmp_path / "key.pem")
    other = self_signed("localhost")
    other.save(tmp_path / "other.pem", tmp_path / "other.key")
    base = [sys.executable, str(PROXY), "--backend", "127.0.0.1:9", "--listen", "127.0.0.1:0"]
    missing = run([*base, "--cert", str(tmp_path / "nope.pem"), "--key", str(tmp_path / "key.pem")])
    mismatched = run(
        [*base, "--cert", str(tmp_path / "cert.pem"), "--key", str(tmp_path / "other.key")]
    )
    for out, why in ((missing, b"No such file"), (mismatched, b"does not match")):
        assert out.returncode == 2, out.stderr
        assert b"cannot set up TLS" in out.stderr
        assert why in out.stderr
        assert b"Traceback" not in out.stderr


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tls_fingerprint_echo(
    tmp_path: Path, procs: Callable[..., Proc], require_peer: Callable[[str], str]
) -> None:
    ca_file = tmp_path / "ca.pem"
    echo = procs(
        [
            sys.executable,
            "-u",
            str(HERE / "tls_fingerprint_echo.py"),
            "--listen",
            "127.0.0.1:0",
            "--ca-out",
            str(ca_file),
            "--idle-timeout",
            "1",
        ]
    )
    port = int(echo.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))

    out = run(
        [
            require_peer("curl"),
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            str(ca_file),
            f"https://localhost:{port}/",
        ]
    )
    assert out.returncode == 0, out.stderr
    curl_report = json.loads(out.stdout)
    assert curl_report["tls"]["sni"] == "localhost"
    assert curl_report["tls"]["version"] == "TLSv1.3"
    assert curl_report["tls"]["alpn"] == "http/1.1"
    assert curl_report["client_hello"]["alpn"] == ["h2", "http/1.1"]
    ja3_string = curl_report["ja3"]["string"]
    assert curl_report["ja3"]["hash"] == hashlib.md5(ja3_string.encode()).hexdigest()
    assert ja3_string.startswith("771,4866-4867-4865-")  # curl/OpenSSL 3 suite order
    # the shared fingerprint shape: text is the canonical form, raw the clear one
    assert curl_report["ja3"]["text"] == curl_report["ja3"]["hash"]
    assert curl_report["ja3"]["raw"] == ja3_string
    assert curl_report["ja4"]["text"] == curl_report["ja4"]["ja4"]
    assert curl_report["ja4"]["raw"] == curl_report["ja4"]["ja4_r"]
    assert re.fullmatch(r"t13d\d{4}h2_[0-9a-f]{12}_[0-9a-f]{12}", curl_report["ja4"]["ja4"])

    again = json.loads(
        run(
            [require_peer("curl"), "-sS", "--cacert", str(ca_file), f"https://localhost:{port}/"]
        ).stdout
    )
    assert again["ja4"] == curl_report["ja4"]  # stable for the same client

    s_client = run(
        [
            require_peer("openssl"),
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-servername",
            "echo.example.test",
            "-tls1_2",
            "-CAfile",
            str(ca_file),
            "-verify_return_error",
            "-quiet",
            "-ign_eof",
        ],
        stdin=b"hello echo\n",
        timeout=20,
    )
    first, _, rest = s_client.stdout.partition(b"\n")
    openssl_report = json.loads(first)
    assert rest == b"hello echo\n"
    assert openssl_report["tls"]["version"] == "TLSv1.2"
    assert openssl_report["tls"]["sni"] == "echo.example.test"
    assert openssl_report["ja4"]["ja4"].startswith("t12d")
    assert openssl_report["ja3"]["hash"] != curl_report["ja3"]["hash"]

    assert echo.stop(signal.SIGTERM) == 0
    echo.wait_for(r"shutdown: reason=SIGTERM clean=True")
