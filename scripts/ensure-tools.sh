#!/usr/bin/env bash
# Makes sure the Debian tools the lab, the demo and the tests use are
# present; installs the missing ones (as root, with apt-get) and says so.
# Does nothing when everything is there.
set -euo pipefail
declare -A pkg=([nft]=nftables [ip]=iproute2 [natpmpc]=natpmpc [upnpc]=miniupnpc [tshark]=tshark [socat]=socat [conntrack]=conntrack [systemd-analyze]=systemd [chromium]=chromium)
missing=()
for tool in "${!pkg[@]}"; do command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg[$tool]}"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "missing tools: install the Debian packages ${missing[*]} (apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing ${missing[*]} (apt-get)…" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
