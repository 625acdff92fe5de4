"""Forward/CONNECT/SOCKS5 proxy bench: rama vs squid, proxy.py, mitmdump, pproxy and dante.

Usage: python tools/bench/proxy/proxy_bench.py --tunnels BIN --venvs DIR [--rounds 3]
       [--seconds 5] [--size-mib 1024] [--idle 1000] [--only NAME ...] [--cache DIR]

An nginx origin ("hello" at /, a SIZE MiB file at /big.bin) and every load
generator (wrk, curl, the ``tunnels`` tool) run on CPU 1; the proxy under test
runs on CPU 0 (``--workers 2`` gets both). Each round starts every proxy afresh,
in turn, and measures on it:
- fwd:     forward-proxy req/s for plain http, wrk -t1 -c50 with absolute-form
           requests (abs.lua sets wrk.path to the full URL; wrk sends to the proxy);
- tun:     new CONNECT tunnels per second: ``tunnels connect`` (C, epoll) keeps 50
           connections each doing CONNECT, one short GET, close, for SECONDS;
- thr:     CONNECT tunnel throughput: ``curl -p -x`` downloads SIZE MiB;
- rss:     RSS growth of the proxy's processes with IDLE tunnels open (each carried
           one keep-alive GET, then sits idle), per connection;
- s5tun / s5thr: the same two through SOCKS5 (``tunnels socks5``, ``curl --socks5``).
The direct path (no proxy) runs the same load, which is also the load tools'
ceiling. Rounds are interleaved; medians are reported with ratios and the
issue's goals. Every load is bounded in time. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchproc import free_port, med, session_rss_kib, started

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PROXY_CPU = "0"
LOAD_CPU = "1"
BOTH_CPUS = "0,1"

NGINX_CONF = """\
daemon off; master_process off; worker_processes 1; worker_rlimit_nofile 16384;
pid {work}/nginx.pid; error_log {work}/nginx-error.log crit;
events {{ worker_connections 8192; }}
http {{
  access_log off; sendfile on; tcp_nopush on;
  keepalive_timeout 300s; keepalive_requests 100000000;
  client_body_temp_path {work}/tmp; proxy_temp_path {work}/tmp; fastcgi_temp_path {work}/tmp;
  uwsgi_temp_path {work}/tmp; scgi_temp_path {work}/tmp;
  server {{
    listen 127.0.0.1:{port} backlog=4096; root {www};
    location = / {{ default_type text/plain; return 200 "hello"; }}
  }}
}}
"""

SQUID_CONF = """\
http_port 127.0.0.1:{port}
http_access allow all
cache deny all
access_log none
cache_store_log none
cache_log {work}/squid-cache.log
pid_filename {work}/squid-{port}.pid
coredump_dir {work}
workers 1
shutdown_lifetime 0 seconds
max_filedescriptors 16384
"""

DANTE_CONF = """\
logoutput: {work}/danted-{port}.log
internal: 127.0.0.1 port = {port}
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}
socks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 command: connect }}
"""

# measurement names, in report order, with their units and which direction is better
MEASURES: dict[str, tuple[str, str, bool]] = {
    "fwd": ("forward proxy, plain http, wrk -c50", "req/s", True),
    "tun": ("new CONNECT tunnels/s (CONNECT + GET + close, 50 at a time)", "tun/s", True),
    "thr": ("CONNECT tunnel throughput, curl -p -x, 1 download", "MB/s", True),
    "rss": ("RSS per idle CONNECT tunnel", "KiB/conn", False),
    "s5tun": ("new SOCKS5 tunnels/s (CONNECT + GET + close, 50 at a time)", "tun/s", True),
    "s5thr": ("SOCKS5 CONNECT throughput, curl --socks5, 1 download", "MB/s", True),
}


@dataclass
class Subject:
    """One thing under test: a proxy (command line) or the direct path (argv None)."""

    name: str
    argv: list[str] | None
    measures: tuple[str, ...]
    cpus: str = PROXY_CPU
    socks_only: bool = False
    skip: str = ""
    results: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    extra: dict[str, list[float]] = field(default_factory=dict)


def run(argv: list[str], timeout: float) -> str:
    """stdout of a bounded command (empty if it timed out or failed to start)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (subprocess.TimeoutExpired, OSError):
        return ""
    return done.stdout


class Bench:
    """Holds the origin, the tools and the settings; runs one measurement at a time."""

    def __init__(self, args: argparse.Namespace, work: Path, origin: int, size: int) -> None:
        self.args = args
        self.work = work
        self.origin = origin
        self.size = size
        self.tunnels = str(args.tunnels)
        self.ops = 0.0  # what the last load did: requests, tunnels or GiB (for CPU per op)

    # -- readiness -------------------------------------------------------------------------
    def probe(self, port: int | None, socks: bool) -> bool:
        argv = ["curl", "-s", "-m", "2", f"http://127.0.0.1:{self.origin}/"]
        if port is not None:
            argv[1:1] = ["--socks5", f"127.0.0.1:{port}"] if socks else ["-x", f"127.0.0.1:{port}"]
        return run(argv, 5) == "hello"

    def wait_ready(self, proc: subprocess.Popen[bytes], port: int, socks: bool) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return f"exited with status {proc.returncode}"
            if self.probe(port, socks):
                return ""
            time.sleep(0.1)
        return "did not answer within 20 s"

    # -- loads -------------------------------------------------------------------------------
    def fwd(self, port: int | None) -> tuple[float, str]:
        s = self.args.seconds
        url = f"http://127.0.0.1:{self.origin}/"
        env = {**os.environ, "ABS_URL": url, "ABS_HOST": f"127.0.0.1:{self.origin}"}
        argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c50", f"-d{s}s"]
        if port is None:
            argv.append(url)
        else:
            argv += ["-s", str(HERE / "abs.lua"), f"http://127.0.0.1:{port}/"]
        try:
            out = subprocess.run(
                argv, capture_output=True, text=True, timeout=s + 15, env=env, check=False
            ).stdout
        except subprocess.TimeoutExpired:
            return 0.0, "wrk timed out"
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        note = ""
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        errs = re.search(r"Socket errors: (.*)", out)
        if bad:
            note = f"{bad.group(1)} non-2xx answers"
        if errs:
            note = (note + "; " if note else "") + "socket errors: " + errs.group(1).strip()
        if not m:
            return 0.0, note or "no wrk result"
        if not float(m.group(1)):
            return 0.0, note or "no request completed"
        n = re.search(r"(\d+) requests in", out)
        self.ops = float(n.group(1)) if n else 0.0
        return (0.0 if bad else float(m.group(1))), note

    def tun(self, port: int | None, mode: str = "connect") -> tuple[float, str]:
        s = self.args.seconds
        argv = ["taskset", "-c", LOAD_CPU, self.tunnels, "direct" if port is None else mode]
        argv += [
            "127.0.0.1",
            str(port or 0),
            "127.0.0.1",
            str(self.origin),
            "-c",
            "50",
            "-d",
            str(s),
        ]
        out = run(argv, s + 15)
        m = re.search(r"done (\d+) errors (\d+) seconds ([\d.]+) rate (\d+)", out)
        if not m:
            return 0.0, "tunnels tool gave no result"
        done, errors = int(m.group(1)), int(m.group(2))
        self.ops = float(done)
        note = f"{errors} failed of {done + errors}" if errors else ""
        if not done + errors:
            note = f"no tunnel completed or failed in {s} s (stalled)"
        # more than 1% failures: the rate is not of working tunnels
        return (float(m.group(4)) if errors * 100 <= done else 0.0), note

    def s5tun(self, port: int | None) -> tuple[float, str]:
        return self.tun(port, "socks5")

    def thr(self, port: int | None, socks: bool = False) -> tuple[float, str]:
        t = self.args.transfer_timeout
        argv = ["taskset", "-c", LOAD_CPU, "curl", "-s", "-o", "/dev/null", "-m", str(t)]
        argv += ["-w", "%{size_download} %{time_total}"]
        if port is not None:
            argv += (
                ["--socks5", f"127.0.0.1:{port}"] if socks else ["-p", "-x", f"127.0.0.1:{port}"]
            )
        argv.append(f"http://127.0.0.1:{self.origin}/big.bin")
        out = run(argv, t + 10).split()
        if len(out) != 2:
            return 0.0, "curl gave no result"
        nbytes, seconds = int(out[0]), float(out[1])
        if nbytes != self.size:
            return 0.0, f"got {nbytes} of {self.size} bytes (timeout {t:.0f} s?)"
        self.ops = nbytes / (1 << 30)
        return nbytes / seconds / 1e6, ""

    def s5thr(self, port: int | None) -> tuple[float, str]:
        return self.thr(port, socks=True)

    def rss(self, port: int | None, proc: subprocess.Popen[bytes] | None) -> tuple[float, str]:
        if port is None or proc is None:
            return 0.0, ""
        n = self.args.idle
        hold = [self.tunnels, "connect", "127.0.0.1", str(port), "127.0.0.1", str(self.origin)]
        # warm up: a few tunnels opened and closed, so lazy first-use allocations are not
        # charged to the idle ones
        run(["taskset", "-c", LOAD_CPU, *hold, "-n", "20", "-d", "0.5"], 10)
        time.sleep(0.5)
        before = session_rss_kib(proc.pid)
        tool = subprocess.Popen(
            ["taskset", "-c", LOAD_CPU, *hold, "-n", str(n), "-d", "60"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert tool.stdout is not None
            line = tool.stdout.readline()  # "ready N errors E", within 60 s (the tool's bound)
            m = re.match(r"ready (\d+) errors (\d+)", line)
            if not m:
                return 0.0, "tunnels tool gave no result"
            ready, errors = int(m.group(1)), int(m.group(2))
            time.sleep(1.0)  # let the proxy settle
            after = session_rss_kib(proc.pid)
        finally:
            if tool.stdin:
                tool.stdin.close()
            try:
                tool.wait(10)
            except subprocess.TimeoutExpired:
                tool.kill()
                tool.wait()
        if ready < n * 0.99:
            return 0.0, f"only {ready} of {n} tunnels opened ({errors} failed)"
        note = f"{after / 1024:.0f} MiB in all with {ready} tunnels (from {before / 1024:.0f})"
        return (after - before) / ready, note

    # -- one subject, one round ---------------------------------------------------------------
    def round(self, subject: Subject) -> None:
        if subject.skip:
            return
        if subject.argv is None:
            self.measure(subject, None, None)
            return
        port = free_port()
        write_configs(self.work, subject, port)
        argv = [
            a.replace("{port}", str(port)).replace("{work}", str(self.work)) for a in subject.argv
        ]
        log = self.work / f"{subject.name.replace(' ', '_').replace('/', '_')}.log"
        with started(argv, subject.cpus, log) as proc:
            why = self.wait_ready(proc, port, subject.socks_only)
            if why:
                tail = (
                    log.read_text(errors="replace").strip().splitlines()[-1:]
                    if log.exists()
                    else []
                )
                subject.notes["start"] = why + (f": {tail[0][:160]}" if tail else "")
                print(f"  {subject.name}: {subject.notes['start']}", file=sys.stderr)
                return
            self.measure(subject, port, proc)

    def measure(
        self, subject: Subject, port: int | None, proc: subprocess.Popen[bytes] | None
    ) -> None:
        loads: dict[str, Callable[[], tuple[float, str]]] = {
            "rss": lambda: self.rss(port, proc),
            "fwd": lambda: self.fwd(port),
            "tun": lambda: self.tun(port),
            "thr": lambda: self.thr(port),
            "s5tun": lambda: self.s5tun(port),
            "s5thr": lambda: self.s5thr(port),
        }
        for name in subject.measures:
            if proc is not None and proc.poll() is not None:
                subject.notes[name] = f"proxy exited (status {proc.returncode})"
                continue
            direct = 0.0
            if port is not None and name in ("thr", "s5thr"):
                # a direct download right before this one: the 0.9x goal is judged on pairs
                # taken seconds apart, which a busy shared machine disturbs far less
                direct, _ = self.thr(None)
            self.ops = 0.0
            cpu0 = cpu_seconds(proc.pid) if proc is not None else 0.0
            value, note = loads[name]()
            if proc is not None and value and self.ops:
                # the proxy's own CPU per request/tunnel (us) or per GiB (s): a machine shared
                # with other work slows a proxy down, but hardly changes what it spends per op
                used = cpu_seconds(proc.pid) - cpu0
                scale = 1.0 if name in ("thr", "s5thr") else 1e6
                subject.extra.setdefault(name + "_cpu", []).append(used * scale / self.ops)
            if direct and value:
                subject.extra.setdefault(name + "_pair", []).append(value / direct)
            if note:
                subject.notes[name] = note
            if value:
                subject.results.setdefault(name, []).append(value)
            if name == "rss" and port is not None and proc is not None:
                # the 1,000 tunnels just closed: let the proxy finish with them first
                time.sleep(1.0)
                self.wait_ready(proc, port, subject.socks_only)
            print(f"  {subject.name:<28} {name:<6} {value:10.1f}  {note}", file=sys.stderr)


def cpu_seconds(sid: int) -> float:
    """User+system CPU seconds of the live processes of session ``sid`` (Linux /proc)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[3]) == sid:
                total += int(stat[11]) + int(stat[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if unit == "KiB/conn" else f"{value:.0f}"


# The --workers 1/2 rows: (names) -> extra flags.
WORKER_PAIRS = {
    ("rama --workers 1 (cpus 0,1)", "rama --workers 2 (cpus 0,1)"): (),
    ("rama general --workers 1", "rama general --workers 2"): ("--no-fast-path",),
}


def subjects(args: argparse.Namespace, rama_skip: str) -> list[Subject]:
    v = Path(args.venvs)
    rama = [*rama_command(), "serve", "proxy", "--bind", "127.0.0.1:{port}"]
    http = ("rss", "fwd", "tun", "thr")
    all_subjects = [
        Subject("direct (no proxy)", None, ("fwd", "tun", "thr", "s5tun", "s5thr")),
        Subject("rama", rama, (*http, "s5tun", "s5thr"), skip=rama_skip),
        # --workers 1 and 2 on both cores, on the fast path and on the general stack:
        # the general stack costs more per request, so there the proxy, not wrk and
        # nginx on the same two cores, is what runs out first.
        *(
            Subject(name, [*rama, *flags, "--workers", n], ("fwd",), cpus=BOTH_CPUS, skip=rama_skip)
            for pair, flags in WORKER_PAIRS.items()
            for name, n in zip(pair, ("1", "2"), strict=True)
        ),
        Subject("squid", ["squid", "-N", "-f", "{work}/squid-{port}.conf"], http),
        Subject(
            "proxy.py",
            [
                f"{v}/proxypy/bin/proxy",
                "--hostname",
                "127.0.0.1",
                "--port",
                "{port}",
                "--num-workers",
                "1",
                "--num-acceptors",
                "1",
                "--log-level",
                "ERROR",
            ],
            http,
        ),
        Subject(
            "mitmdump",
            [
                f"{v}/mitmproxy/bin/mitmdump",
                "-q",
                "--listen-host",
                "127.0.0.1",
                "-p",
                "{port}",
                "--set",
                "stream_large_bodies=1m",
                "--set",
                "confdir={work}/mitmproxy",
            ],
            http,
        ),
        Subject(
            "pproxy",
            [f"{v}/pproxy/bin/pproxy", "-l", "http://127.0.0.1:{port}"],
            http,
            # seen with pproxy 2.7.9: a second request on the connection, for another host,
            # was answered by the first request's origin
            notes={"fwd": "not per-request: relays a connection's later requests unparsed"},
        ),
        Subject(
            "pproxy socks5",
            [f"{v}/pproxy/bin/pproxy", "-l", "socks5://127.0.0.1:{port}"],
            ("s5tun", "s5thr"),
            socks_only=True,
        ),
        Subject(
            "dante",
            ["danted", "-f", "{work}/danted-{port}.conf", "-p", "{work}/danted-{port}.pid"],
            ("s5tun", "s5thr"),
            socks_only=True,
        ),
    ]
    if args.only:
        all_subjects = [s for s in all_subjects if any(o in s.name for o in args.only)]
    return all_subjects


def write_configs(work: Path, subject: Subject, port: int) -> None:
    """Write the per-port config files squid and dante read."""
    if subject.name == "squid":
        (work / f"squid-{port}.conf").write_text(SQUID_CONF.format(port=port, work=work))
    elif subject.name == "dante":
        (work / f"danted-{port}.conf").write_text(DANTE_CONF.format(port=port, work=work))


def rama_command() -> list[str]:
    """The `rama` command: this tree's .venv, or $RAMA_CMD (another tree's, for before/after)."""
    return shlex.split(os.environ.get("RAMA_CMD", "")) or [str(ROOT / ".venv/bin/rama")]


def probe_rama() -> str:
    """'' if `rama serve proxy` serves, else why the rama rows are skipped."""
    rama = rama_command()
    if not shutil.which(rama[0]):
        return f"{rama[0]} is missing (make bootstrap)"
    port = free_port()
    argv = [*rama, "serve", "proxy", "--bind", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = (proc.stdout.read() if proc.stdout else "").strip().splitlines()
                last = out[-1] if out else ""
                return f"`rama serve proxy` is not available: {last[:200]}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return ""
            except OSError:
                time.sleep(0.1)
        return "`rama serve proxy` did not listen within 20 s"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def report(subs: list[Subject], args: argparse.Namespace, rama_skip: str) -> None:
    by = {s.name: s for s in subs}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\nproxy bench: {args.rounds} round(s), {args.seconds} s per load, {args.size_mib} MiB"
        f" downloads, {args.idle} idle tunnels; proxy on CPU {PROXY_CPU}, nginx + load tools on"
        f" CPU {LOAD_CPU}; median [per round]; load avg {load}"
    )
    if rama_skip:
        print(f"rama rows SKIPPED: {rama_skip}")
    refs = {
        "fwd": ["squid", "proxy.py"],
        "tun": ["squid", "direct (no proxy)"],
        "thr": ["direct (no proxy)", "squid"],
        "rss": ["proxy.py", "squid"],
        "s5tun": ["pproxy socks5", "dante"],
        "s5thr": ["pproxy socks5", "dante", "direct (no proxy)"],
    }

    def val(name: str, key: str) -> float | None:
        return med(by[name].results.get(key, [])) if name in by else None

    def extra(name: str, key: str) -> float | None:
        return med(by[name].extra.get(key, [])) if name in by else None

    for key, (title, unit, _higher) in MEASURES.items():
        rows = [s for s in subs if key in s.measures]
        if not rows:
            continue
        ref_names = [r for r in refs[key] if r in by and key in by[r].measures]
        cpu_unit = {"rss": "", "thr": "CPU s/GiB", "s5thr": "CPU s/GiB"}.get(key, "CPU us/op")
        print(f"\n{title} ({unit})")
        head = f"  {'':<30}{unit:>10}  {'per round':<26}"
        head += "".join(f"{'/' + r.split(' ')[0]:>10}" for r in ref_names)
        head += f"{cpu_unit:>11}" + ("  paired/direct" if key in ("thr", "s5thr") else "")
        print(head)
        for s in rows:
            m = med(s.results.get(key, []))
            per = " ".join(fmt(x, unit) for x in s.results.get(key, []))
            cols = ""
            for r in ref_names:
                rr = ratio(m, val(r, key))
                cols += f"{rr:>10.2f}" if rr is not None else f"{'-':>10}"
            cpu = extra(s.name, key + "_cpu")
            if cpu_unit:
                cols += f"{cpu:>11.2f}" if cpu is not None else f"{'-':>11}"
            if key in ("thr", "s5thr"):
                pair = extra(s.name, key + "_pair")
                cols += f"{pair:>15.2f}" if pair is not None else f"{'-':>15}"
            note = "skipped" if s.skip else (s.notes.get(key) or s.notes.get("start", ""))
            print(f"  {s.name:<30}{fmt(m, unit):>10}  {per:<26}{cols}  {note}".rstrip())

    print("\ngoals (issue 15):")
    (w1, w2), (g1, g2) = WORKER_PAIRS
    # (goal, measured ratio, target, higher is better, the proxies' CPU-per-op ratio or None)
    goals = [
        (
            "forward req/s >= 1.0x squid",
            ratio(val("rama", "fwd"), val("squid", "fwd")),
            1.0,
            True,
            ratio(extra("squid", "fwd_cpu"), extra("rama", "fwd_cpu")),
        ),
        (
            "forward req/s >= 2x proxy.py",
            ratio(val("rama", "fwd"), val("proxy.py", "fwd")),
            2.0,
            True,
            ratio(extra("proxy.py", "fwd_cpu"), extra("rama", "fwd_cpu")),
        ),
        (
            "CONNECT throughput >= 0.9x direct (paired downloads)",
            extra("rama", "thr_pair"),
            0.9,
            True,
            None,
        ),
        (
            "new CONNECT tunnels/s >= squid",
            ratio(val("rama", "tun"), val("squid", "tun")),
            1.0,
            True,
            ratio(extra("squid", "tun_cpu"), extra("rama", "tun_cpu")),
        ),
        (
            "RSS per idle tunnel <= proxy.py's",
            ratio(val("rama", "rss"), val("proxy.py", "rss")),
            1.0,
            False,
            None,
        ),
        (
            "--workers 2 (cpus 0,1) vs 1 (cpu 0) forward req/s >= 1.7x",
            ratio(val(w2, "fwd"), val("rama", "fwd")),
            1.7,
            True,
            None,
        ),
    ]
    for text, r, target, higher, cpu_r in goals:
        if r is None:
            verdict = "not measured" + (" (rama skipped)" if rama_skip else "")
            print(f"  {text:<60} {'-':>6}  {verdict}")
            continue
        holds = r >= target if higher else r <= target
        line = f"  {text:<60} {r:>6.2f}  {'holds' if holds else 'DOES NOT HOLD'}"
        if cpu_r is not None:
            line += f"  (by CPU per op: {cpu_r:.2f}x)"
        print(line)
    for (one, two), text in (
        (
            (w1, w2),
            "like for like, both on cpus 0,1: --workers 2 / --workers 1 = {r}; wrk and"
            " nginx share those cores;",
        ),
        ((g1, g2), "general stack, --no-fast-path, cpus 0,1: --workers 2 / --workers 1 = {r};"),
    ):
        if val(one, "fwd") and val(two, "fwd"):
            r = f"{ratio(val(two, 'fwd'), val(one, 'fwd')):.2f}"
            cpu = f"{fmt(extra(one, 'fwd_cpu'), 'us')} vs {fmt(extra(two, 'fwd_cpu'), 'us')}"
            print(f"  ({text.format(r=r)} CPU us/req {cpu})")
    d_tun = val("direct (no proxy)", "tun")
    if d_tun:
        print(
            f"load tools' ceiling (direct path): tunnels tool {d_tun:.0f} conn/s,"
            f" wrk {fmt(val('direct (no proxy)', 'fwd'), 'req/s')} req/s;"
            " a proxy near these figures is limited by the tool/origin, not by itself"
        )
    print(
        "ratios: /name = this row's median over that row's (RSS: lower is better); CPU us/op ="
        " the proxy's user+sys CPU per request or tunnel (all its processes); by CPU per op ="
        " the other's CPU per op over rama's. The machine is shared: compare rows of one run."
    )


def make_origin_file(cache: Path, size_mib: int) -> Path:
    """A SIZE MiB file of random bytes, kept in the cache dir between runs."""
    path = cache / f"big-{size_mib}m.bin"
    if path.exists() and path.stat().st_size == size_mib << 20:
        return path
    tmp = path.with_suffix(".tmp")
    chunk = os.urandom(16 << 20)
    with open(tmp, "wb") as f:
        for i in range(size_mib // 16):
            f.write(chunk[i % 7 :] + chunk[: i % 7])  # not one block repeated verbatim
        f.write(chunk[: (size_mib % 16) << 20])
    tmp.rename(path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--idle", type=int, default=1000, help="idle tunnels for the RSS row")
    parser.add_argument("--transfer-timeout", type=float, default=60, help="s per download")
    parser.add_argument("--tunnels", type=Path, required=True, help="the built tunnels tool")
    parser.add_argument("--venvs", type=Path, required=True, help="dir of the peers' venvs")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--only", nargs="*", help="substrings of subject names to run")
    args = parser.parse_args(argv)
    rama_skip = probe_rama()
    if rama_skip:
        print(f"bench_proxy: rama rows skipped: {rama_skip}", file=sys.stderr)
    big = make_origin_file(args.cache, args.size_mib)
    with tempfile.TemporaryDirectory(prefix="rama-proxy-bench-") as tmp:
        work = Path(tmp)
        www = work / "www"
        (work / "tmp").mkdir()
        www.mkdir()
        (www / "big.bin").symlink_to(big)
        origin = free_port()
        (work / "nginx.conf").write_text(NGINX_CONF.format(work=work, port=origin, www=www))
        subs = subjects(args, rama_skip)
        bench = Bench(args, work, origin, big.stat().st_size)
        nginx = ["nginx", "-p", str(work), "-c", str(work / "nginx.conf"), "-e", "stderr"]
        with started(nginx, LOAD_CPU, work / "nginx.log") as ng:
            deadline = time.monotonic() + 10
            while not bench.probe(None, False):
                if ng.poll() is not None or time.monotonic() > deadline:
                    print("bench_proxy: the nginx origin did not start", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
                for s in subs:
                    bench.round(s)
        report(subs, args, rama_skip)
    return 0


if __name__ == "__main__":
    sys.exit(main())
