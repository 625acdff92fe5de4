#!/usr/bin/env bash
# rama-tls on loopback, next to nginx as the reference (bounded: about 30 s).
#  1. full TLS handshakes per second (openssl s_time -new, 5 s each):
#     nginx TLS vs the rama termination proxy (acceptor + forwarder to nginx plain);
#  2. download throughput of a 64 MiB file with curl through both.
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
head -c $((64 * 1024 * 1024)) /dev/urandom > "$work/www/big.bin"
tls_port=$(free_port); plain_port=$(free_port); proxy_port=$(free_port)
cat > "$work/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
pid $work/nginx.pid; error_log $work/error.log warn;
events { worker_connections 1024; }
http {
  access_log off; sendfile on;
  client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  server { listen 127.0.0.1:$tls_port ssl; ssl_certificate $work/cert.pem;
           ssl_certificate_key $work/key.pem; ssl_session_cache off; ssl_session_tickets off;
           root $work/www; }
  server { listen 127.0.0.1:$plain_port; root $work/www; }
}
CONF
nginx -p "$work" -c "$work/nginx.conf" -e "$work/error.log" & pids+=($!)
$PY examples/tls_termination_proxy.py --listen "127.0.0.1:$proxy_port" \
  --backend "127.0.0.1:$plain_port" --cert "$work/cert.pem" --key "$work/key.pem" \
  > "$work/proxy.log" 2>&1 & pids+=($!)
wait_port "$tls_port"; wait_port "$plain_port"; wait_port "$proxy_port"

printf '%-34s %s\n' "target" "result"
for target in "nginx-tls:$tls_port" "rama-termination-proxy:$proxy_port"; do
  name=${target%%:*}; port=${target##*:}
  out=$(openssl s_time -connect "127.0.0.1:$port" -new -time 5 2>&1 | grep -m1 "real seconds" || true)
  conns=$(awk '{print $1}' <<<"$out"); secs=$(awk '{print $4}' <<<"$out")
  rate=$($PY -c "print(f'{int(\"${conns:-0}\")/float(\"${secs:-1}\"):.0f}')")
  printf '%-34s %s handshakes/s (TLS 1.3, full, 1 client)\n' "$name" "$rate"
done
for target in "nginx-tls:$tls_port" "rama-termination-proxy:$proxy_port"; do
  name=${target%%:*}; port=${target##*:}
  speed=$(curl -s --max-time 30 --cacert "$work/cert.pem" -o /dev/null \
    -w '%{speed_download}' "https://localhost:$port/big.bin")
  printf '%-34s %s MB/s (64 MiB download, curl)\n' "$name" "$($PY -c "print(f'{float(\"$speed\")/1e6:.0f}')")"
done
