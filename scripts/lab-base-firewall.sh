# Sourced by the lab scripts: a router's own firewall, as a distribution
# would ship it: replies to what the inside started come back, the inside
# goes out masqueraded, nothing unsolicited comes in. portcullis adds its
# openings beside it.
#
# usage: lab_base_firewall NAMESPACE INSIDE_IFACE   (the outside is wan0)
lab_base_firewall() {
  ip netns exec "$1" nft -f - <<NFT
table inet lab_base {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "$2" oifname "wan0" accept
    # What portcullis (own-table mode) admitted from the WAN: the one line a
    # drop-by-default firewall adds (see README, "nftables placement").
    meta mark & 0x10000000 == 0x10000000 accept
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" meta nfproto ipv4 masquerade
  }
}
NFT
}
