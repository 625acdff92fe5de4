#!/usr/bin/env bash
# MITM bench (issue 12): rama's MitmProxy (recording flows, without a recorder, and as `rama serve
# proxy --mitm`) vs mitmdump,
# intercepting HTTPS to an nginx TLS origin; the MITM pinned to CPU 0, nginx + curl on CPU 1.
# Rows: intercepted HTTPS req/s (curl --parallel keep-alive through -x), 64 MiB intercepted
# downloads (MB/s, 3 a round), RSS after the req/s load's 10,000 recorded flows; medians of interleaved
# rounds, ratios and the issue's goals (>= 3x mitmdump req/s, >= 2x MB/s).
# mitmdump is installed here in its own venv under $RAMA_BENCH_CACHE (the same venv and pin as
# bench_proxy.sh: tools/bench/requirements-mitmproxy.txt).
# Usage: bench_mitm.sh [ROUNDS] [REQUESTS] [SIZE_MIB]   (defaults 3, 10000, 64)
# Extra arguments go to tools/bench/mitm/mitm_bench.py (e.g. --only rama, --profile out.json).
# Bounded: every load has its own time limit, and the whole run is cut at 20 min.
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${1:-3}; N=${2:-10000}; SIZE=${3:-64}
shift $(( $# < 3 ? $# : 3 ))
PY=${PYTHON:-$PWD/.venv/bin/python}
CACHE=${RAMA_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rama-bench}
VENVS=$CACHE/proxy-venvs
mkdir -p "$VENVS"
for tool in curl taskset nginx; do
  command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] \
    || { echo "bench_mitm: $tool is missing (make peers)" >&2; exit 1; }
done
export PATH=$PATH:/usr/sbin
req=tools/bench/requirements-mitmproxy.txt
venv=$VENVS/mitmproxy
if ! cmp -s "$req" "$venv/.requirements" 2>/dev/null; then
  echo "bench_mitm: installing mitmproxy into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  timeout 600 "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
  cp "$req" "$venv/.requirements"
fi
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec timeout --signal=INT --kill-after=20 1200 "$PY" tools/bench/mitm/mitm_bench.py \
  --mitmdump "$venv/bin/mitmdump" --rounds "$R" --requests "$N" --size-mib "$SIZE" "$@"
