#!/usr/bin/env bash
# Create .venv (if missing) and install every package editable plus dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
args=()
for p in packages/*/; do args+=(-e "$p"); done
.venv/bin/python -m pip install -q -r tools/requirements-dev.txt "${args[@]}"
