#!/usr/bin/env bash
# Proxy bench (issue 15): rama's forward/CONNECT/SOCKS5 proxy (`rama serve proxy`) vs squid,
# proxy.py, mitmdump, pproxy and dante, with an nginx origin, the proxy pinned to CPU 0 and
# nginx + the load tools (wrk, curl, tunnels) on CPU 1. Rows: forward req/s (wrk -c50,
# absolute-form), new CONNECT tunnels/s, CONNECT throughput (1 GiB, curl -p -x), RSS with 1,000
# idle tunnels, SOCKS5 throughput and tunnels/s, --workers 2 vs 1; medians of interleaved rounds,
# ratios and the issue's goals. The rama rows are skipped (with the reason) when `rama serve
# proxy` is not available.
# Peers: squid and danted from tools/peers.txt (make peers); proxy.py, mitmproxy and pproxy are
# installed here, each in its own venv under $RAMA_BENCH_CACHE (pinned in
# tools/bench/requirements-<peer>.txt; pproxy without uvloop). The load tool tools/bench/proxy/
# tunnels.c is built here with cc.
# Usage: bench_proxy.sh [ROUNDS] [SECONDS] [SIZE_MIB]   (defaults 3, 5, 1024)
# Extra arguments after those go to proxy_bench.py (e.g. --only squid rama). RAMA_CMD="..." runs
# another `rama` command for the rama rows (default: this tree's .venv/bin/rama).
# Bounded: every load has its own time limit, and the whole run is cut at 30 min.
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${1:-3}; S=${2:-5}; SIZE=${3:-1024}
shift $(( $# < 3 ? $# : 3 ))
PY=${PYTHON:-$PWD/.venv/bin/python}
CACHE=${RAMA_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rama-bench}
VENVS=$CACHE/proxy-venvs
mkdir -p "$VENVS"
for tool in wrk curl taskset nginx squid danted cc; do
  command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] \
    || { echo "bench_proxy: $tool is missing (make peers; cc: apt-get install gcc)" >&2; exit 1; }
done
export PATH=$PATH:/usr/sbin

# each pip peer in its own venv, rebuilt when its requirements file changes
for peer in proxypy mitmproxy pproxy; do
  req=tools/bench/requirements-$peer.txt
  venv=$VENVS/$peer
  if ! cmp -s "$req" "$venv/.requirements" 2>/dev/null; then
    echo "bench_proxy: installing $peer into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    timeout 600 "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
    cp "$req" "$venv/.requirements"
  fi
done
if "$VENVS/pproxy/bin/python" -c 'import uvloop' 2>/dev/null; then
  echo "bench_proxy: uvloop is in the pproxy venv; remove $VENVS/pproxy" >&2; exit 1
fi

tunnels=$CACHE/tunnels
if [[ ! -x $tunnels || tools/bench/proxy/tunnels.c -nt $tunnels ]]; then
  cc -O2 -Wall -o "$tunnels" tools/bench/proxy/tunnels.c
fi
# 1,000 idle tunnels hold ~2,000 descriptors in the proxy
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)"

exec timeout --signal=INT --kill-after=20 1800 "$PY" tools/bench/proxy/proxy_bench.py \
  --rounds "$R" --seconds "$S" --size-mib "$SIZE" --tunnels "$tunnels" --venvs "$VENVS" \
  --cache "$CACHE" "$@"
