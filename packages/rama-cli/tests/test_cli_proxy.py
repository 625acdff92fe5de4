"""``rama serve proxy`` as a subprocess, tried with real curl; SIGINT/SIGTERM end it cleanly."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

RAMA = str(Path(sys.executable).parent / "rama")
ROOT = Path(__file__).resolve().parents[3]
EXIT_BOUND = 10.0


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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class Running:
    def __init__(self, proc: subprocess.Popen[bytes], address: str, banner: str) -> None:
        self.proc = proc
        self.address = address
        self.banner = banner

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])


def _read_banner(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> str:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = b""
    deadline = time.monotonic() + timeout
    while b"stop with Ctrl-C" not in out:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
            raise AssertionError(f"no banner: {out.decode()!r} {err}")
        readable, _, _ = select.select([fd], [], [], left)
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:
                continue
            out += chunk
    return out.decode()


@contextmanager
def rama_proxy(
    *args: str, cmd: list[str] | None = None, timeout: float = 30.0
) -> Iterator[Running]:
    command = cmd or [RAMA, "serve", "proxy", "--bind", "127.0.0.1:0", *args]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        banner = _read_banner(proc, timeout)
        match = re.search(r"listening on (\S+)", banner)
        assert match, banner
        yield Running(proc, match.group(1), banner)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _stop(run: Running, sig: int = signal.SIGINT, *, group: bool = False) -> int:
    started = time.monotonic()
    if group:
        os.killpg(run.proc.pid, sig)
    else:
        run.proc.send_signal(sig)
    code = run.proc.wait(timeout=EXIT_BOUND)
    assert time.monotonic() - started < EXIT_BOUND
    return code


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("curl"), "curl is a required peer"
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--noproxy", "", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_every_curl_mode_then_sigint_exits_0(origin: str, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with rama_proxy("--tls-self-signed", "--access-log", str(log)) as run:
        assert "curl -x http://127.0.0.1:" in run.banner
        assert "curl -p -x http://" in run.banner
        assert "curl --socks5-hostname 127.0.0.1:" in run.banner
        a = run.address
        modes = {
            "forward": ["-x", f"http://{a}"],
            "connect": ["-p", "-x", f"http://{a}"],
            "socks5": ["--socks5", a],
            "socks5h": ["--socks5-hostname", a],
            "https": ["--proxy-insecure", "-x", f"https://{a}"],
        }
        for name, args in modes.items():
            done = curl(*args, f"{origin}/{name}")
            assert done.returncode == 0, (name, done.stderr)
            assert done.stdout == f"origin /{name}"
        assert _stop(run) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["protocol"] for line in lines] == ["http", "connect", "socks5", "socks5", "http"]
    assert all(line["status"] in (200, 0) for line in lines)


def test_auth_and_sigterm(origin: str) -> None:
    with rama_proxy("--auth", "john:secret", "--access-log", "-") as run:
        assert "john:PASSWORD@" in run.banner
        denied = curl(
            "-x", f"http://{run.address}", "-o", "/dev/null", "-w", "%{http_code}", origin
        )
        assert denied.stdout == "407"
        ok = curl("-x", f"http://{run.address}", "--proxy-user", "john:secret", f"{origin}/a")
        assert ok.stdout == "origin /a"
        ok = curl("-x", f"socks5h://john:secret@{run.address}", f"{origin}/b")
        assert ok.stdout == "origin /b"
        assert _stop(run, signal.SIGTERM) == 0
        assert run.proc.stdout is not None
        rest = run.proc.stdout.read().decode()
    records = [json.loads(line) for line in rest.splitlines() if line.startswith("{")]
    assert [r["user"] for r in records if r["status"] == 200 or r["status"] == 0][-2:] == [
        "john",
        "john",
    ]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_workers_share_one_port_and_stop_on_ctrl_c(origin: str, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with rama_proxy("--workers", "2", "--access-log", str(log)) as run:
        assert "2 workers" in run.banner
        kids = _children(run.proc.pid)
        assert len(kids) == 2
        for i in range(20):
            done = curl("-x", f"http://{run.address}", f"{origin}/{i}")
            assert done.stdout == f"origin /{i}", done.stderr
        # a worker that dies is replaced
        os.kill(kids[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = _children(run.proc.pid)
            if len(now) == 2 and kids[0] not in now:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"worker not restarted: {_children(run.proc.pid)}")
        time.sleep(0.5)
        done = curl("-x", f"http://{run.address}", f"{origin}/after")
        assert done.stdout == "origin /after"
        # Ctrl-C on a terminal signals the whole process group
        assert _stop(run, signal.SIGINT, group=True) == 0
    assert len(log.read_text().splitlines()) == 21


def test_help_explains_every_flag() -> None:
    out = subprocess.run(
        [RAMA, "serve", "proxy", "-h"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    for flag in (
        "--bind",
        "--auth",
        "--upstream",
        "--proxy-db",
        "--tls-cert",
        "--tls-key",
        "--tls-self-signed",
        "--proxy-protocol",
        "--allow-connect-ports",
        "--access-log",
        "--max-connections",
        "--timeout",
        "--workers",
    ):
        assert flag in out
    assert out.count("e.g.") >= 10
    assert "curl -x http://127.0.0.1:8080" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--auth", "nocolon"], "USER:PASS"),
        (["--upstream", "ftp://x:1"], "proxy URL"),
        (["--allow-connect-ports", "443,99999"], "not a TCP port"),
        (["--upstream", "http://a:1", "--proxy-db", "x.csv"], "not allowed with"),
        (["--tls-cert", "c.pem"], "key"),
    ],
)
def test_bad_flags_fail_clearly(args: list[str], message: str) -> None:
    done = subprocess.run(
        [RAMA, "serve", "proxy", "--bind", "127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert message in done.stderr


def test_a_taken_port_fails_with_the_address() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [RAMA, "serve", "proxy", "--bind", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr


def test_make_run_starts_the_proxy(origin: str) -> None:
    make = shutil.which("make")
    assert make is not None
    cmd = [make, "-s", "-C", str(ROOT), "run", "ARGS=--bind 127.0.0.1:0"]
    # make bootstraps first when the venv is older than a pyproject: allow for that
    with rama_proxy(cmd=cmd, timeout=300) as run:
        assert "curl -x http://127.0.0.1:" in run.banner
        done = curl("-x", f"http://{run.address}", f"{origin}/make")
        assert done.stdout == "origin /make"
        code = _stop(run, signal.SIGINT, group=True)
        # make dies of the SIGINT itself (or reports 2); rama, in its group, must be gone too
        assert code in (0, 2, -signal.SIGINT)
        deadline = time.monotonic() + EXIT_BOUND
        while True:
            try:
                os.killpg(run.proc.pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, "rama outlived make"
            time.sleep(0.05)


def test_a_bad_proxy_db_names_the_row(tmp_path: Path) -> None:
    db = tmp_path / "bad.csv"
    db.write_text(
        "id,tcp,udp,http,https,socks5,socks5h,datacenter,residential,mobile,address,"
        "pool_id,continent,country,state,city,carrier,asn\n"
        "ok,true,,true,,,,,,,127.0.0.1:3128,,,,,,,\n"
        "bad,maybe,,true,,,,,,,127.0.0.1:3129,,,,,,,\n"
    )
    done = subprocess.run(
        [RAMA, "serve", "proxy", "--bind", "127.0.0.1:0", "--proxy-db", str(db)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "bad.csv" in done.stderr
    assert "tcp" in done.stderr


def test_workers_stop_on_sigterm_to_the_parent(origin: str) -> None:
    with rama_proxy("--workers", "2", "--grace", "2") as run:
        kids = _children(run.proc.pid)
        assert len(kids) == 2
        done = curl("--socks5-hostname", run.address, f"{origin}/w")
        assert done.stdout == "origin /w", done.stderr
        assert _stop(run, signal.SIGTERM) == 0
    for pid in kids:  # reaped by the parent before it exited
        assert not Path(f"/proc/{pid}").exists()


def test_no_fast_path_flag_reaches_the_config() -> None:
    from rama_cli.__main__ import build_parser
    from rama_cli._serve_proxy import config_from_args

    parser = build_parser()
    assert config_from_args(parser.parse_args(["serve", "proxy"])).fast_path is True
    off = parser.parse_args(["serve", "proxy", "--no-fast-path"])
    assert config_from_args(off).fast_path is False
