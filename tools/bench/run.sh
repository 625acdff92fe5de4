#!/usr/bin/env bash
# `make bench`: run every tools/bench/bench_*.sh, then every tools/bench/bench_*.py, in turn
# (each is loopback-only or in-process and bounded in time) and keep their output under .bench/.
set -uo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .bench
if [[ -f tools/bench/requirements.txt ]]; then
  .venv/bin/python -m pip install -q -r tools/bench/requirements.txt
fi
status=0
shopt -s nullglob
for bench in tools/bench/bench_*.sh; do
  name="$(basename "$bench" .sh)"
  echo "=== $name ==="
  if ! bash "$bench" 2>&1 | tee ".bench/$name.txt"; then
    echo "!!! $name failed" >&2
    status=1
  fi
done
# in-process benchmarks (no sockets): pinned to one core like the servers above
for bench in tools/bench/bench_*.py; do
  name="$(basename "$bench" .py)"
  echo "=== $name ==="
  if ! timeout 600 taskset -c 0 .venv/bin/python "$bench" 2>&1 | tee ".bench/$name.txt"; then
    echo "!!! $name failed" >&2
    status=1
  fi
done
exit $status
