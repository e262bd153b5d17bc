# Sourced by the lab scripts: the namespaces "$P-NODE" for each of $NODES,
# made fresh (what an earlier run left is removed first) and removed with
# every process in them.
#
# usage: lab_netns_up | lab_netns_down
lab_netns_up() {
  [ "$(id -u)" = 0 ] || { echo "lab: needs root (network namespaces)" >&2; exit 1; }
  down 2>/dev/null || true
  for n in $NODES; do
    ip netns add "$P-$n"
    ip -n "$P-$n" link set lo up
  done
}

lab_netns_down() {
  for n in $NODES; do
    ip netns pids "$P-$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$P-$n" 2>/dev/null || true
  done
}
