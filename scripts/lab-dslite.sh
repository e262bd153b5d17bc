#!/usr/bin/env bash
# The DS-Lite lab (issue 14, RFC 6333): a home router (the B4) with IPv6
# only on its WAN and a softwire carrying IPv4 inside IPv6 to the ISP's
# AFTR, which does the NAT44 and runs portcullis as its PCP server; the
# home router runs portcullis as PCP proxy with no NAT44 of its own
# (--no-nat44, THIRD_PARTY upstream, RFC 7648 §3.3).
#
#   lan (192.168.77.2) ─ lan0 cpe wan0 ══ IPv6 only ══ cpe0 aftr wan0 ─ wan (11.22.33.2)
#       (2001:db8:77::2)  192.168.77.1 ┘   2001:db8:64::2        2001:db8:64::1 ┘  11.22.33.1
#                         2001:db8:77::1
#                         ds0 192.0.0.2/29 ─ softwire ─ ds0 192.0.0.1/29
#
# The LAN has native IPv6 too (2001:db8:77::/64): the CPE's IPv6 default
# route is wan0, toward the AFTR's namespace, which routes the LAN prefix
# back through the CPE and stands in for the IPv6 internet. The CPE's WAN
# zone is both wan0 (IPv6) and ds0 (IPv4), as OpenWrt puts wan, wan6 and
# the ds-lite tunnel in one zone.
#
# The softwire is an ip6tnl tunnel in ipip6 mode where the kernel has one.
# Kernels without ip6tnl (this project's CI has none, nor sit, gre or fou)
# get a stand-in: a VXLAN over the IPv6-only WAN, which also carries the
# IPv4 packets inside IPv6 (with an Ethernet header between). Either way the
# WAN link carries IPv6 only; LAB_SOFTWIRE=ip6tnl|vxlan forces one. The
# addresses are RFC 6333's (192.0.0.0/29), documentation IPv6 and the
# private LAN; 11.22.33.0/24 as in lab-cgn.sh. One subscriber: the AFTR
# routes the LAN's prefix into the softwire (a real AFTR tells subscribers
# apart by the tunnel's IPv6 source). Nothing leaves the namespaces.
#
# usage: lab-dslite.sh up | down | softwire | exec NODE CMD...   (NODE: lan cpe aftr wan)
set -euo pipefail
P=${LAB_PREFIX:-dsl}
NODES="lan cpe aftr wan"

. "$(dirname "${BASH_SOURCE[0]}")/lab-netns.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lab-base-firewall.sh"

veth() { # NS_A IF_A NS_B IF_B
  ip -n "$P-$1" link add "$2" type veth peer name "$4" netns "$P-$3"
  ip -n "$P-$1" link set "$2" up
  ip -n "$P-$3" link set "$4" up
}

# Which softwire this kernel can make: ip6tnl if it knows the type.
softwire_kind() {
  if [ -n "${LAB_SOFTWIRE:-}" ]; then echo "$LAB_SOFTWIRE"; return; fi
  if ip -n "$P-cpe" link add swprobe type ip6tnl mode ipip6 local ::1 remote ::1 2>/dev/null; then
    ip -n "$P-cpe" link del swprobe
    echo ip6tnl
  else
    echo vxlan
  fi
}

softwire() { # NS LOCAL6 REMOTE6 UNDER
  case "$KIND" in
    ip6tnl) ip -n "$P-$1" link add ds0 type ip6tnl mode ipip6 local "$2" remote "$3" dev "$4" ;;
    vxlan) ip -n "$P-$1" link add ds0 type vxlan id 6333 local "$2" remote "$3" dstport 4789 dev "$4" ;;
    *) echo "lab: unknown softwire $KIND" >&2; exit 2 ;;
  esac
  ip -n "$P-$1" link set ds0 up
}

up() {
  lab_netns_up
  veth lan eth0 cpe lan0
  ip -n "$P-lan" addr add 192.168.77.2/24 dev eth0
  ip -n "$P-cpe" addr add 192.168.77.1/24 dev lan0
  ip -n "$P-lan" route add default via 192.168.77.1
  ip -n "$P-lan" addr add 2001:db8:77::2/64 dev eth0 nodad
  ip -n "$P-cpe" addr add 2001:db8:77::1/64 dev lan0 nodad
  ip -n "$P-lan" -6 route add default via 2001:db8:77::1
  # The WAN: IPv6 only.
  veth cpe wan0 aftr cpe0
  ip -n "$P-cpe" addr add 2001:db8:64::2/64 dev wan0 nodad
  ip -n "$P-aftr" addr add 2001:db8:64::1/64 dev cpe0 nodad
  # Native IPv6: out by wan0, the LAN's prefix routed back through the CPE.
  ip -n "$P-cpe" -6 route add default via 2001:db8:64::1 dev wan0
  ip -n "$P-aftr" -6 route add 2001:db8:77::/64 via 2001:db8:64::2 dev cpe0
  KIND=$(softwire_kind)
  softwire cpe 2001:db8:64::2 2001:db8:64::1 wan0
  softwire aftr 2001:db8:64::1 2001:db8:64::2 cpe0
  ip -n "$P-cpe" addr add 192.0.0.2/29 dev ds0
  ip -n "$P-aftr" addr add 192.0.0.1/29 dev ds0
  if [ "$KIND" = ip6tnl ]; then
    ip -n "$P-cpe" route add default dev ds0
    ip -n "$P-aftr" route add 192.168.77.0/24 dev ds0
  else
    ip -n "$P-cpe" route add default via 192.0.0.1 dev ds0
    ip -n "$P-aftr" route add 192.168.77.0/24 via 192.0.0.2 dev ds0
  fi
  # The internet side of the AFTR.
  veth aftr wan0 wan eth0
  ip -n "$P-aftr" addr add 11.22.33.1/24 dev wan0
  ip -n "$P-wan" addr add 11.22.33.2/24 dev eth0
  for r in cpe aftr; do ip netns exec "$P-$r" sysctl -qw net.ipv4.ip_forward=1; done
  ip netns exec "$P-cpe" sysctl -qw net.ipv6.conf.all.forwarding=1
  # The B4 forwards without translating: no masquerade toward the softwire.
  lab_base_firewall "$P-cpe" lan0 ds0 no-nat
  # And the LAN's IPv6 goes out natively.
  ip netns exec "$P-cpe" nft add rule inet lab_base forward iifname lan0 oifname wan0 accept
  lab_base_firewall "$P-aftr" ds0
  echo "$KIND" > "/run/netns/.$P-softwire" 2>/dev/null || true
}

down() {
  lab_netns_down
  rm -f "/run/netns/.$P-softwire"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  softwire) cat "/run/netns/.$P-softwire" ;;
  exec) shift; node=$1; shift; exec ip netns exec "$P-$node" "$@" ;;
  *) echo "usage: $0 up|down|softwire|exec NODE CMD...   (NODE: $NODES)" >&2; exit 2 ;;
esac
