#!/usr/bin/env bash
# Relay throughput (rama-net): 1 GiB over loopback directly, through rama's TCP relay
# (zero-copy and copy loop, asyncio and trio) and through haproxy in TCP mode; prints
# MB/s and the ratios. Usage: bench_relay.sh [ROUNDS] [SIZE_MIB]. Bounded: 120 s per
# transfer, 15 min in all.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec timeout --signal=INT --kill-after=10 900 \
  .venv/bin/python tools/bench/relay/relay_bench.py --rounds "${1:-3}" --size-mib "${2:-1024}"
