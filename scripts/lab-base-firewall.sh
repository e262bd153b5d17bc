# Sourced by the lab scripts: a router's own firewall, as a distribution
# would ship it: replies to what the inside started come back, the inside
# goes out masqueraded, nothing unsolicited comes in. portcullis adds its
# openings beside it.
#
# usage: lab_base_firewall NAMESPACE INSIDE_IFACE [OUTSIDE_IFACE [no-nat]]
#   The outside is wan0 unless named; no-nat: the inside goes out as it is
#   (a DS-Lite B4, whose AFTR translates).
lab_base_firewall() {
  local out=${3:-wan0}
  local nat="oifname \"$out\" meta nfproto ipv4 masquerade"
  [ "${4:-}" = no-nat ] && nat=""
  ip netns exec "$1" nft -f - <<NFT
table inet lab_base {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "$2" oifname "$out" accept
    # What portcullis (own-table mode) admitted from the WAN: the one line a
    # drop-by-default firewall adds (see README, "nftables placement").
    meta mark & 0x10000000 == 0x10000000 accept
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    $nat
  }
}
NFT
}
