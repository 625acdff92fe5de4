#!/usr/bin/env bash
# h2 hello-world req/s: rama's auto server (its default "fast" h2 engine, and the "h2"-library
# reference engine as rama-h2ref) vs hypercorn and granian (ASGI, one worker) with the same
# handler, measured by h2load -m10 at -c10 and -c100 (cleartext prior knowledge, and TLS with
# ALPN h2); then a 1 GiB download from rama over TLS with curl, h2 vs HTTP/1.1. Server pinned
# to CPU 0, clients to CPU 1, rounds interleaved; prints per-server medians and ratios.
# Usage: bench_h2.sh [ROUNDS] [SECONDS]   (defaults 3 rounds x 4 s per server and mode)
# RAMA_BASE=<another checkout> adds that tree's rama (-c10 rows) for before/after.
# BENCH_H2_DOWNLOAD=0 skips the download; BENCH_H2_C100=0 the -c100 rows;
# BENCH_H2_SERVERS="rama-uvloop base-uvloop ..." runs only those servers.
# Every run is bounded: h2load -D, curl -m, plus a hard timeout around each.
set -uo pipefail
R=${1:-3}; S=${2:-4}
cd "$(dirname "$0")/../.."
PY=${PYTHON:-$PWD/.venv/bin/python}
for tool in h2load taskset openssl; do
  command -v "$tool" >/dev/null || { echo "bench_h2: $tool is missing" >&2; exit 1; }
done
$PY -c "import hypercorn" 2>/dev/null || { echo "bench_h2: hypercorn is not installed (tools/requirements-dev.txt)" >&2; exit 1; }
GRANIAN=$(dirname "$PY")/granian
[[ -x $GRANIAN ]] || echo "bench_h2: granian is not installed (tools/bench/requirements.txt): no granian row" >&2

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
CHUNK = b"x" * (256 * 1024)
BIG = 1024 * 1024 * 1024  # /big: 1 GiB, streamed in 256 KiB chunks


async def _big():
    for _ in range(BIG // len(CHUNK)):
        yield CHUNK


@service_fn
async def hello(ctx, req):
    if req.target == "/big":
        from rama_http import Body

        return Response(200, headers=HEADERS, body=Body.from_iter(_big(), length=BIG))
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
if [[ -x $GRANIAN ]]; then
  # granian's own I/O is Rust (one worker, one runtime thread); the loop only runs the app.
  CMD[granian]="$GRANIAN --interface asgi --host 127.0.0.1 --port PORT --loop uvloop --log-level error GTLSARGS hello_asgi:app"
  names+=(granian)
fi
# RAMA_BASE=<another checkout>: also run that tree's rama (same script, its sources) for before/after
if [[ -n ${RAMA_BASE:-} ]]; then
  base_pp=$(ls -d "$RAMA_BASE"/packages/*/src | paste -sd:)
  CMD[base-asyncio]="env PYTHONPATH=$base_pp ${CMD[rama-asyncio]}"
  CMD[base-uvloop]="env PYTHONPATH=$base_pp ${CMD[rama-uvloop]}"
  names+=(base-asyncio base-uvloop)
fi
if [[ -n ${BENCH_H2_SERVERS:-} ]]; then
  read -ra names <<<"$BENCH_H2_SERVERS"
fi
declare -A RES
port=$((20000 + RANDOM % 10000))  # below the ephemeral range (32768-)
pid=""
# start NAME MODE: start a server on a fresh $port, pinned to CPU 0; waits until it answers
start() {
  local name=$1 mode=$2 tlsargs="" gtlsargs="" ready=""
  port=$((port + 1))
  if [[ $mode == tls ]]; then
    tlsargs="--certfile $work/cert.pem --keyfile $work/key.pem"
    gtlsargs="--ssl-certificate $work/cert.pem --ssl-keyfile $work/key.pem"
  fi
  local c=${CMD[$name]//PORT/$port}; c=${c//MODE/$mode}; c=${c//GTLSARGS/$gtlsargs}
  c=${c//TLSARGS/$tlsargs}
  (cd "$work" && exec taskset -c 0 $c) >"$work/$name.log" 2>&1 &
  pid=$!
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
}
stop() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=""; }
conns=(10)
[[ ${BENCH_H2_C100:-1} != 0 ]] && conns+=(100)
for conc in "${conns[@]}"; do
  for mode in plain tls; do
    for r in $(seq "$R"); do
      for name in "${names[@]}"; do
        [[ $conc != 10 && $name == base-* ]] && continue
        start "$name" "$mode"
        scheme=http; [[ $mode == tls ]] && scheme=https
        out=$(timeout $((S + 30)) taskset -c 1 h2load -D "$S" --warm-up-time=1 -c "$conc" -m 10 \
          "$scheme://127.0.0.1:$port/" 2>&1)
        rps=$(awk '/^finished in/{gsub(",", "", $4); print int($4)}' <<<"$out")
        failed=$(awk '/^requests:/{print $10}' <<<"$out")
        if [[ -n ${failed:-} && ${failed} != 0 ]]; then
          echo "bench_h2: $name ($mode, -c$conc) had $failed failed requests" >&2
        fi
        stop
        RES[$conc/$mode/$name]="${RES[$conc/$mode/$name]:-} ${rps:-0}"
      done
    done
  done
done

# 1 GiB from rama (fast engine, uvloop) over TLS: curl h2 vs curl HTTP/1.1, same server
declare -A DL
if [[ ${BENCH_H2_DOWNLOAD:-1} != 0 ]]; then
  for r in $(seq "$R"); do
    start rama-uvloop tls
    for proto in http2 http1.1; do
      speed=$(timeout 120 taskset -c 1 curl -sk -m 110 --"$proto" -o /dev/null \
        -w '%{speed_download} %{size_download}' "https://127.0.0.1:$port/big")
      size=${speed#* }; speed=${speed% *}
      if [[ ${size:-0} != 1073741824 ]]; then
        echo "bench_h2: download over $proto got ${size:-0} bytes" >&2; speed=0
      fi
      DL[$proto]="${DL[$proto]:-} $(awk -v s="${speed:-0}" 'BEGIN{printf "%d", s / 1e6}')"
    done
    stop
  done
fi

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]+0}'; }
ratio() { awk -v a="$2" -v b="$3" -v t="$1" 'BEGIN{printf "ratio %-44s %s\n", t ":", (b > 0 ? sprintf("%.2f", a / b) : "n/a")}'; }
echo "h2load -m10, ${S}s x $R rounds per server (shared 2-core machine: compare ratios, not absolutes)"
printf '%-5s %-6s %-20s %10s  %s\n' conns mode server median "rounds"
declare -A MED
for conc in "${conns[@]}"; do
  for mode in plain tls; do
    for name in "${names[@]}"; do
      [[ $conc != 10 && $name == base-* ]] && continue
      m=$(echo "${RES[$conc/$mode/$name]}" | median)
      MED[$conc/$mode/$name]=$m
      printf '%-5s %-6s %-20s %10s  [%s]\n' "-c$conc" "$mode" "$name" "$m" "${RES[$conc/$mode/$name]# }"
    done
    for loop in asyncio uvloop; do
      a=${MED[$conc/$mode/rama-$loop]:-0}
      ratio "-c$conc $mode rama/hypercorn ($loop)" "$a" "${MED[$conc/$mode/hypercorn-$loop]:-0}"
      ratio "-c$conc $mode rama fast/h2ref ($loop)" "$a" "${MED[$conc/$mode/rama-h2ref-$loop]:-0}"
      if [[ -n ${CMD[granian]:-} ]]; then
        ratio "-c$conc $mode rama/granian ($loop)" "$a" "${MED[$conc/$mode/granian]:-0}"
      fi
      if [[ -n ${RAMA_BASE:-} && $conc == 10 ]]; then
        ratio "-c$conc $mode rama/base ($loop)" "$a" "${MED[$conc/$mode/base-$loop]:-0}"
      fi
    done
  done
done
if [[ -n ${DL[http2]:-} ]]; then
  h2=$(echo "${DL[http2]}" | median); h1=$(echo "${DL[http1.1]}" | median)
  echo "1 GiB download from rama (uvloop) over TLS, curl, MB/s: h2 $h2 [${DL[http2]# }]," \
    "HTTP/1.1 $h1 [${DL[http1.1]# }]"
  ratio "download h2/HTTP/1.1 (same server, same TLS)" "$h2" "$h1"
fi
