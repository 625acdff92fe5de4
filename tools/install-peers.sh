#!/usr/bin/env bash
# Make sure every real peer the tests need (tools/peers.txt) is installed.
# As root with apt-get, missing ones are installed non-interactively; otherwise
# the script lists what is missing and fails, so tests never skip silently.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
missing=()
while read -r cmd pkg; do
  [[ -z "$cmd" || "$cmd" == \#* ]] && continue
  if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x "/usr/sbin/$cmd" ]]; then
    missing+=("$pkg")
  fi
done < "$here/peers.txt"
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "installing peers: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts daemons on install; the tests run their own on loopback ports.
  for svc in nginx haproxy squid danted; do
    if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
  done
else
  echo "missing test peers (install them, e.g. apt-get install ${missing[*]}): ${missing[*]}" >&2
  exit 1
fi
