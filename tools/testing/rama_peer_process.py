"""Start real peer programs (nginx, haproxy, squid, danted, ...) for a test and stop them after.

Every peer test used to carry its own copy of "Popen, poll the port, terminate,
kill on timeout"; this module is that code once. Peers run in the foreground
(no daemon), with every path under the test's own directory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

__all__ = [
    "Endpoint",
    "free_port",
    "nginx_conf",
    "run_curl",
    "spawn_peer",
    "start_nginx",
    "wait_listening",
]


Endpoint = int | tuple[str, int]
"""A port on 127.0.0.1, or ``(host, port)`` (``("::1", 8080)``)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_listening(
    proc: subprocess.Popen[bytes],
    endpoint: Endpoint,
    *,
    name: str = "peer",
    timeout: float = 10.0,
) -> None:
    """Return once the endpoint accepts; fail the test if ``proc`` exits or time runs out."""
    host, port = endpoint if isinstance(endpoint, tuple) else ("127.0.0.1", endpoint)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else b""
            pytest.fail(f"{name} exited with {proc.returncode}: {err[-2000:]!r}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not listen on {host}:{port} within {timeout:g}s")
            time.sleep(0.05)


@contextmanager
def spawn_peer(
    argv: Sequence[str],
    *,
    ports: Sequence[Endpoint] = (),
    name: str | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    process_group: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` until the block ends, after every endpoint in ``ports`` listens.

    ``process_group=True`` starts it in a session of its own and stops the
    whole group (for peers that fork helpers, such as danted).
    """
    label = name or Path(argv[0]).name
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        start_new_session=process_group,
    )

    def stop(sig: int) -> None:
        try:
            if process_group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass

    try:
        for endpoint in ports:
            wait_listening(proc, endpoint, name=label, timeout=timeout)
        yield proc
    finally:
        stop(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            stop(signal.SIGKILL)
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def nginx_conf(root: Path, http_body: str, *, worker_connections: int = 512) -> str:
    """A foreground single-process nginx.conf with every path under ``root``.

    ``http_body`` goes inside ``http { }`` after the common settings (access
    log off, temp paths under ``root``): the test's ``server`` blocks.
    """
    return f"""\
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
{http_body}
}}
"""


@contextmanager
def start_nginx(
    binary: str,
    root: Path,
    http_body: str,
    *,
    ports: Sequence[int],
    worker_connections: int = 512,
) -> Iterator[subprocess.Popen[bytes]]:
    """Write ``root/nginx.conf`` from ``http_body`` and run nginx until the block ends."""
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(nginx_conf(root, http_body, worker_connections=worker_connections))
    argv = [binary, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")]
    with spawn_peer(argv, ports=ports, name="nginx") as proc:
        yield proc


async def run_curl(*args: str, max_time: float = 10.0) -> tuple[int, str, str]:
    """Run ``curl -sS`` with ``args``, bounded by ``--max-time``.

    Returns ``(exit code, stdout, stderr)``.
    """
    r = await anyio.run_process(["curl", "-sS", "--max-time", f"{max_time:g}", *args], check=False)
    return r.returncode, r.stdout.decode(), r.stderr.decode()
