#!/usr/bin/env bash
# h2 hello-world req/s: rama's auto server (its default "fast" h2 engine, and the "h2"-library
# reference engine as rama-h2ref) vs hypercorn with the same handler, measured by
# h2load (cleartext prior knowledge, and TLS with ALPN h2). Server pinned to CPU 0, h2load to
# CPU 1, rounds interleaved; prints per-server medians and the rama/hypercorn ratios.
# Usage: bench_h2.sh [ROUNDS] [SECONDS]   (defaults 3 rounds x 4 s per server and mode)
# Every run is bounded: h2load -D, plus a hard timeout around it.
set -uo pipefail
R=${1:-3}; S=${2:-4}
cd "$(dirname "$0")/../.."
PY=${PYTHON:-$PWD/.venv/bin/python}
for tool in h2load taskset openssl; do
  command -v "$tool" >/dev/null || { echo "bench_h2: $tool is missing" >&2; exit 1; }
done
$PY -c "import hypercorn" 2>/dev/null || { echo "bench_h2: hypercorn is not installed (tools/requirements-dev.txt)" >&2; exit 1; }

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$work/key.pem" -out "$work/cert.pem" \
  >/dev/null 2>&1

cat >"$work/hello_asgi.py" <<'EOF'
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})
EOF

cat >"$work/rama_hello.py" <<'EOF'
import ssl
import sys

import anyio

from rama_core import service_fn
from rama_http import Response
from rama_http.server import ServerConfig, serve

port, loop, tls = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "tls"
config = None
if len(sys.argv) > 6:  # an engine; without one the default (also for RAMA_BASE trees)
    from rama_http import H2Config

    config = ServerConfig(h2=H2Config(engine=sys.argv[6]))
HEADERS = [("content-type", "text/plain")]


@service_fn
async def hello(ctx, req):
    return Response(200, headers=HEADERS, body=b"hello")


ctx = None
if tls:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])
    ctx.set_alpn_protocols(["h2", "http/1.1"])  # serve() uses the context as it is
anyio.run(
    lambda: serve(("127.0.0.1", port), hello, config, ssl_context=ctx),
    backend_options={"use_uvloop": loop == "uvloop"},
)
EOF

declare -A CMD=(
  [rama-asyncio]="$PY $work/rama_hello.py PORT asyncio MODE $work/cert.pem $work/key.pem"
  [rama-uvloop]="$PY $work/rama_hello.py PORT uvloop MODE $work/cert.pem $work/key.pem"
  [rama-h2ref-asyncio]="$PY $work/rama_hello.py PORT asyncio MODE $work/cert.pem $work/key.pem h2"
  [rama-h2ref-uvloop]="$PY $work/rama_hello.py PORT uvloop MODE $work/cert.pem $work/key.pem h2"
  [hypercorn-asyncio]="$PY -m hypercorn --bind 127.0.0.1:PORT --log-level error TLSARGS hello_asgi:app"
  [hypercorn-uvloop]="$PY -m hypercorn --worker-class uvloop --bind 127.0.0.1:PORT --log-level error TLSARGS hello_asgi:app"
)
names=(rama-asyncio rama-uvloop rama-h2ref-asyncio rama-h2ref-uvloop hypercorn-asyncio hypercorn-uvloop)
# RAMA_BASE=<another checkout>: also run that tree's rama (same script, its sources) for before/after
if [[ -n ${RAMA_BASE:-} ]]; then
  base_pp=$(ls -d "$RAMA_BASE"/packages/*/src | paste -sd:)
  CMD[base-asyncio]="env PYTHONPATH=$base_pp ${CMD[rama-asyncio]}"
  CMD[base-uvloop]="env PYTHONPATH=$base_pp ${CMD[rama-uvloop]}"
  names+=(base-asyncio base-uvloop)
fi
declare -A RES
port=$((40000 + RANDOM % 20000))
for mode in plain tls; do
  for r in $(seq "$R"); do
    for name in "${names[@]}"; do
      port=$((port + 1))
      tlsargs=""; scheme=http
      if [[ $mode == tls ]]; then
        tlsargs="--certfile $work/cert.pem --keyfile $work/key.pem"; scheme=https
      fi
      c=${CMD[$name]//PORT/$port}; c=${c//MODE/$mode}; c=${c//TLSARGS/$tlsargs}
      (cd "$work" && exec taskset -c 0 $c) >"$work/$name.log" 2>&1 &
      pid=$!
      ready=""
      for _ in $(seq 50); do
        if [[ $mode == tls ]]; then
          curl -sk -m 1 -o /dev/null --http2 "https://127.0.0.1:$port/" && ready=1 && break
        else
          curl -s -m 1 -o /dev/null --http2-prior-knowledge "http://127.0.0.1:$port/" && ready=1 && break
        fi
        sleep 0.1
      done
      if [[ -z $ready ]]; then
        echo "bench_h2: $name ($mode) did not answer; its log:" >&2
        tail -5 "$work/$name.log" >&2
      fi
      out=$(timeout $((S + 20)) taskset -c 1 h2load -D "$S" --warm-up-time=1 -c 10 -m 10 \
        "$scheme://127.0.0.1:$port/" 2>&1)
      rps=$(awk '/^finished in/{gsub(",", "", $4); print int($4)}' <<<"$out")
      failed=$(awk '/^requests:/{print $10}' <<<"$out")
      if [[ -n ${failed:-} && ${failed} != 0 ]]; then
        echo "bench_h2: $name ($mode) had $failed failed requests" >&2
      fi
      kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
      RES[$mode/$name]="${RES[$mode/$name]:-} ${rps:-0}"
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]+0}'; }
echo "h2load -c10 -m10, ${S}s x $R rounds per server (shared 2-core machine: compare ratios, not absolutes)"
printf '%-6s %-20s %10s  %s\n' mode server median "rounds"
declare -A MED
for mode in plain tls; do
  for name in "${names[@]}"; do
    m=$(echo "${RES[$mode/$name]}" | median)
    MED[$mode/$name]=$m
    printf '%-6s %-20s %10s  [%s]\n' "$mode" "$name" "$m" "${RES[$mode/$name]# }"
  done
  for loop in asyncio uvloop; do
    a=${MED[$mode/rama-$loop]}; b=${MED[$mode/hypercorn-$loop]}
    awk -v a="$a" -v b="$b" -v m="$mode" -v l="$loop" \
      'BEGIN{printf "ratio %-5s rama/hypercorn (%s): %s\n", m, l, (b > 0 ? sprintf("%.2f", a / b) : "n/a")}'
    h=${MED[$mode/rama-h2ref-$loop]}
    awk -v a="$a" -v h="$h" -v m="$mode" -v l="$loop" \
      'BEGIN{printf "ratio %-5s rama fast/h2ref (%s): %s\n", m, l, (h > 0 ? sprintf("%.2f", a / h) : "n/a")}'
    if [[ -n ${RAMA_BASE:-} ]]; then
      c=${MED[$mode/base-$loop]}
      awk -v a="$a" -v c="$c" -v m="$mode" -v l="$loop" \
        'BEGIN{printf "ratio %-5s rama/base      (%s): %s\n", m, l, (c > 0 ? sprintf("%.2f", a / c) : "n/a")}'
    fi
  done
done
