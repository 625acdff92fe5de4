#!/usr/bin/env bash
# rama-tls emulation engine vs the stdlib-ssl connector (rama_tls.tls_connect), both clients of
# the same nginx (TLS 1.3, ECDSA P-256 certificate, loopback): full handshakes per second
# (connect + handshake + close, sequential, certificate verified) and the MB/s of 64 MiB
# downloads over HTTP/1.1 (repeated for as long, at least twice). The emulated client sends
# Chrome's ClientHello (profile 46: ML-KEM and X25519 key shares, nginx picks X25519) and
# Safari's (profile 34: X25519 only).
# nginx pinned to CPU 0, the client to CPU 1; rounds interleaved; prints medians and the
# emulated/stdlib ratios (goals from issue 10: handshakes >= 0.5x, download >= 0.8x).
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


async def handshakes(open_) -> float:
    n, start = 0, time.perf_counter()
    with anyio.fail_after(seconds + 30):
        while time.perf_counter() - start < seconds:
            stream = await open_()
            await stream.aclose()
            n += 1
    return n / (time.perf_counter() - start)


async def download(open_) -> float:
    """MB/s over repeated 64 MiB downloads for at least ``seconds`` (at least two)."""
    total, elapsed, n = 0.0, 0.0, 0
    while n < 2 or elapsed < seconds:
        got, took = await download_once(open_)
        total, elapsed, n = total + got, elapsed + took, n + 1
    return total / elapsed / 1e6


async def download_once(open_) -> tuple[int, float]:
    with anyio.fail_after(120):
        stream = await open_()
        start = time.perf_counter()
        await stream.send(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        total = 0
        try:
            while True:
                total += len(await stream.receive(262144))
        except anyio.EndOfStream:
            pass
        elapsed = time.perf_counter() - start
        ciphers[open_] = stream.extra(TLSAttribute.cipher)[0]
        await stream.aclose()
    assert total > 64 * 1024 * 1024, total
    return total, elapsed


async def main() -> None:
    clients = {"stdlib-ssl": open_std, **{f"emulated-{k}": opener(v) for k, v in specs.items()}}
    hs = {name: [] for name in clients}
    dl = {name: [] for name in clients}
    for _ in range(rounds):
        for name, open_ in clients.items():
            hs[name].append(await handshakes(open_))
            dl[name].append(await download(open_))
    med_hs = {k: statistics.median(v) for k, v in hs.items()}
    med_dl = {k: statistics.median(v) for k, v in dl.items()}
    for name in clients:
        print(
            f"{name:18s} handshakes/s {med_hs[name]:8.1f}   64 MiB download"
            f" {med_dl[name]:8.1f} MB/s   ({ciphers[clients[name]]})"
        )
    for name in clients:
        if name != "stdlib-ssl":
            print(
                f"ratio {name}/stdlib-ssl: handshakes {med_hs[name] / med_hs['stdlib-ssl']:.2f}x"
                f" (goal >= 0.5x), download {med_dl[name] / med_dl['stdlib-ssl']:.2f}x (goal >= 0.8x)"
            )


anyio.run(main)
EOF
timeout 600 taskset -c 1 "$PY" "$work/bench.py" "$port" "$work/ca.pem" "$R" "$S"
