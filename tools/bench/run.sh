#!/usr/bin/env bash
# `make bench`: run every tools/bench/bench_*.sh in turn (each is loopback-only and
# bounded in time) and keep their output under .bench/.
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
exit $status
