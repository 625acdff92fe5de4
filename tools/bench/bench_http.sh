#!/usr/bin/env bash
# HTTP/1.1 hello-world req/s over keep-alive, measured by wrk (-c50): rama's HTTP/1.1 server
# with each engine (fast, httptools, h11) vs uvicorn (h11, httptools; asyncio and uvloop) and
# hypercorn, all serving the same 5-byte text/plain answer. Servers are pinned to CPU 0, wrk
# to CPU 1; rounds are interleaved; prints per-server medians and rama/uvicorn ratios.
# Usage: bench_http.sh [ROUNDS] [SECONDS]   (defaults: 3 rounds x 5 s per server)
# Bounded: wrk -d, a hard timeout around it, and a startup wait of at most 10 s per server.
set -uo pipefail
R=${1:-3}; S=${2:-5}
cd "$(dirname "$0")/../.."
PY=${PYTHON:-$PWD/.venv/bin/python}
BIN=$(dirname "$PY")
here=$PWD/tools/bench/http
for tool in wrk taskset curl; do
  command -v "$tool" >/dev/null || { echo "bench_http: $tool is missing" >&2; exit 1; }
done
for mod in uvicorn hypercorn httptools uvloop; do
  $PY -c "import $mod" 2>/dev/null || { echo "bench_http: $mod is not installed (tools/requirements-dev.txt)" >&2; exit 1; }
done

UV="$BIN/uvicorn --app-dir $here hello_asgi:app --port PORT --log-level error --no-access-log"
names=(rama-fast rama-fast-uvloop rama-httptools rama-httptools-uvloop rama-h11 rama-auto-uvloop
       uvicorn-httptools uvicorn-httptools-uvloop uvicorn-h11 hypercorn)
declare -A CMD=(
  [rama-fast]="$PY $here/rama_hello.py PORT fast"
  [rama-fast-uvloop]="$PY $here/rama_hello.py PORT fast uvloop"
  [rama-httptools]="$PY $here/rama_hello.py PORT httptools"
  [rama-httptools-uvloop]="$PY $here/rama_hello.py PORT httptools uvloop"
  [rama-h11]="$PY $here/rama_hello.py PORT h11"
  [rama-auto-uvloop]="$PY $here/rama_hello.py PORT auto uvloop server"
  [uvicorn-httptools]="$UV --http httptools --loop asyncio"
  [uvicorn-httptools-uvloop]="$UV --http httptools --loop uvloop"
  [uvicorn-h11]="$UV --http h11 --loop asyncio"
  [hypercorn]="$BIN/hypercorn --bind 127.0.0.1:PORT --log-level error $here/hello_asgi.py:app"
)
# RAMA_BASE=<another checkout>: also run that tree's rama (its own script and sources) for before/after
if [[ -n ${RAMA_BASE:-} ]]; then
  base_pp=$(ls -d "$RAMA_BASE"/packages/*/src | paste -sd:)
  for v in fast-uvloop httptools-uvloop auto-uvloop; do
    CMD[base-$v]="env PYTHONPATH=$base_pp ${CMD[rama-$v]//$here\//$RAMA_BASE/tools/bench/http/}"
    names+=("base-$v")
  done
fi
declare -A RES
port=$((48200 + RANDOM % 500))
for r in $(seq "$R"); do
  for name in "${names[@]}"; do
    port=$((port + 1)); c=${CMD[$name]//PORT/$port}
    taskset -c 0 $c >/dev/null 2>&1 & pid=$!
    up=0
    for _ in $(seq 100); do
      curl -s -o /dev/null "http://127.0.0.1:$port/" && { up=1; break; }
      sleep 0.1
    done
    rps=0
    if [[ $up == 1 ]]; then
      rps=$(timeout $((S + 10)) taskset -c 1 wrk -t1 -c50 -d"${S}s" "http://127.0.0.1:$port/" 2>/dev/null \
        | awk '/Requests\/sec/{print int($2)}')
    else
      echo "bench_http: $name did not start" >&2
    fi
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    RES[$name]="${RES[$name]:-} ${rps:-0}"
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print (NR ? a[int((NR+1)/2)] : 0)}'; }
declare -A MED
echo "HTTP/1.1 hello, wrk -t1 -c50 -d${S}s, $R round(s); median req/s [all rounds]"
for name in "${names[@]}"; do
  MED[$name]=$(echo "${RES[$name]}" | median)
  printf '  %-26s %8s  [%s]\n' "$name" "${MED[$name]}" "${RES[$name]# }"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo "ratios:"
# like for like: same event loop, same parser family
pairs=(
  "rama-httptools-uvloop uvicorn-httptools-uvloop"
  "rama-fast-uvloop uvicorn-httptools-uvloop"
  "rama-auto-uvloop uvicorn-httptools-uvloop"
  "rama-httptools uvicorn-httptools"
  "rama-fast uvicorn-httptools"
  "rama-h11 uvicorn-h11"
  "rama-fast hypercorn"
)
[[ -n ${RAMA_BASE:-} ]] && pairs+=(
  "rama-fast-uvloop base-fast-uvloop"
  "rama-httptools-uvloop base-httptools-uvloop"
  "rama-auto-uvloop base-auto-uvloop"
)
for pair in "${pairs[@]}"; do
  read -r rama other <<<"$pair"
  printf '  %-22s / %-26s %s\n' "$rama" "$other" "$(ratio "${MED[$rama]}" "${MED[$other]}")"
done
echo "(loopback on a shared 2-core machine: compare ratios within one run, not absolute figures)"
