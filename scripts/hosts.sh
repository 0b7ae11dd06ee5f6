#!/usr/bin/env bash
# Test hosts on one machine: N network namespaces ("hosts") joined by veth pairs on one bridge, each with one
# address, optionally rate-limited with `tc tbf` (this kernel has no netem: no delay or loss, DESIGN §6). Root only.
# Every address lives inside these namespaces: the bridge itself has none, so nothing outside them is reachable.
#
#   ATTNRES_HOSTS_ID=ID scripts/hosts.sh up N [MBIT]   # hosts ah<ID>h0 … ah<ID>h<N-1>; prints one line per host:
#                                                      #   NAMESPACE ADDRESS INTERFACE   (e.g. ah7h0 10.232.7.1 eth0)
#   ATTNRES_HOSTS_ID=ID scripts/hosts.sh down [N]      # kills what runs inside, removes namespaces, veths, bridge
#   ATTNRES_HOSTS_ID=ID scripts/hosts.sh pids          # NAMESPACE PID COMMAND of every process still inside
#   scripts/hosts.sh sweep                             # downs every ID whose recorded owner process is gone
#   ip netns exec ah<ID>h<H> COMMAND                   # runs COMMAND on host H (address 10.232.<ID>.<H+1>)
#   ip netns exec ah<ID>h<H> ip link set eth0 down      # cuts host H off the bridge (its link, not its process)
#
# ID (1–250, default 1) keeps concurrent users apart: it is the third octet of the subnet 10.232.ID.0/24 (apart from
# scripts/netns-links.sh's 10.231.ID.0/24) and part of every name. `up` claims the ID atomically by creating the
# bridge ah<ID>br: it exits 3 with "in use" when the bridge already exists, so a caller can try another ID.
# MBIT limits each host's link in both directions (tbf on the host's eth0 and on its bridge port), like a
# full-duplex NIC. Interface names stay within 15 characters (ah<ID>br, ah<ID>v<H>; eth0 inside each host).
# `down` is idempotent, removes every ah<ID>h* namespace whatever N was, and is what callers run from a trap.
# A caller that cannot run a trap on every exit (a test process can be SIGKILLed) sets ATTNRES_HOSTS_OWNER=PID on
# `up`: the bridge's alias records that process ("attnres-hosts owner PID STARTTIME", the start time so a recycled
# pid is not mistaken for it), and `sweep` downs the hosts of owners that are gone. `up`'s claim and `sweep`'s
# check-then-down hold one lock (/run/lock/attnres-hosts.lock), so a sweep never downs hosts claimed meanwhile.
set -euo pipefail
usage() { echo "usage: ATTNRES_HOSTS_ID=ID $0 up N [MBIT] | down [N] | pids" >&2; exit 2; }
[ $# -ge 1 ] || usage
cmd=$1
id=${ATTNRES_HOSTS_ID:-1}
[[ "$id" =~ ^[0-9]+$ ]] && [ "$id" -ge 1 ] && [ "$id" -le 250 ] || { echo "$0: ATTNRES_HOSTS_ID '$id' is not an integer in 1…250" >&2; exit 2; }
prefix="ah${id}"
br="${prefix}br"

lockfile=/run/lock/attnres-hosts.lock
[ -d /run/lock ] || lockfile=/tmp/attnres-hosts.lock

# "PID STARTTIME" of live process $1 (start time in clock ticks since boot, /proc/PID/stat field 22), or nothing.
identity() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  # shellcheck disable=SC2086
  set -- "$1" $stat
  [ "$2" != Z ] && echo "$1 ${21}"
}

# The namespaces of this ID that exist now (whatever N created them).
namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${prefix}h[0-9]+$" || true; }

# Pids of the processes inside namespace $1.
pids_in() { ip netns pids "$1" 2>/dev/null || true; }

case "$cmd" in
down)
  # Processes first: a namespace with a live process keeps its interfaces (and the test's sockets) alive.
  # SIGTERM, up to 2 s to exit (attnres removes its run directory then), SIGKILL, up to 2 s more.
  all=$(for ns in $(namespaces); do pids_in "$ns"; done)
  if [ -n "$all" ]; then
    # shellcheck disable=SC2086
    kill -TERM $all 2>/dev/null || true
    for signal in KILL done; do
      for _ in $(seq 20); do
        left=$(for ns in $(namespaces); do pids_in "$ns"; done)
        [ -n "$left" ] || break
        sleep 0.1
      done
      [ -n "$left" ] || break
      # shellcheck disable=SC2086
      [ "$signal" = done ] || kill -KILL $left 2>/dev/null || true
    done
    [ -z "$left" ] || echo "$0: processes still in the hosts after SIGKILL: $left" >&2
  fi
  for ns in $(namespaces); do ip netns del "$ns" 2>/dev/null || true; done
  # Root-side veth ends of hosts whose namespace was already gone (a half-finished `up`).
  for v in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^${prefix}v[0-9]+$" || true); do
    ip link del "$v" 2>/dev/null || true
  done
  ip link del "$br" 2>/dev/null || true
  exit 0
  ;;
sweep)
  exec 9>>"$lockfile"
  flock 9
  for b in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^ah[0-9]+br$' || true); do
    alias=$(cat "/sys/class/net/$b/ifalias" 2>/dev/null || true)
    # shellcheck disable=SC2086
    set -- $alias
    [ "${1:-}" = attnres-hosts ] && [ "${2:-}" = owner ] && [ $# = 4 ] || continue
    [ "$(identity "$3")" = "$3 $4" ] && continue
    sweep_id=${b#ah}; sweep_id=${sweep_id%br}
    echo "$0: hosts ID $sweep_id: owner $3 is gone; removing its hosts" >&2
    ATTNRES_HOSTS_ID=$sweep_id "$(realpath "${BASH_SOURCE[0]}")" down
  done
  exit 0
  ;;
pids)
  for ns in $(namespaces); do
    for p in $(pids_in "$ns"); do echo "$ns $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null || echo '?')"; done
  done
  exit 0
  ;;
up) ;;
*) usage ;;
esac

[ $# -ge 2 ] || usage
n=$2 mbit=${3:-}
[[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 250 ] || { echo "$0: N '$n' is not a host count in 1…250" >&2; exit 2; }
[ -z "$mbit" ] || [[ "$mbit" =~ ^[0-9]+$ && "$mbit" -ge 1 ]] || { echo "$0: MBIT '$mbit' is not a positive integer (Mbit/s)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$0: needs root (network namespaces, veth, bridge, tc)" >&2; exit 2; }
command -v ip >/dev/null || { echo "$0: ip (iproute2) is not installed" >&2; exit 2; }
[ -z "$mbit" ] || command -v tc >/dev/null || { echo "$0: tc (iproute2) is not installed; needed for MBIT" >&2; exit 2; }

owner=
if [ -n "${ATTNRES_HOSTS_OWNER:-}" ]; then
  owner=$(identity "$ATTNRES_HOSTS_OWNER")
  [ -n "$owner" ] || { echo "$0: ATTNRES_HOSTS_OWNER '$ATTNRES_HOSTS_OWNER' is not a live process" >&2; exit 2; }
fi
# The claim: creating the bridge fails if another user holds this ID. Under the sweep's lock, with the owner
# recorded before it is released.
exec 9>>"$lockfile"
flock 9
if ! ip link add "$br" type bridge 2>/dev/null; then
  if ip link show "$br" >/dev/null 2>&1; then echo "$0: hosts ID $id in use (bridge $br exists): pick another ATTNRES_HOSTS_ID, or run down" >&2; exit 3; fi
  echo "$0: cannot create bridge $br: $(ip link add "$br" type bridge 2>&1)" >&2; exit 2
fi
[ -z "$owner" ] || ip link set "$br" alias "attnres-hosts owner $owner"
flock -u 9
exec 9>&-
# From here on a failure leaves nothing behind.
self=$(realpath "${BASH_SOURCE[0]}")
trap 'status=$?; [ $status = 0 ] || "$self" down >/dev/null 2>&1; exit $status' EXIT
# A host firewall's FORWARD rules (Docker's DROP, say) must not see bridged frames between test hosts.
ip link set "$br" type bridge nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0 2>/dev/null || true
ip link set "$br" up

# Burst: the smallest tbf accepts at this rate and HZ (rate/250), at least one 64 KiB TSO segment.
shape() {
  local dev=$1; shift
  local burst=$(( mbit * 1000000 / 8 / 250 ))
  [ "$burst" -ge 65536 ] || burst=65536
  "$@" qdisc add dev "$dev" root tbf rate "${mbit}mbit" burst "$burst" latency 2s
}

for h in $(seq 0 $((n - 1))); do
  ns="${prefix}h${h}" outer="${prefix}v${h}" addr="10.232.${id}.$((h + 1))"
  ip netns add "$ns"
  ip link add "$outer" type veth peer name "${prefix}p${h}"
  ip link set "${prefix}p${h}" netns "$ns"
  ip -n "$ns" link set "${prefix}p${h}" name eth0
  ip link set "$outer" master "$br" up
  ip -n "$ns" addr add "${addr}/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  if [ -n "$mbit" ]; then
    shape eth0 ip netns exec "$ns" tc
    shape "$outer" tc
  fi
  echo "$ns $addr eth0"
done
