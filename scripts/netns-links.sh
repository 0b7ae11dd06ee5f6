#!/usr/bin/env bash
# Shaped links between pipeline ranks on one host, self-contained: one network namespace per rank, each joined to a
# bridge in the root namespace by a veth pair, each rank's egress rate-limited with `tc … tbf` (this kernel has no
# netem: no delay or loss, DESIGN §6). Root only. Every address lives inside these namespaces and the bridge.
#
#   scripts/netns-links.sh up ID RANKS MBIT   # namespaces as<ID>r0 …, rank r at 10.231.<ID>.(r+1), bridge .254
#   scripts/netns-links.sh down ID RANKS      # removes the namespaces, veths and bridge (idempotent)
#   ip netns exec as<ID>r<R> COMMAND          # runs COMMAND as rank R
#
# ID is 1–250 (the third octet); interface names stay within 15 characters (as<ID>h<R>, as<ID>n<R>, as<ID>br).
# Callers run `down` from a trap so that every exit path tears the network down.
set -euo pipefail
cmd=$1 id=$2 ranks=$3
br="as${id}br"
if [ "$cmd" = down ]; then
  for r in $(seq 0 $((ranks - 1))); do ip netns del "as${id}r${r}" 2>/dev/null || true; ip link del "as${id}h${r}" 2>/dev/null || true; done
  ip link del "$br" 2>/dev/null || true
  exit 0
fi
[ "$cmd" = up ] || { echo "usage: $0 up|down ID RANKS [MBIT]" >&2; exit 2; }
mbit=$4
ip link add "$br" type bridge
ip addr add "10.231.${id}.254/24" dev "$br"
ip link set "$br" up
for r in $(seq 0 $((ranks - 1))); do
  ns="as${id}r${r}" host="as${id}h${r}" inner="as${id}n${r}"
  ip netns add "$ns"
  ip link add "$host" type veth peer name "$inner"
  ip link set "$inner" netns "$ns"
  ip link set "$host" master "$br" up
  ip -n "$ns" addr add "10.231.${id}.$((r + 1))/24" dev "$inner"
  ip -n "$ns" link set "$inner" up
  ip -n "$ns" link set lo up
  # Burst: the smallest tbf accepts at this rate and HZ (rate/250), at least one 64 KiB TSO segment.
  ip netns exec "$ns" tc qdisc add dev "$inner" root tbf rate "${mbit}mbit" burst "$(( (mbit * 1000000 / 8 / 250) > 65536 ? mbit * 1000000 / 8 / 250 : 65536 ))" latency 2s
done
