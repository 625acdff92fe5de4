"""Relay throughput over loopback: direct, through rama's relay, through haproxy (TCP mode).

Usage: python tools/bench/relay/relay_bench.py [--rounds 3] [--size-mib 1024] [--only NAME ...]

One sink process (``sink.py``) swallows connections; every path under test
points at it: the sink itself (direct), ``examples/tcp_relay.py`` (the relay a
user runs) with the splice path and with the copy loop, on asyncio and trio,
and haproxy in TCP mode, as configured by default and tuned (splice-auto,
1 MiB pipes, 256 KiB buffers: what rama uses).
For each transfer a fresh ``sender.py`` sends SIZE bytes with sendfile over
one connection; the sink times accept -> EOF. Paths are interleaved round by
round and the median is reported, with ratios to direct and to haproxy, and
the relay process's CPU time per GiB.
Each transfer is bounded by ``--timeout``. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PY = sys.executable
CHUNK_MIB = 64  # the sender's file; it is sent SIZE/CHUNK times

HAPROXY_CONF = """\
global
    maxconn 64
    nbthread 1
{tune}defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
listen relay
    bind 127.0.0.1:{port}
{options}    server sink 127.0.0.1:{sink}
"""


@dataclass
class Target:
    """One path under test: where to connect, and how to check it did what it claims."""

    name: str
    port: int
    proc: subprocess.Popen[str] | None = None
    expect_log: str | None = None
    log: Path | None = None
    results: list[float] = field(default_factory=list)
    cpu_per_gib: list[float] = field(default_factory=list)
    note: str = ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_pending: dict[int, bytes] = {}


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """Next stdout line of ``proc``, waiting at most ``timeout`` seconds.

    Reads the pipe's descriptor directly: a buffered reader could swallow
    several lines at once and leave select() waiting for data already read.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buf = _pending.get(fd, b"")
    while b"\n" not in buf:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError(f"{proc.args!r} printed nothing within {timeout}s")
        data = os.read(fd, 4096)
        if not data:
            raise RuntimeError(f"{proc.args!r} exited (status {proc.wait()})")
        buf += data
    line, _, _pending[fd] = buf.partition(b"\n")
    return line.decode().strip()


def wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {port} after {timeout}s") from None
            time.sleep(0.05)


@contextmanager
def process(args: list[str], stderr: Path | None = None) -> Iterator[subprocess.Popen[str]]:
    """Run a helper; on exit SIGINT it (graceful for rama), then SIGKILL after 5 s."""
    err = open(stderr, "w") if stderr else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if stderr:
            err.close()  # type: ignore[union-attr]


def start_rama(stack: ExitStack, sink: int, zero_copy: bool, backend: str, logs: Path) -> Target:
    label = "zero-copy" if zero_copy else "copy loop"
    name = f"rama {label} ({backend})"
    log = logs / f"rama-{backend}-{'splice' if zero_copy else 'copy'}.log"
    args = [PY, str(ROOT / "examples/tcp_relay.py"), "--target", f"127.0.0.1:{sink}"]
    args += ["--backend", backend] + ([] if zero_copy else ["--no-zero-copy"])
    proc = stack.enter_context(process(args, stderr=log))
    line = read_line(proc, 15)
    port = int(line.rsplit(":", 1)[1])
    return Target(name, port, proc, expect_log=label, log=log)


def start_haproxy(stack: ExitStack, sink: int, splice: bool, workdir: Path) -> Target:
    haproxy = "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else "haproxy"
    port = free_port()
    conf = workdir / f"haproxy{'-splice' if splice else ''}.cfg"
    # "tuned": splice, and pipe and buffer sizes like rama's (1 MiB pipe, 256 KiB chunks)
    options = "    option splice-auto\n" if splice else ""
    tune = "    tune.pipesize 1048576\n    tune.bufsize 262144\n" if splice else ""
    conf.write_text(HAPROXY_CONF.format(port=port, sink=sink, options=options, tune=tune))
    proc = stack.enter_context(process([haproxy, "-db", "-f", str(conf)]))
    wait_listening(port, proc)  # this probe reaches the sink as an empty transfer
    return Target("haproxy tuned+splice" if splice else "haproxy", port, proc)


def transfer(
    port: int, source: Path, repeat: int, sink: subprocess.Popen[str], timeout: float
) -> tuple[int, float]:
    """Send ``repeat`` copies of ``source`` through ``port``; the sink's bytes and seconds.

    The sink reports every connection it served, in order. Lines of another
    size are not this transfer's: readiness probes (0 bytes) and the late
    report of an earlier transfer that timed out (cut short), so they are
    skipped rather than credited to this path.
    """
    expected = repeat * source.stat().st_size
    subprocess.run(
        [PY, str(HERE / "sender.py"), f"127.0.0.1:{port}", str(source), str(repeat)],
        check=True,
        timeout=timeout,
    )
    while True:
        nbytes, seconds = read_line(sink, timeout).split()
        if int(nbytes) == expected:
            return int(nbytes), float(seconds)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ratio(a: list[float], b: list[float]) -> str:
    return f"{statistics.median(a) / statistics.median(b):.2f}" if a and b else "-"


def report(targets: list[Target], size: int, rounds: int) -> None:
    by_name = {t.name: t for t in targets}
    labels = {
        "direct": "vs direct",
        "haproxy": "vs haproxy",
        "haproxy tuned+splice": "vs hap tuned",
    }
    bases = [(label, by_name[name].results) for name, label in labels.items() if name in by_name]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\nrelay throughput: {size >> 20} MiB per transfer over loopback, median of {rounds}"
        f" round(s); {os.cpu_count()} CPUs shared with other work (load avg {load}); unpinned"
    )
    header = f"{'path':<26}{'MB/s':>8}  {'per round':<20}{'CPU s/GiB':>10}"
    header += "".join(f"{n:>15}" for n, _ in bases)
    print(header)
    print("-" * len(header))
    for t in targets:
        med = f"{statistics.median(t.results):.0f}" if t.results else "FAIL"
        runs = " ".join(f"{r:.0f}" for r in t.results)
        cpu = f"{statistics.median(t.cpu_per_gib):.2f}" if t.cpu_per_gib else "-"
        cols = "".join(f"{ratio(t.results, ref):>15}" for _, ref in bases)
        note = f"  {t.note}" if t.note else ""
        print(f"{t.name:<26}{med:>8}  {runs:<20}{cpu:>10}{cols}{note}")
    print(
        "MB/s = 10^6 bytes/s, sink-timed accept -> EOF. CPU s/GiB: user+sys time of the relay"
        " process per GiB moved (its own cost; on loopback the kernel's copies bound MB/s)."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--timeout", type=float, default=120, help="seconds per transfer")
    parser.add_argument("--only", nargs="*", help="substrings of path names to run")
    args = parser.parse_args(argv)
    chunk_mib = min(CHUNK_MIB, args.size_mib)
    repeat = max(1, args.size_mib // chunk_mib)
    size = repeat * chunk_mib << 20
    failed = False
    with tempfile.TemporaryDirectory(prefix="rama-relay-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        source = work / "chunk.bin"
        source.write_bytes(os.urandom(chunk_mib << 20))
        sink = stack.enter_context(process([PY, str(HERE / "sink.py")]))
        sink_port = int(read_line(sink, 10).split()[1])
        targets = [Target("direct", sink_port)]
        for backend in ("asyncio", "trio"):
            for zero_copy in (True, False):
                targets.append(start_rama(stack, sink_port, zero_copy, backend, work))
        targets.append(start_haproxy(stack, sink_port, False, work))
        targets.append(start_haproxy(stack, sink_port, True, work))
        if args.only:
            targets = [t for t in targets if any(o in t.name for o in args.only)]
        for _ in range(args.rounds):
            for t in targets:
                try:
                    cpu_before = cpu_seconds(t.proc.pid) if t.proc else 0.0
                    nbytes, seconds = transfer(t.port, source, repeat, sink, args.timeout)
                except (subprocess.SubprocessError, TimeoutError, RuntimeError) as exc:
                    # includes a sink that never saw all bytes (no line of the full size)
                    t.note, failed = f"error: {exc}", True
                    continue
                t.results.append(nbytes / seconds / 1e6)
                if t.proc is not None:
                    used = cpu_seconds(t.proc.pid) - cpu_before
                    t.cpu_per_gib.append(used / (nbytes / (1 << 30)))
        for t in targets:  # stop the relays first so their logs are complete
            if t.proc is not None and t.log is not None:
                t.proc.send_signal(signal.SIGINT)
                t.proc.wait(10)
                # one log line per relayed connection, naming the path that carried it
                lines = [ln for ln in t.log.read_text().splitlines() if "bytes down" in ln]
                if t.results and not all(str(t.expect_log) in ln for ln in lines):
                    t.note, failed = f"error: relay log does not say {t.expect_log}", True
        report(targets, size, args.rounds)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
