#!/usr/bin/env bash
# rama-tls emulation engine vs the stdlib-ssl connector (rama_tls.tls_connect), both clients of
# the same nginx (TLS 1.3, ECDSA P-256 certificate, loopback): full handshakes per second
# (connect + handshake + close, sequential, certificate verified) and the MB/s of 64 MiB
# downloads over HTTP/1.1 (repeated for as long, at least twice). The emulated client sends
# Chrome's ClientHello (profile 46: ML-KEM and X25519 key shares, nginx picks X25519) and
# Safari's (profile 34: X25519 only). nginx allows TLS_AES_256_GCM_SHA384 only, so every
# client does the same record work.
# nginx pinned to CPU 0, the client to CPU 1; rounds interleaved; prints medians and the
# emulated/stdlib ratios (goals from issue 10: handshakes >= 0.5x, download >= 0.8x), both per
# wall second and per second of client CPU (steadier when other jobs share the machine).
# Usage: bench_tls_emulation.sh [ROUNDS] [SECONDS]   (defaults 3 rounds x 2 s per measurement)
# Bounded: every measurement has a deadline, and a hard timeout wraps the client.
set -uo pipefail
R=${1:-3}; S=${2:-2}
cd "$(dirname "$0")/../.."
PY=${PYTHON:-$PWD/.venv/bin/python}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for tool in taskset "$NGINX"; do
  command -v "$tool" >/dev/null || { echo "bench_tls_emulation: $tool is missing" >&2; exit 1; }
done

work=$(mktemp -d)
nginx_pid=""
cleanup() { [[ -n "$nginx_pid" ]] && kill "$nginx_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# a CA and a leaf (cryptography's verifier, like browsers, refuses a CA certificate as the leaf)
"$PY" - "$work" <<'EOF'
import sys
from pathlib import Path

from rama_tls import CertificateAuthority

work = Path(sys.argv[1])
ca = CertificateAuthority.create("bench_tls_emulation CA")
(work / "ca.pem").write_bytes(ca.cert_pem())
ca.issue("localhost").save(work / "cert.pem", work / "key.pem")
EOF
mkdir -p "$work/www"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$work/www/big.bin"
port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/body;
    proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fastcgi;
    uwsgi_temp_path $work/uwsgi;
    scgi_temp_path $work/scgi;
    sendfile on;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets off;
        # one AEAD for every client (Chrome's profile would pick ChaCha20): same work on both sides
        ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384;
        root $work/www;
    }
}
EOF
taskset -c 0 "$NGINX" -p "$work" -c "$work/nginx.conf" -e "$work/error.log" &
nginx_pid=$!
for _ in $(seq 100); do
  (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  sleep 0.05
done

cat >"$work/bench.py" <<'EOF'
import json
import statistics
import sys
import time
from pathlib import Path

import anyio
from cryptography import x509
from anyio.streams.tls import TLSAttribute
from cryptography.x509.verification import Store

from rama_tls import TlsClientConfig, tls_connect
from rama_tls.emulation import ClientHelloSpec, emulated_tls_connect

port, ca_file, rounds, seconds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
profiles = json.loads(Path("packages/rama-ua/src/rama_ua/data/ua_profiles.json").read_text())
specs = {
    name: ClientHelloSpec.from_profile(profiles[i]["tls_client_hello"]).with_alpn(["http/1.1"])
    for name, i in (("chrome", 46), ("safari", 34))
}
ca_pem = Path(ca_file).read_bytes()
store = Store(x509.load_pem_x509_certificates(ca_pem))
config = TlsClientConfig(ca_pem=ca_pem, alpn_protocols=("http/1.1",))
sslctx = config.build_ssl_context()
ciphers = {}


async def open_std():
    tcp = await anyio.connect_tcp("127.0.0.1", port)
    return await tls_connect(tcp, "localhost", config, ssl_context=sslctx)


def opener(spec):
    async def open_emulated():
        tcp = await anyio.connect_tcp("127.0.0.1", port)
        return await emulated_tls_connect(tcp, server_name="localhost", spec=spec, ca=store)

    return open_emulated


async def handshakes(open_) -> tuple[float, float]:
    """(handshakes per wall second, per client CPU second)."""
    n, start, cpu_start = 0, time.perf_counter(), time.process_time()
    with anyio.fail_after(seconds + 30):
        while time.perf_counter() - start < seconds:
            stream = await open_()
            await stream.aclose()
            n += 1
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu_start)


async def download(open_) -> tuple[float, float]:
    """(wall MB/s, MB per client CPU second) over repeated 64 MiB downloads for at least
    ``seconds`` (at least two). CPU time is what the client spends: it moves less than
    wall time when other jobs share the machine."""
    total, elapsed, cpu, n = 0.0, 0.0, 0.0, 0
    while n < 2 or elapsed < seconds:
        got, took, used = await download_once(open_)
        total, elapsed, cpu, n = total + got, elapsed + took, cpu + used, n + 1
    return total / elapsed / 1e6, total / cpu / 1e6


async def download_once(open_) -> tuple[int, float, float]:
    with anyio.fail_after(120):
        stream = await open_()
        start = time.perf_counter()
        cpu_start = time.process_time()
        await stream.send(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        total = 0
        try:
            while True:
                total += len(await stream.receive(262144))
        except anyio.EndOfStream:
            pass
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        ciphers[open_] = stream.extra(TLSAttribute.cipher)[0]
        await stream.aclose()
    assert total > 64 * 1024 * 1024, total
    return total, elapsed, cpu


async def main() -> None:
    clients = {"stdlib-ssl": open_std, **{f"emulated-{k}": opener(v) for k, v in specs.items()}}
    hs: dict[str, list[float]] = {name: [] for name in clients}
    hs_cpu: dict[str, list[float]] = {name: [] for name in clients}
    wall: dict[str, list[float]] = {name: [] for name in clients}
    cpu: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(rounds):
        for name, open_ in clients.items():
            h, hc = await handshakes(open_)
            hs[name].append(h)
            hs_cpu[name].append(hc)
            w, c = await download(open_)
            wall[name].append(w)
            cpu[name].append(c)
    med = {k: statistics.median(v) for k, v in hs.items()}
    med_hc = {k: statistics.median(v) for k, v in hs_cpu.items()}
    med_w = {k: statistics.median(v) for k, v in wall.items()}
    med_c = {k: statistics.median(v) for k, v in cpu.items()}
    for name in clients:
        print(
            f"{name:16s} handshakes {med[name]:6.1f}/s wall {med_hc[name]:6.1f}/CPU s;"
            f" 64 MiB downloads {med_w[name]:6.1f} MB/s wall {med_c[name]:6.1f} MB/CPU s"
            f" ({ciphers[clients[name]]})"
        )
    base = "stdlib-ssl"
    for name in clients:
        if name != base:
            print(
                f"ratio {name}/{base}: handshakes {med[name] / med[base]:.2f}x wall,"
                f" {med_hc[name] / med_hc[base]:.2f}x per CPU s (goal >= 0.5x);"
                f" download {med_w[name] / med_w[base]:.2f}x wall,"
                f" {med_c[name] / med_c[base]:.2f}x per CPU s (goal >= 0.8x)"
            )


anyio.run(main)
EOF
timeout 600 taskset -c 1 "$PY" "$work/bench.py" "$port" "$work/ca.pem" "$R" "$S"
