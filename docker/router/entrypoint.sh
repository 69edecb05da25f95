#!/bin/bash
# PID 1 of the router image: a one-way firewall between two networks.
#   FRONT_SUBNET  the front network (httpd), for example 10.231.1.0/24
#   BACK_SUBNET   the back network (backends), for example 10.231.2.0/24
# Connections from BACK to FRONT are forwarded (masqueraded on the front side, so the
# front ends need no route back); new connections from FRONT to BACK are dropped and
# counted. Needs NET_ADMIN and the sysctl net.ipv4.ip_forward=1. `mpr-fw` (in PATH)
# cuts and heals links for tests.
set -euo pipefail
die() { echo "mpr-router: $*" >&2; exit 2; }
[ -n "${FRONT_SUBNET:-}" ] && [ -n "${BACK_SUBNET:-}" ] || die "set FRONT_SUBNET and BACK_SUBNET (CIDR)"
[ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ] || die "net.ipv4.ip_forward is 0: run with --sysctl net.ipv4.ip_forward=1"

# The interface on a subnet (eth0/eth1 order is not fixed).
iface_on() {
  local a
  ip -o -4 addr show | while read -r _ dev _ cidr _; do
    a=${cidr%/*}
    if on_subnet "$a" "$1"; then echo "$dev"; break; fi
  done
}
ip2int() { local IFS=.; read -r a b c d <<<"$1"; echo $(( (a << 24) | (b << 16) | (c << 8) | d )); }
on_subnet() {
  local len=${2#*/} net=${2%/*} mask
  mask=$(( len == 0 ? 0 : (0xffffffff << (32 - len)) & 0xffffffff ))
  [ $(( $(ip2int "$1") & mask )) = $(( $(ip2int "$net") & mask )) ]
}

front=$(iface_on "$FRONT_SUBNET"); back=$(iface_on "$BACK_SUBNET")
[ -n "$front" ] || die "no interface on FRONT_SUBNET $FRONT_SUBNET (is the router attached to the front network?)"
[ -n "$back" ] || die "no interface on BACK_SUBNET $BACK_SUBNET (is the router attached to the back network?)"

nft -f - <<NFT || die "nft failed (the router needs --cap-add NET_ADMIN)"
table inet mpr_fw {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "$back" oifname "$front" ip saddr $BACK_SUBNET ct state new accept
    iifname "$front" oifname "$back" counter name front_to_back drop
    counter name other drop
  }
  counter front_to_back { }
  counter other { }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    oifname "$front" ip saddr $BACK_SUBNET masquerade
  }
}
NFT
echo "mpr-router: forwarding $BACK_SUBNET ($back) -> $FRONT_SUBNET ($front); $FRONT_SUBNET -> $BACK_SUBNET dropped"
trap 'echo "mpr-router: stopping"; exit 0' TERM INT
while :; do sleep 3600 & wait $! || true; done
