#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the launcher tests (Tests/ClusterTests/LauncherTests.swift) and for
# trying srun/sbatch recipes by hand (docs/multi-host.md):
#
#   scripts/slurm-local.sh up DIR [CPUS]   # munged, slurmctld, slurmd; returns once `sinfo` shows the node idle
#   export SLURM_CONF=DIR/slurm.conf       # then srun, sbatch, sinfo, squeue talk to it
#   scripts/slurm-local.sh down DIR        # stops the three daemons (by their pid files) and removes DIR
#
# Everything lives inside DIR: the munge key and socket, slurm.conf, state, spool, logs and pid files; the ports
# are chosen free. Nothing of the machine's own munge or SLURM set-up is read or changed. Needs root (SlurmUser
# is root; slurmd starts job steps as the submitting user) and Debian's slurm-wlm and munge packages.
# No cgroups: ProctrackType=proctrack/linuxproc finds a step's processes through their parent chain, and
# TaskPlugin=task/none binds nothing, so it runs in a container too. The node declares CPUS (default 16) CPUs
# whatever the machine has (SlurmdParameters=config_overrides): srun -n P oversubscribes a small machine.
# `up` that fails part-way stops what it started and removes DIR; `down` is safe to repeat.
set -euo pipefail

usage() { echo "usage: $0 up DIR [CPUS] | down DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
action=$1 dir=$2
UP_TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}

# Whether process $1 runs (a zombie does not: its parent, maybe a test process that reaps orphans, has yet to wait).
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# Stops the daemon whose pid file is $1 (SIGTERM, then SIGKILL after 10 s) if that pid still runs $2.
stop() {
  local pidfile=$1 name=$2 pid
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && running "$pid" && grep -q "$name" "/proc/$pid/comm" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do running "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

down() {
  [ -d "$dir" ] || return 0
  # Job steps first (slurmd would wait for them), then the daemons in reverse order of start.
  if [ -s "$dir/slurm.conf" ] && [ -s "$dir/slurmctld.pid" ]; then
    local jobs
    jobs=$(SLURM_CONF=$dir/slurm.conf timeout 10 squeue -h -o %i 2>/dev/null || true)
    [ -z "$jobs" ] || SLURM_CONF=$dir/slurm.conf timeout 10 scancel $jobs 2>/dev/null || true
  fi
  stop "$dir/slurmd.pid" slurmd
  stop "$dir/slurmctld.pid" slurmctld
  stop "$dir/munged.pid" munged
  rm -rf "$dir"
}

# Runs a daemon with nothing inherited: /dev/null on stdin and stdout, DIR/NAME.stderr for what it says before its
# log file is open.
# Whoever started this script may wait for its descriptors to close (Foundation's Process, a shell pipe): a
# daemon that kept one would make that wait last as long as the daemon.
daemon() {
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null || true
    done
    exec "$@"
  ) </dev/null >/dev/null 2>>"$dir/$1.stderr"
}

# A free TCP port on 127.0.0.1 (the kernel's choice; released at once, taken by the daemon moments later).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

up() {
  local cpus=${1:-16}
  [ "$(id -u)" = 0 ] || { echo "slurm-local.sh: needs root (SlurmUser=root)" >&2; exit 1; }
  for tool in munged mungekey slurmctld slurmd sinfo srun sbatch python3; do
    command -v "$tool" >/dev/null || { echo "slurm-local.sh: $tool not found (make deps installs slurm-wlm and munge)" >&2; exit 1; }
  done
  [ ! -e "$dir" ] || { echo "slurm-local.sh: $dir exists; choose a new directory" >&2; exit 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  trap 'status=$?; if [ $status != 0 ]; then echo "slurm-local.sh: up failed; logs:" >&2; tail -n 20 "$dir"/*.log "$dir"/*.stderr >&2 2>/dev/null || true; down; fi' EXIT
  chmod 0700 "$dir"
  mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
  chmod 0700 "$dir/munge"

  mungekey --create --keyfile="$dir/munge/munge.key" --force >/dev/null 2>&1 || \
    { dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none; }
  chmod 0400 "$dir/munge/munge.key"
  daemon munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/munged.seed"

  local host ctld_port slurmd_port
  host=$(hostname -s)
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
  cat > "$dir/slurm.conf" <<EOF
# Written by scripts/slurm-local.sh: a one-node cluster on 127.0.0.1, every file inside $dir.
ClusterName=attnres-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
  export SLURM_CONF=$dir/slurm.conf
  daemon slurmctld -f "$SLURM_CONF"
  daemon slurmd -f "$SLURM_CONF" -N "$host"

  # Bounded wait for the node to register and turn idle.
  local deadline=$((SECONDS + UP_TIMEOUT)) state=""
  while [ $SECONDS -lt $deadline ]; do
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n 1 || true)
    [ "$state" = idle ] && break
    sleep 0.2
  done
  if [ "$state" != idle ]; then
    echo "slurm-local.sh: node $host not idle within $UP_TIMEOUT s (state '${state:-none}')" >&2
    exit 1
  fi
  trap - EXIT
  echo "SLURM_CONF=$SLURM_CONF"
}

case $action in
  up) shift 2; up "$@" ;;
  down) down ;;
  *) usage ;;
esac
