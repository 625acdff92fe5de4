#!/usr/bin/env bash
# rama's HTTP client vs httpx, aiohttp and requests against nginx on loopback (bounded: a few
# minutes). Sequential and 50-concurrent GETs of a small body and 1 MiB, HTTP/1.1 cleartext and
# TLS, and h2 over TLS; medians of 5, ratios rama/other, then each client's CPU time per
# request. aiohttp comes from tools/bench/requirements.txt.
# BENCH_SCALE=0.3 shortens every row, BENCH_ONLY=h2,https/1.1 picks rows (while iterating).
# The machine is shared with other engineers: compare rows of one run, not runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not listening" >&2; return 1; }

$PY - "$work" <<'PY'
import sys
from rama_tls import self_signed
self_signed("localhost", "127.0.0.1").save(f"{sys.argv[1]}/cert.pem", f"{sys.argv[1]}/key.pem")
PY
mkdir -p "$work/www" "$work/tmp"
printf 'hello\n' > "$work/www/small"
head -c $((1024 * 1024)) /dev/urandom > "$work/www/1m"
tls_port=$(free_port); plain_port=$(free_port); h2_port=$(free_port)
cat > "$work/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
pid $work/nginx.pid; error_log $work/error.log warn;
events { worker_connections 1024; }
http {
  access_log off; sendfile on; keepalive_requests 100000;
  client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  server { listen 127.0.0.1:$tls_port ssl; ssl_certificate $work/cert.pem;
           ssl_certificate_key $work/key.pem; root $work/www; }
  server { listen 127.0.0.1:$plain_port; root $work/www; }
  server { listen 127.0.0.1:$h2_port ssl http2; ssl_certificate $work/cert.pem;
           ssl_certificate_key $work/key.pem; root $work/www; }
}
CONF
nginx -p "$work" -c "$work/nginx.conf" -e "$work/error.log" & pids+=($!)
wait_port "$tls_port"; wait_port "$plain_port"; wait_port "$h2_port"
$PY tools/bench/client/bench_client.py --http "http://127.0.0.1:$plain_port" \
  --https "https://localhost:$tls_port" --h2 "https://localhost:$h2_port" --cafile "$work/cert.pem" --scale "${BENCH_SCALE:-1}" \
  --only "${BENCH_ONLY:-}"
