"""Run the rama-net examples as a user would: real processes, real sockets, SIGINT to stop."""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HERE = Path(__file__).parent
BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])
# generous for a loaded CI machine; a healthy run takes well under a second for each
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
EXIT_BOUND = 5.0  # seconds from SIGINT to exit once nothing is in flight


class Example:
    """A running example process and the address it printed."""

    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        first = self._read_line(START_TIMEOUT)
        assert first.startswith("listening on "), first
        host, _, port = first.removeprefix("listening on ").strip().rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.stdout = self.stderr = ""

    def _read_line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            _, err = self.proc.communicate()
            pytest.fail(f"example printed nothing within {timeout}s; stderr:\n{err}")
        return self.proc.stdout.readline()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> float:
        """SIGINT, wait for a clean exit; returns how long the exit took."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.interrupt()
        self.wait(timeout)
        return time.monotonic() - started

    def wait(self, timeout: float) -> None:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"example did not exit within {timeout}s; stderr:\n{err}")
        self.stdout += out
        self.stderr += err
        assert self.proc.returncode == 0, self.stderr

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def run_example() -> Iterator[Callable[..., Example]]:
    started: list[Example] = []

    def run(script: str, *args: str) -> Example:
        example = Example(script, *args)
        started.append(example)
        return example

    yield run
    for example in started:
        example.kill()


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


# -- TCP echo ---------------------------------------------------------------------------------
@BACKENDS
def test_tcp_echo_round_trips_bytes_and_stops_on_sigint(
    backend: str, run_example: Callable[..., Example]
) -> None:
    server = run_example("tcp_echo.py", "--backend", backend, "-v")
    payload = os.urandom(1 << 20)
    with socket.create_connection(server.address, timeout=5) as big:

        def send() -> None:
            big.sendall(payload)
            big.shutdown(socket.SHUT_WR)

        # send from a thread: the echo pushes back while we are still sending
        sender = threading.Thread(target=send)
        sender.start()
        with socket.create_connection(server.address, timeout=5) as small:
            small.sendall(b"ping")
            small.shutdown(socket.SHUT_WR)
            assert recv_all(small) == b"ping"
        echoed = recv_all(big)
        sender.join(5)
    assert echoed == payload
    took = server.stop()
    assert took < EXIT_BOUND
    assert server.stdout.splitlines() == ["stopped (SIGINT)"]
    assert f"echoed {len(payload)} bytes" in server.stderr
    assert "echoed 4 bytes" in server.stderr
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(server.address, timeout=2).close()


@BACKENDS
def test_tcp_echo_drains_open_connection_then_cancels_at_grace(
    backend: str, run_example: Callable[..., Example]
) -> None:
    server = run_example("tcp_echo.py", "--backend", backend, "--grace", "1.0")
    with socket.create_connection(server.address, timeout=5) as client:
        client.sendall(b"before")
        assert client.recv(100) == b"before"
        started = time.monotonic()
        server.interrupt()
        time.sleep(0.2)
        # still served during the drain
        client.sendall(b"during")
        assert client.recv(100) == b"during"
        # the grace deadline then cancels the connection: the client sees it close
        assert recv_all(client) == b""
        closed_after = time.monotonic() - started
        server.wait(STOP_TIMEOUT)
    assert 0.8 < closed_after < EXIT_BOUND
    assert server.stdout.splitlines() == ["stopped (SIGINT)"]


@BACKENDS
def test_tcp_echo_second_sigint_cancels_at_once(
    backend: str, run_example: Callable[..., Example]
) -> None:
    server = run_example("tcp_echo.py", "--backend", backend, "--grace", "30")
    with socket.create_connection(server.address, timeout=5) as client:
        client.sendall(b"x")
        assert client.recv(1) == b"x"
        server.interrupt()  # graceful: would wait up to 30 s for this connection
        time.sleep(0.3)
        started = time.monotonic()
        server.interrupt()  # impatient user: stop now
        server.wait(STOP_TIMEOUT)
        took = time.monotonic() - started
        assert recv_all(client) == b""
    assert took < EXIT_BOUND
    assert server.stdout.splitlines() == ["stopped (forced)"]


def test_tcp_echo_rejects_a_bad_listen_address() -> None:
    proc = subprocess.run(
        [sys.executable, str(HERE / "tcp_echo.py"), "--listen", "127.0.0.1:99999"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert proc.returncode != 0
    assert "invalid port" in proc.stderr or "99999" in proc.stderr


# -- UDP echo ---------------------------------------------------------------------------------
@BACKENDS
def test_udp_echo_replies_to_each_datagram(
    backend: str, run_example: Callable[..., Example]
) -> None:
    server = run_example("udp_echo.py", "--backend", backend)
    sent = {f"datagram-{i}".encode() * (i + 1) for i in range(20)}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(3)
        client.connect(server.address)
        client.send(b"")  # empty: the service answers None, so no reply
        for payload in sent:
            client.send(payload)
        received = {client.recv(65536) for _ in sent}
    assert received == sent
    took = server.stop()
    assert took < EXIT_BOUND
    assert server.stdout.splitlines() == ["stopped (SIGINT); dropped 0"]


# -- TCP relay ---------------------------------------------------------------------------------
@contextlib.contextmanager
def http_origin(root: Path) -> Iterator[tuple[str, int]]:
    """A threaded http.server serving ``root`` on loopback."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if not self.path.startswith("/slow/"):
                super().do_GET()
                return
            # a file sent in 32 pieces over about 1.6 s: a transfer that stays in flight
            body = (root / self.path.removeprefix("/slow/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = -(-len(body) // 32)
            for i in range(0, len(body), step):
                self.wfile.write(body[i : i + step])
                self.wfile.flush()
                time.sleep(0.05)

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@BACKENDS
@pytest.mark.parametrize("zero_copy", [True, False], ids=["zero-copy", "copy-loop"])
def test_tcp_relay_carries_curl_downloads(
    backend: str,
    zero_copy: bool,
    tmp_path: Path,
    run_example: Callable[..., Example],
    require_peer: Callable[[str], str],
) -> None:
    curl = require_peer("curl")
    body = os.urandom(3 << 20)
    (tmp_path / "blob.bin").write_bytes(body)
    with http_origin(tmp_path) as (host, port):
        args = ["--target", f"{host}:{port}", "--backend", backend]
        relay = run_example("tcp_relay.py", *args, *([] if zero_copy else ["--no-zero-copy"]))
        base = f"http://{relay.host}:{relay.port}"
        outs = [tmp_path / f"out{i}.bin" for i in range(4)]
        command = [curl, "-sS", "--fail", "--parallel", "--max-time", "20"]
        for out in outs:
            command += ["-o", str(out), f"{base}/blob.bin"]
        subprocess.run(command, check=True, timeout=25)
        took = relay.stop()
    assert took < EXIT_BOUND
    want = hashlib.sha256(body).hexdigest()
    assert [hashlib.sha256(o.read_bytes()).hexdigest() for o in outs] == [want] * len(outs)
    lines = [ln for ln in relay.stderr.splitlines() if "bytes down" in ln]
    assert len(lines) >= 1  # curl --parallel may reuse one connection
    down = sum(int(ln.split(" bytes down")[0].rsplit(" ", 1)[1]) for ln in lines)
    assert down > len(outs) * len(body)  # bodies plus response headers
    path = "zero-copy" if zero_copy else "copy loop"
    assert all(path in ln for ln in lines), lines
    assert relay.stdout.splitlines() == ["stopped (SIGINT)"]


@BACKENDS
def test_tcp_relay_survives_an_unreachable_target(
    backend: str, run_example: Callable[..., Example]
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    relay = run_example("tcp_relay.py", "--target", f"127.0.0.1:{dead}", "--backend", backend)
    for _ in range(3):
        with socket.create_connection(relay.address, timeout=5) as client:
            client.sendall(b"hello")
            # the relay closes the client's connection; the listener keeps going
            with contextlib.suppress(ConnectionResetError):
                assert recv_all(client) == b""
    relay.stop()
    assert relay.stderr.count(f"upstream 127.0.0.1:{dead}") == 3, relay.stderr
    assert relay.stdout.splitlines() == ["stopped (SIGINT)"]


@pytest.mark.parametrize("backend", ["asyncio"])
def test_tcp_relay_finishes_a_transfer_in_flight_on_sigint(
    backend: str,
    tmp_path: Path,
    run_example: Callable[..., Example],
    require_peer: Callable[[str], str],
) -> None:
    curl = require_peer("curl")
    body = os.urandom(3 << 20)
    (tmp_path / "blob.bin").write_bytes(body)
    out = tmp_path / "out.bin"
    with http_origin(tmp_path) as (host, port):
        relay = run_example("tcp_relay.py", "--target", f"{host}:{port}", "--backend", backend)
        url = f"http://{relay.host}:{relay.port}/slow/blob.bin"
        download = subprocess.Popen(
            [curl, "-sS", "--fail", "--max-time", "20", "-o", str(out), url]
        )
        time.sleep(0.4)
        assert download.poll() is None
        relay.interrupt()
        time.sleep(0.2)
        with pytest.raises(ConnectionRefusedError):  # no new connections during the drain
            socket.create_connection(relay.address, timeout=2).close()
        assert download.wait(20) == 0
        relay.wait(STOP_TIMEOUT)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(body).hexdigest()
    assert relay.stdout.splitlines() == ["stopped (SIGINT)"]
    (line,) = [ln for ln in relay.stderr.splitlines() if "bytes down" in ln]
    assert float(line.rsplit(", ", 1)[1].removesuffix("s")) > 1.0  # it outlived the SIGINT


@BACKENDS
def test_tcp_relay_closes_idle_connections(
    backend: str, run_example: Callable[..., Example]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as upstream:
        target = f"127.0.0.1:{upstream.getsockname()[1]}"
        args = ["--target", target, "--idle-timeout", "0.5", "--backend", backend]
        relay = run_example("tcp_relay.py", *args)
        with socket.create_connection(relay.address, timeout=5) as client:
            started = time.monotonic()
            upstream_conn, _ = upstream.accept()
            with upstream_conn:
                upstream_conn.settimeout(5)
                # both sides see the relay close the connection after 0.5 s of silence
                assert client.recv(10) == b""
                assert upstream_conn.recv(10) == b""
            waited = time.monotonic() - started
        relay.stop()
    assert 0.4 < waited < EXIT_BOUND
    assert "(idle timeout)" in relay.stderr
    assert relay.stdout.splitlines() == ["stopped (SIGINT)"]


def test_tcp_echo_on_ipv6_loopback(run_example: Callable[..., Example]) -> None:
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6; the tests need ::1")
    server = run_example("tcp_echo.py", "--listen", "[::1]:0")
    assert server.host == "::1"
    with socket.create_connection(server.address, timeout=5) as client:
        client.sendall(b"six")
        client.shutdown(socket.SHUT_WR)
        assert recv_all(client) == b"six"
    server.stop()
    assert server.stdout.splitlines() == ["stopped (SIGINT)"]
