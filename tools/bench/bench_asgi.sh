#!/usr/bin/env bash
# ASGI hosting: a FastAPI app with one JSON route (tools/bench/asgi/fastapi_app.py) served
# by rama's AsgiService (httptools engine, uvloop), uvicorn (httptools, uvloop) and hypercorn
# (uvloop), req/s by wrk -c50; then a WebSocket echo (messages/s, python-websockets client
# loop, 8 connections) against rama and uvicorn (websockets). Servers are pinned to CPU 0,
# clients to CPU 1; rounds are interleaved; prints medians of the rounds and the ratios.
# Usage: bench_asgi.sh [ROUNDS] [SECONDS]   (defaults: 3 rounds x 5 s per server)
# Bounded: wrk -d and the client's own deadline, a hard timeout around each, and a startup
# wait of at most 30 s per server (FastAPI imports slowly on a busy machine).
set -uo pipefail
R=${1:-3}; S=${2:-5}
cd "$(dirname "$0")/../.."
PY=${PYTHON:-$PWD/.venv/bin/python}
BIN=$(dirname "$PY")
here=$PWD/tools/bench/asgi
for tool in wrk taskset curl; do
  command -v "$tool" >/dev/null || { echo "bench_asgi: $tool is missing" >&2; exit 1; }
done
for mod in fastapi uvicorn hypercorn httptools uvloop websockets; do
  $PY -c "import $mod" 2>/dev/null || { echo "bench_asgi: $mod is not installed (tools/requirements-dev.txt)" >&2; exit 1; }
done

UV="$BIN/uvicorn --app-dir $here fastapi_app:app --port PORT --log-level error --no-access-log"
http_names=(rama-asgi uvicorn-httptools-uvloop hypercorn-uvloop)
ws_names=(rama-asgi-ws uvicorn-websockets-uvloop)
declare -A CMD=(
  [rama-asgi]="$PY $here/rama_asgi.py PORT httptools uvloop"
  [uvicorn-httptools-uvloop]="$UV --http httptools --loop uvloop"
  [hypercorn-uvloop]="$BIN/hypercorn --bind 127.0.0.1:PORT --log-level error --worker-class uvloop $here/fastapi_app.py:app"
  [rama-asgi-ws]="$PY $here/rama_asgi.py PORT httptools uvloop"
  [uvicorn-websockets-uvloop]="$UV --http httptools --loop uvloop --ws websockets"
)
declare -A RES
port=$((48700 + RANDOM % 500))

start() {  # start NAME; sets pid, port, up
  port=$((port + 1)); local c=${CMD[$1]//PORT/$port}
  taskset -c 0 $c >/dev/null 2>&1 & pid=$!
  up=0
  for _ in $(seq 300); do
    curl -s -o /dev/null "http://127.0.0.1:$port/json" && { up=1; break; }
    sleep 0.1
  done
  [[ $up == 1 ]] || echo "bench_asgi: $1 did not start" >&2
}
stop() {  # SIGTERM, then SIGKILL after 5 s: a server that does not exit cannot hang the bench
  kill "$pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
}

for r in $(seq "$R"); do
  for name in "${http_names[@]}"; do
    start "$name"; rps=0
    if [[ $up == 1 ]]; then
      rps=$(timeout $((S + 10)) taskset -c 1 wrk -t1 -c50 -d"${S}s" "http://127.0.0.1:$port/json" 2>/dev/null \
        | awk '/Requests\/sec/{print int($2)}')
    fi
    stop; RES[$name]="${RES[$name]:-} ${rps:-0}"
  done
  for name in "${ws_names[@]}"; do
    start "$name"; mps=0
    if [[ $up == 1 ]]; then
      mps=$(timeout $((S + 15)) taskset -c 1 "$PY" "$here/ws_client.py" "ws://127.0.0.1:$port/ws" "$S" 8 2>/dev/null)
    fi
    stop; RES[$name]="${RES[$name]:-} ${mps:-0}"
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print (NR ? a[int((NR+1)/2)] : 0)}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
declare -A MED
echo "FastAPI one JSON route, wrk -t1 -c50 -d${S}s, $R round(s); median req/s [all rounds]"
for name in "${http_names[@]}"; do
  MED[$name]=$(echo "${RES[$name]}" | median)
  printf '  %-28s %8s  [%s]\n' "$name" "${MED[$name]}" "${RES[$name]# }"
done
echo "FastAPI WebSocket echo, 8 connections x ${S}s, $R round(s); median messages/s [all rounds]"
for name in "${ws_names[@]}"; do
  MED[$name]=$(echo "${RES[$name]}" | median)
  printf '  %-28s %8s  [%s]\n' "$name" "${MED[$name]}" "${RES[$name]# }"
done
echo "ratios of the medians, and the median of the per-round ratios [per round] (goal: rama-asgi / uvicorn >= 1.2):"
for pair in "rama-asgi uvicorn-httptools-uvloop" "rama-asgi hypercorn-uvloop" \
            "rama-asgi-ws uvicorn-websockets-uvloop"; do
  read -r a b <<<"$pair"
  read -r -a ra <<<"${RES[$a]}"; read -r -a rb <<<"${RES[$b]}"
  per=""
  for i in "${!ra[@]}"; do per="$per $(ratio "${ra[$i]}" "${rb[$i]:-0}")"; done
  printf '  %-14s / %-26s %s   per-round median %s  [%s]\n' "$a" "$b" \
    "$(ratio "${MED[$a]}" "${MED[$b]}")" "$(echo "$per" | tr " " "\n" | grep -v -e n/a -e "^$" | median)" "${per# }"
done
echo "(loopback on a shared 2-core machine: compare ratios within one run, not absolute figures)"
