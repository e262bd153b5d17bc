#!/usr/bin/env bash
# The main job on an embedded default: builds the lab (scripts/lab.sh), runs
# portcullis in the router namespace, and lets a LAN client (Debian's
# natpmpc) ask for mappings. Needs root; everything stays inside namespaces
# this script creates and removes.
set -euo pipefail
cd "$(dirname "$0")/.."
export LAB_PREFIX=${LAB_PREFIX:-demo}
BACKEND=${BACKEND:-memory}

[ "$(id -u)" = 0 ] || { echo "demo: run as root (it creates network namespaces)" >&2; exit 1; }
command -v natpmpc >/dev/null || { echo "demo: install natpmpc (apt-get install natpmpc)" >&2; exit 1; }
[ -f dist/src/cli.js ] || npm run build

log=$(mktemp)
bash scripts/lab.sh up
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; bash scripts/lab.sh down; }
trap cleanup EXIT

echo "== portcullis in the router namespace (LAN br-lan, WAN wan0, backend $BACKEND)"
bash scripts/lab.sh exec rtr node dist/src/cli.js serve --lan br-lan --wan wan0 --backend "$BACKEND" >"$log" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q '"event":"started"' "$log" && break; sleep 0.1; done
grep -q '"event":"started"' "$log" || { cat "$log"; exit 1; }

run() { echo; echo "== lan\$ $*"; bash scripts/lab.sh exec lan "$@" | grep -E 'Public IP|Mapped|error|fail' || true; }
run natpmpc -g 192.168.77.1
run natpmpc -g 192.168.77.1 -a 40001 40001 udp 3600
run natpmpc -g 192.168.77.1 -a 40002 40002 tcp 7200
run natpmpc -g 192.168.77.1 -a 0 40001 udp 0

echo; echo "== the daemon's decisions (JSON log lines)"
grep -E '"event":"(map|unmap)"' "$log"
