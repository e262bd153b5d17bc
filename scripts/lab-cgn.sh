#!/usr/bin/env bash
# The double-NAT lab (issue 14): a home router behind the ISP's carrier-grade
# NAT, each running portcullis — the CPE as PCP proxy, the ISP's as the
# CGN's PCP server.
#
#   lan (192.168.77.2) ─ lan0 cpe wan0 ─── cpe0 isp wan0 ─── wan (11.22.33.2)
#        192.168.77.1 ┘  100.64.0.2      100.64.0.1 ┘  11.22.33.1
#
# RFC 1918 and RFC 6598 shared space inside; the ISP's public side is
# 11.22.33.0/24 because miniupnpc calls an IGD whose external address is
# documentation space "not connected" (as in test/lab-upnp.test.ts). All of
# it exists only in namespaces this script made; nothing leaves them.
# LAB_PREFIX names them ("$LAB_PREFIX-cpe" …).
#
# usage: lab-cgn.sh up | down | exec NODE CMD...   (NODE: lan cpe isp wan)
set -euo pipefail
P=${LAB_PREFIX:-cgn}
NODES="lan cpe isp wan"

. "$(dirname "${BASH_SOURCE[0]}")/lab-netns.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lab-base-firewall.sh"

link() { # NS_A IF_A ADDR_A NS_B IF_B ADDR_B
  ip -n "$P-$1" link add "$2" type veth peer name "$5" netns "$P-$4"
  ip -n "$P-$1" link set "$2" up
  ip -n "$P-$4" link set "$5" up
  ip -n "$P-$1" addr add "$3" dev "$2"
  ip -n "$P-$4" addr add "$6" dev "$5"
}

up() {
  lab_netns_up
  link lan eth0 192.168.77.2/24 cpe lan0 192.168.77.1/24
  link cpe wan0 100.64.0.2/24 isp cpe0 100.64.0.1/24
  link isp wan0 11.22.33.1/24 wan eth0 11.22.33.2/24
  ip -n "$P-lan" route add default via 192.168.77.1
  ip -n "$P-cpe" route add default via 100.64.0.1
  for r in cpe isp; do ip netns exec "$P-$r" sysctl -qw net.ipv4.ip_forward=1; done
  lab_base_firewall "$P-cpe" lan0
  lab_base_firewall "$P-isp" cpe0
}

down() {
  lab_netns_down
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  exec) shift; node=$1; shift; exec ip netns exec "$P-$node" "$@" ;;
  *) echo "usage: $0 up|down|exec NODE CMD...   (NODE: $NODES)" >&2; exit 2 ;;
esac
