"""``--workers N``: N forked processes serving one SO_REUSEPORT port, one supervising parent.

The parent forks the workers, waits until each has bound the port (one byte
on a pipe), then supervises: SIGINT/SIGTERM are forwarded to every worker
once per signal (a second one makes them cancel at once, as in a single
process); a worker that dies while the server is not stopping is restarted,
up to a bound. Workers run in their own process group, so a terminal's Ctrl-C
reaches them once (through the parent), not twice, and they get SIGTERM if
the parent dies (Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

__all__ = ["run_workers"]

_RESTARTS = 5
"""Restarts allowed within ``_RESTART_WINDOW`` seconds before the parent gives up."""
_RESTART_WINDOW = 30.0


def _die_with_parent() -> None:
    """Have the kernel send SIGTERM to this process when its parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):  # no libc prctl: the worker just outlives its parent
        pass


def _fork_worker(worker: Callable[[Callable[[], None]], int], ready_fd: int, index: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    # -- the child --
    code = 1
    try:
        os.setpgid(0, 0)
        _die_with_parent()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

        def ready() -> None:
            with contextlib.suppress(OSError):
                os.write(ready_fd, bytes([index % 256]))

        code = worker(ready)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # report it, never return into the parent's code
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def run_workers(
    n: int,
    worker: Callable[[Callable[[], None]], int],
    *,
    on_ready: Callable[[], None] | None = None,
    ready_timeout: float = 60.0,
) -> int:
    """Fork ``n`` workers running ``worker(ready)`` (it calls ``ready()`` once bound).

    ``on_ready`` runs in the parent once every worker is ready (the startup
    banner). Returns 0 when every worker exited 0 after a SIGINT/SIGTERM, 1
    when workers failed to start or kept dying.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    workers: dict[int, int] = {}  # pid -> index
    stopping = False
    signals_seen = 0

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping, signals_seen
        stopping = True
        signals_seen += 1
        for pid in list(workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for i in range(n):
            workers[_fork_worker(worker, write_fd, i)] = i
        # wait for one byte per worker (or a worker that died first)
        deadline = time.monotonic() + ready_timeout
        got = 0
        while got < n and not stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                print("rama: workers did not start in time", file=sys.stderr)
                forward(signal.SIGTERM, None)
                break
            try:
                readable, _, _ = select.select([read_fd], [], [], min(left, 0.2))
            except InterruptedError:
                continue
            if readable:
                got += len(os.read(read_fd, 64))
            done, _ = os.waitpid(-1, os.WNOHANG)
            if done:
                workers.pop(done, None)
                print("rama: a worker exited during startup", file=sys.stderr)
                forward(signal.SIGTERM, None)
                _reap(workers)
                return 1
        if got >= n and on_ready is not None and not stopping:
            on_ready()
        return _supervise(workers, worker, write_fd, lambda: stopping)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        os.close(read_fd)
        os.close(write_fd)


def _supervise(
    workers: dict[int, int],
    worker: Callable[[Callable[[], None]], int],
    ready_fd: int,
    stopping: Callable[[], bool],
) -> int:
    failed = False
    restarts: list[float] = []
    while workers:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        index = workers.pop(pid, None)
        if index is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if stopping():
            failed = failed or code != 0
            continue
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < _RESTART_WINDOW]
        if len(restarts) >= _RESTARTS:
            print(
                f"rama: worker {index} exited ({code}); too many restarts, stopping",
                file=sys.stderr,
            )
            failed = True
            for other in list(workers):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(other, signal.SIGTERM)
            continue
        restarts.append(now)
        print(f"rama: worker {index} exited ({code}); restarting it", file=sys.stderr)
        workers[_fork_worker(worker, ready_fd, index)] = index
    return 1 if failed else 0


def _reap(workers: dict[int, int]) -> None:
    for pid in list(workers):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        workers.pop(pid, None)
