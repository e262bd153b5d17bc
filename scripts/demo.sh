#!/usr/bin/env bash
# The main job on an embedded default: builds the lab (scripts/lab.sh), runs
# portcullis in the router namespace with real nftables, lets a LAN client ask
# for mappings (Debian's natpmpc, and portcullis' own PCP client), and shows a
# WAN host getting through only while a mapping exists. Needs root;
# everything stays inside namespaces this script creates and removes.
set -euo pipefail
cd "$(dirname "$0")/.."
export LAB_PREFIX=${LAB_PREFIX:-demo}
BACKEND=${BACKEND:-nft}

[ "$(id -u)" = 0 ] || { echo "demo: run as root (it creates network namespaces)" >&2; exit 1; }
bash scripts/ensure-tools.sh
[ -f dist/src/cli.js ] || npm run build

log=$(mktemp)
state=$(mktemp -d)
bash scripts/lab.sh up
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; bash scripts/lab.sh down; rm -rf "$log" "$log.rx" "$state"; }
trap cleanup EXIT

echo "== portcullis in the router namespace (LAN br-lan, WAN wan0, backend $BACKEND)"
bash scripts/lab.sh exec rtr node dist/src/cli.js serve --lan br-lan --wan wan0 --backend "$BACKEND" --state-dir "$state" >"$log" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q '"event":"started"' "$log" && break; sleep 0.1; done
grep -q '"event":"started"' "$log" || { cat "$log"; exit 1; }

run() { echo; echo "== lan\$ $*"; bash scripts/lab.sh exec lan "$@" | grep -E 'Public IP|Mapped|result|error|fail' || true; }

# A WAN host sends one datagram; does the LAN host's listener get it?
probe() { # proto(4|6) to-address port
  bash scripts/lab.sh exec lan timeout 2 socat -u "UDP$1-RECV:$3,reuseaddr" STDOUT >"$log.rx" 2>/dev/null &
  local listener=$!
  sleep 0.3
  local host=$2; [ "$1" = 6 ] && host="[$2]"
  echo "hello from the WAN" | bash scripts/lab.sh exec wan socat -u STDIN "UDP$1-SENDTO:$host:$3"
  wait "$listener" || true
  if grep -q hello "$log.rx"; then echo "   wan → $2:$3/udp: ARRIVED"; else echo "   wan → $2:$3/udp: dropped"; fi
}

echo; echo "== before any request"
probe 4 198.51.100.1 40001
probe 6 2001:db8:77::2 40003

run natpmpc -g 192.168.77.1
run natpmpc -g 192.168.77.1 -a 40001 40001 udp 3600
probe 4 198.51.100.1 40001
run node dist/src/cli.js pcp map --server 2001:db8:77::1 --proto udp --port 40003 --lifetime 600
probe 6 2001:db8:77::2 40003

echo; echo "== the kernel's view (router namespace): elements with their own timeouts"
bash scripts/lab.sh exec rtr nft list table inet portcullis | grep -A5 -E 'map dnat4 |set pinholes6 ' | grep -E 'expires' || true

run natpmpc -g 192.168.77.1 -a 0 40001 udp 0
probe 4 198.51.100.1 40001

echo; echo "== the daemon's decisions (JSON log lines)"
grep -E '"event":"(map|unmap)"' "$log"
