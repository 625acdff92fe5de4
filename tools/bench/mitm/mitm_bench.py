"""MITM bench (issue 12): rama's MitmProxy vs mitmdump, intercepting HTTPS to an nginx origin.

Usage: python tools/bench/mitm/mitm_bench.py --mitmdump BIN [--rounds 3] [--requests 10000]
       [--size-mib 64] [--parallel 8] [--only NAME ...] [--profile FILE]

An nginx TLS origin (``hello`` at /, SIZE MiB at /big.bin) and the load tool
(curl) run on CPU 1, the MITM under test on CPU 0. Each round starts every
subject afresh, in turn (interleaved), and measures on it:
- req/s: REQUESTS intercepted HTTPS GETs, keep-alive, HTTP/1.1, curl
  ``--parallel`` (PARALLEL connections, each a CONNECT tunnel the MITM
  terminates with a leaf of its CA) through ``-x``;
- rss:   the MITM's RSS (MiB) right after those requests, i.e. with REQUESTS
  recorded flows (rama keeps them in its FlowStore; mitmdump keeps none);
- MB/s:  DOWNLOADS (3) SIZE MiB intercepted downloads (curl -x, streamed by both), and the
  RSS after it (flat when bodies stream: capture bounded at 64 KiB per body).
Subjects: rama (rama_mitm.py: HttpProxy + MitmProxy recording into a FlowStore),
rama-norec (no observer), rama-noop (an observer that does nothing), rama-serve
(``rama serve proxy --mitm``: the one-port server, no recording), mitmdump.
The direct path (no proxy) is the load tool's ceiling. Medians of the rounds,
ratios, and the issue's goals. Every load is bounded in time; loopback only.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchproc import free_port, med, session_rss_kib, started

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PROXY_CPU = "0"
LOAD_CPU = "1"

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
    listen 127.0.0.1:{port} ssl backlog=4096; root {www};
    ssl_certificate {work}/origin.pem; ssl_certificate_key {work}/origin.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location = / {{ default_type text/plain; return 200 "hello"; }}
  }}
}}
"""


@dataclass
class Subject:
    name: str
    argv: list[str] | None  # None: direct
    results: dict[str, list[float]] = field(default_factory=dict)
    note: str = ""


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, origin: int) -> None:
        self.args = args
        self.work = work
        self.origin = origin
        self.ca = str(work / "mitm-ca.pem")

    def curl(self, port: int | None) -> list[str]:
        argv = ["taskset", "-c", LOAD_CPU, "curl", "-s", "--http1.1"]
        if port is not None:
            argv += ["-x", f"http://127.0.0.1:{port}", "--cacert", self.ca]
        else:
            argv += ["--cacert", str(self.work / "origin-ca.pem")]
        return argv

    def probe(self, port: int | None) -> bool:
        argv = [*self.curl(port), "-m", "3", f"https://localhost:{self.origin}/"]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=6, check=False)
        except subprocess.TimeoutExpired:
            return False
        return r.stdout == "hello"

    def wait_ready(self, proc: subprocess.Popen[bytes], port: int) -> bool:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            if self.probe(port):
                return True
            time.sleep(0.2)
        return False

    def requests(self, port: int | None, n: int) -> float:
        """Requests per second for ``n`` keep-alive GETs, PARALLEL at a time."""
        cfg = self.work / f"urls-{n}.txt"
        if not cfg.exists():
            url = f'url = "https://localhost:{self.origin}/"\noutput = "/dev/null"\n'
            cfg.write_text(url * n)
        argv = [
            *self.curl(port),
            "--parallel",
            "--parallel-max",
            str(self.args.parallel),
            "--parallel-immediate",
            "-w",
            "%{http_code}\n",
            "-K",
            str(cfg),
        ]
        t0 = time.monotonic()
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        except subprocess.TimeoutExpired:
            return 0.0
        elapsed = time.monotonic() - t0
        ok = r.stdout.split().count("200")
        if ok != n:
            print(f"  {ok}/{n} requests answered 200", file=sys.stderr)
        return ok / elapsed

    def download(self, port: int | None) -> float:
        argv = [
            *self.curl(port),
            "-m",
            "120",
            "-o",
            "/dev/null",
            "-w",
            "%{speed_download} %{size_download}",
            f"https://localhost:{self.origin}/big.bin",
        ]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=150, check=False)
        try:
            speed, size = r.stdout.split()
        except ValueError:
            return 0.0
        if int(size) != self.args.size_mib << 20:
            print(f"  download got {size} bytes", file=sys.stderr)
            return 0.0
        return float(speed) / 1e6

    def round(self, s: Subject) -> None:
        n = self.args.requests
        if s.argv is None:
            s.results.setdefault("req", []).append(self.requests(None, n))
            for _ in range(self.args.downloads):
                s.results.setdefault("thr", []).append(self.download(None))
            return
        port = free_port()
        argv = [a.replace("{port}", str(port)) for a in s.argv]
        with started(argv, PROXY_CPU, self.work / f"{s.name}.log") as proc:
            if not self.wait_ready(proc, port):
                s.note = f"did not start (see {self.work / (s.name + '.log')})"
                return
            self.requests(port, 200)  # warm up: leaves issued, pools open
            with self.profiled(s, proc, "req"):
                s.results.setdefault("req", []).append(self.requests(port, n))
            s.results.setdefault("rss", []).append(session_rss_kib(proc.pid) / 1024)
            with self.profiled(s, proc, "thr"):
                for _ in range(self.args.downloads):
                    s.results.setdefault("thr", []).append(self.download(port))
            s.results.setdefault("rss_dl", []).append(session_rss_kib(proc.pid) / 1024)

    @contextmanager
    def profiled(self, s: Subject, proc: subprocess.Popen[bytes], phase: str) -> Iterator[None]:
        """py-spy the rama MITM during one phase (``--profile FILE --profile-phase``)."""
        if not self.args.profile or s.name != "rama" or self.args.profile_phase != phase:
            yield
            return
        out = f"{self.args.profile}.{phase}.txt"
        prof = subprocess.Popen(
            ["py-spy", "record", "-r", "250", "-f", "raw", "-o", out, "-p", str(proc.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # py-spy attaches
        try:
            yield
        finally:
            prof.send_signal(signal.SIGINT)
            prof.wait(30)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--mitmdump", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--size-mib", type=int, default=64)
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--downloads", type=int, default=3, help="downloads per round")
    p.add_argument("--only", nargs="*")
    p.add_argument("--profile", help="py-spy the rama MITM: FILE.PHASE.txt (collapsed stacks)")
    p.add_argument("--profile-phase", choices=["req", "thr"], default="req")
    args = p.parse_args()
    sys.path[:0] = [str(ROOT / "packages" / n / "src") for n in ("rama-tls", "rama-core")]
    from rama_tls import CertificateAuthority

    with tempfile.TemporaryDirectory(prefix="rama-bench-mitm-") as tmp:
        work = Path(tmp)
        (work / "tmp").mkdir()
        www = work / "www"
        www.mkdir()
        with open(www / "big.bin", "wb") as f:
            f.truncate(args.size_mib << 20)
        origin_ca = CertificateAuthority.create("bench origin CA")
        leaf = origin_ca.issue("localhost", "127.0.0.1")
        (work / "origin.pem").write_bytes(leaf.chain_pem())
        (work / "origin.key").write_bytes(leaf.key_pem())
        (work / "origin-ca.pem").write_bytes(origin_ca.cert_pem())
        mitm_ca = CertificateAuthority.create("bench MITM CA")
        mitm_ca.save(work / "mitm-ca.pem", work / "mitm-ca.key")
        ca_dir = work / "ca-dir"  # the same CA for `rama serve proxy --mitm --ca-dir`
        ca_dir.mkdir()
        mitm_ca.save(ca_dir / "ca.pem", ca_dir / "ca.key")
        confdir = work / "mitmproxy"
        confdir.mkdir()
        # mitmproxy's CA file: key and certificate in one PEM
        (confdir / "mitmproxy-ca.pem").write_bytes(
            (work / "mitm-ca.key").read_bytes() + mitm_ca.cert_pem()
        )
        origin = free_port()
        (work / "nginx.conf").write_text(NGINX_CONF.format(work=work, port=origin, www=www))
        py = sys.executable
        rama_cmd = [py, str(HERE / "rama_mitm.py"), "{port}", str(work / "mitm-ca.pem"),
                    str(work / "mitm-ca.key"), str(work / "origin-ca.pem")]  # fmt: skip
        subjects = [
            Subject("direct", None),
            Subject("rama", rama_cmd),
            Subject("rama-norec", [*rama_cmd, "--no-record"]),
            Subject("rama-noop", [*rama_cmd, "--noop-observer"]),
            Subject(
                "rama-serve",
                [
                    str(Path(py).parent / "rama"),
                    "serve",
                    "proxy",
                    "--bind",
                    "127.0.0.1:{port}",
                    "--mitm",
                    "--ca-dir",
                    str(ca_dir),
                    "--upstream-ca",
                    str(work / "origin-ca.pem"),
                    "--log-level",
                    "warning",
                ],
            ),
            Subject(
                "mitmdump",
                [
                    args.mitmdump,
                    "-q",
                    "--listen-host",
                    "127.0.0.1",
                    "-p",
                    "{port}",
                    "--set",
                    f"confdir={confdir}",
                    "--set",
                    f"ssl_verify_upstream_trusted_ca={work / 'origin-ca.pem'}",
                    "--set",
                    "stream_large_bodies=1m",
                ],
            ),
        ]
        if args.only:
            subjects = [s for s in subjects if s.name in args.only or s.name == "direct"]
        nginx = ["nginx", "-p", str(work), "-c", str(work / "nginx.conf"), "-e", "stderr"]
        bench = Bench(args, work, origin)
        with started(nginx, LOAD_CPU, work / "nginx.log"):
            deadline = time.monotonic() + 10
            while not bench.probe(None):
                if time.monotonic() > deadline:
                    print("bench_mitm: the nginx origin did not start", file=sys.stderr)
                    print((work / "nginx.log").read_text(), file=sys.stderr)
                    return 1
                time.sleep(0.1)
            for r in range(args.rounds):
                for s in subjects:
                    print(f"round {r + 1}: {s.name}", file=sys.stderr, flush=True)
                    bench.round(s)
        report(subjects, args)
    return 0


def report(subjects: list[Subject], args: argparse.Namespace) -> None:
    print(
        f"MITM bench: {args.rounds} interleaved rounds, medians; {args.requests} keep-alive "
        f"HTTPS GETs (curl --parallel {args.parallel}, HTTP/1.1, -x), {args.downloads} x "
        f"{args.size_mib} MiB downloads per round; MITM on CPU {PROXY_CPU}, "
        f"nginx TLS origin + curl on CPU {LOAD_CPU}"
    )
    print(f"{'subject':<12} {'req/s':>9} {'MB/s':>9} {'RSS MiB':>9} {'RSS MiB':>9}")
    print(f"{'':<12} {'':>9} {'':>9} {'N flows':>9} {'+ dl':>9}")
    by = {s.name: s for s in subjects}
    for s in subjects:
        vals = [med(s.results.get(k)) for k in ("req", "thr", "rss", "rss_dl")]
        cells = [f"{x:9.1f}" if x is not None else f"{'-':>9}" for x in vals]
        print(f"{s.name:<12} {' '.join(cells)}  {s.note}")
    rama, mitm = by.get("rama"), by.get("mitmdump")
    if rama and mitm:
        for key, label, goal in (("req", "req/s", 3.0), ("thr", "MB/s", 2.0)):
            a, b = med(rama.results.get(key)), med(mitm.results.get(key))
            if a and b:
                verdict = "met" if a / b >= goal else "NOT met"
                print(f"rama / mitmdump {label}: {a / b:.2f}x (goal >= {goal:g}x: {verdict})")


if __name__ == "__main__":
    sys.exit(main())
