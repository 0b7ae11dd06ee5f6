#!/usr/bin/env bash
# Validation of `attnres simulate` over shaped links: two shape-mode workers in network namespaces (scripts/
# netns-links.sh), each rank's egress limited with tc tbf, the coordinator in the root namespace; the step time
# measured by `attnres coordinator` set beside the simulation with the shaped bandwidth (docs/step-time.md).
#
#   scripts/validate-shaped.sh [ATTNRES_BINARY]
#
# Needs root and `ip netns`; prints "skipped: <reason>" and exits 0 where they are unavailable.
set -euo pipefail
BIN=$(realpath "${1:-.build/release/attnres}")
[ "$(id -u)" = 0 ] || { echo "skipped: needs root (network namespaces and tc)"; exit 0; }
command -v ip >/dev/null && command -v tc >/dev/null || { echo "skipped: ip or tc (iproute2) not installed"; exit 0; }
HERE=$(cd "$(dirname "$0")" && pwd)
ID=$(( ($$ % 240) + 5 ))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/attnres-shaped-XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  "$HERE/netns-links.sh" down "$ID" 2
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "as${ID}probe" 2>/dev/null && ip netns del "as${ID}probe" || { echo "skipped: cannot create network namespaces here"; exit 0; }
# TCP over Ethernet: tbf counts whole frames, so payload gets MSS/frame = 1448/1514 of the rate.
EFFICIENCY=0.9564
printf '%-88s  %8s  %11s  %11s  %7s\n' config "Mbit/s" measured predicted error
port=5555
ROWS_TO_RUN=(
  "100 --schedule gpipe --residual standard --cache none"
  "200 --schedule 1f1b --residual standard --cache none"
  "100 --schedule 1f1b --residual block --blocks 4 --cache none"
  "300 --schedule gpipe --residual block --blocks 4 --cache none"
  "50 --schedule 1f1b --residual standard --cache none --microbatches 8"
  "150 --schedule gpipe --residual block --blocks 2 --cache none --microbatches 2"
  "500 --schedule 1f1b --residual full --cache none"
  "200 --virtual 2 --schedule interleaved-1f1b --residual block --blocks 4 --cache none"
  "200 --virtual 2 --schedule interleaved-1f1b --residual block --blocks 4 --cache cross-stage"
  "200 --virtual 2 --schedule interleaved-1f1b --residual block --blocks 4 --cache received-only"
  "500 --virtual 2 --schedule interleaved-1f1b --residual full --cache cross-stage"
  "400 --virtual 2 --schedule interleaved-1f1b --residual standard --cache none --microbatches 8"
)
# ROWS=N runs only the first N (make test runs a small case).
for row in "${ROWS_TO_RUN[@]:0:${ROWS:-${#ROWS_TO_RUN[@]}}}"; do
  read -r mbit flags <<<"$row"
  "$HERE/netns-links.sh" down "$ID" 2
  "$HERE/netns-links.sh" up "$ID" 2 "$mbit"
  port=$((port + 1))
  cat >"$WORK/topo.yaml" <<YAML
name: shaped
mode: shape
steps: 3
model: {layers: 8, hidden: 512, heads: 4, seq: 256, vocab: 256}
pipeline: {ranks: 2, virtual: 1, schedule: gpipe, microbatches: 4, microbatch_size: 2}
transport: {kind: tcp, ranks: [{host: 10.231.${ID}.1, port: 6000}, {host: 10.231.${ID}.2, port: 6000}]}
coordinator: tcp://10.231.${ID}.254:${port}
YAML
  # shellcheck disable=SC2086
  "$BIN" coordinator "$WORK/topo.yaml" $flags --join-timeout 20 --json "$WORK/run.json" >"$WORK/coord.out" 2>&1 &
  coord=$!; PIDS=("$coord")
  for r in 0 1; do ip netns exec "as${ID}r${r}" "$BIN" worker --join "tcp://10.231.${ID}.254:${port}" --rank "$r" >"$WORK/w$r.out" 2>&1 & PIDS+=("$!"); done
  wait "$coord" || { echo "coordinator failed:"; cat "$WORK/coord.out" "$WORK"/w*.out; exit 1; }
  for p in "${PIDS[@]:1}"; do wait "$p" || true; done
  PIDS=()
  cat >"$WORK/hw.yaml" <<YAML
name: shaped-${mbit}mbit
source: "tc tbf ${mbit} Mbit/s per rank egress, TCP payload ${EFFICIENCY} of it; shape mode: compute free"
compute: {peak_tflops: 1000000, achieved: 1, memory_gbytes_per_s: 1000000, kernel_overhead_us: 0}
link: {gbit_per_s: $(python3 -c "print($mbit * $EFFICIENCY / 1000)"), latency_us: 100}
YAML
  # shellcheck disable=SC2086
  "$BIN" simulate "$WORK/topo.yaml" $flags --hardware "$WORK/hw.yaml" --only --json "$WORK/sim.json" >/dev/null
  python3 - "$WORK/run.json" "$WORK/sim.json" "$flags" "$mbit" <<'PY' | tee -a "$WORK/rows"
import json, sys
run = json.load(open(sys.argv[1]))["runs"][0]
measured = run["measured"]["seconds"] / run["steps"]
predicted = json.load(open(sys.argv[2]))["runs"][0]["simulated"]["step_seconds"]
print(f"{sys.argv[3]:<88}  {sys.argv[4]:>8}  {measured*1e3:8.1f} ms  {predicted*1e3:8.1f} ms  {100*(predicted/measured-1):+6.1f}%")
PY
done
python3 - "$WORK/rows" <<'PY'
import statistics, sys
errs = [abs(float(l.split()[-1].rstrip('%'))) for l in open(sys.argv[1]).read().splitlines()]
print(f"\n{len(errs)} shaped configurations: median |error| {statistics.median(errs):.1f}%, worst {max(errs):.1f}%")
PY
