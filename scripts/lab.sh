#!/usr/bin/env bash
# The portcullis lab: network namespaces on this machine only.
#
#   lan  (192.168.77.2,  2001:db8:77::2)  ─┐
#   lan2 (192.168.77.3,  2001:db8:77::3)  ─┴─ br-lan ─ rtr ─ wan0 ─── wan (198.51.100.2, 2001:db8:ff::2)
#                               rtr: 192.168.77.1 / 2001:db8:77::1      198.51.100.1 / 2001:db8:ff::1
#
# Documentation and private ranges, inside namespaces this script made; nothing
# leaves them. LAB_PREFIX names the namespaces ("$LAB_PREFIX-rtr" …) so parallel
# test runs do not collide.
#
# usage: lab.sh up | down | exec NODE CMD... | shell [NODE] | status
set -euo pipefail
P=${LAB_PREFIX:-pcl}
NS_LAN=$P-lan NS_LAN2=$P-lan2 NS_RTR=$P-rtr NS_WAN=$P-wan

. "$(dirname "${BASH_SOURCE[0]}")/lab-base-firewall.sh"

need() { command -v "$1" >/dev/null || { echo "lab: '$1' not found: install the Debian package $2" >&2; exit 1; }; }

up() {
  [ "$(id -u)" = 0 ] || { echo "lab: needs root (network namespaces)" >&2; exit 1; }
  need ip iproute2; need nft nftables
  down 2>/dev/null || true
  for ns in $NS_LAN $NS_LAN2 $NS_RTR $NS_WAN; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # No duplicate-address detection: addresses are usable at once.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  done
  ip -n "$NS_RTR" link add br-lan type bridge
  ip -n "$NS_RTR" link set br-lan up
  local i=1
  for ns in $NS_LAN $NS_LAN2; do
    ip -n "$ns" link add eth0 type veth peer name lanp$i netns "$NS_RTR"
    ip -n "$NS_RTR" link set lanp$i master br-lan up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" addr add 192.168.77.$((i + 1))/24 dev eth0
    ip -n "$ns" addr add 2001:db8:77::$((i + 1))/64 dev eth0 nodad
    ip -n "$ns" route add default via 192.168.77.1
    ip -n "$ns" -6 route add default via 2001:db8:77::1
    i=$((i + 1))
  done
  ip -n "$NS_RTR" addr add 192.168.77.1/24 dev br-lan
  ip -n "$NS_RTR" addr add 2001:db8:77::1/64 dev br-lan nodad
  ip -n "$NS_RTR" link add wan0 type veth peer name eth0 netns "$NS_WAN"
  ip -n "$NS_RTR" link set wan0 up
  ip -n "$NS_WAN" link set eth0 up
  ip -n "$NS_RTR" addr add 198.51.100.1/24 dev wan0
  ip -n "$NS_RTR" addr add 2001:db8:ff::1/64 dev wan0 nodad
  ip -n "$NS_WAN" addr add 198.51.100.2/24 dev eth0
  ip -n "$NS_WAN" addr add 2001:db8:ff::2/64 dev eth0 nodad
  ip -n "$NS_WAN" -6 route add 2001:db8:77::/64 via 2001:db8:ff::1
  ip netns exec "$NS_RTR" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  # The router's own firewall, as a distribution would ship it (lab-base-firewall.sh).
  lab_base_firewall "$NS_RTR" br-lan
  # Link-local addresses (which the daemon binds) appear asynchronously.
  for _ in $(seq 50); do
    ip -n "$NS_RTR" -6 addr show dev br-lan scope link | grep -q inet6 && break
    sleep 0.1
  done
}

down() {
  for ns in $NS_LAN $NS_LAN2 $NS_RTR $NS_WAN; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  exec) shift; node=$1; shift; exec ip netns exec "$P-$node" "$@" ;;
  shell) exec ip netns exec "$P-${2:-lan}" "${SHELL:-bash}" ;;
  status) ip netns list | grep "^$P-" || echo "lab $P: down" ;;
  *) echo "usage: $0 up|down|exec NODE CMD...|shell [NODE]|status   (NODE: lan lan2 rtr wan)" >&2; exit 2 ;;
esac
