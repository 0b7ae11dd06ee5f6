#!/usr/bin/env bash
# Validation of `attnres simulate` against real compute-mode runs on this machine's local workers: calibrate on one
# run, predict the step time of every other configuration (other m, V, schedule, residual, cache, blocks) of the
# same model width, and print measured vs predicted with the median and worst error (docs/step-time.md).
#
#   scripts/validate-step-time.sh [ATTNRES_BINARY] [STEPS]
#
# STEPS (default 32) steps per run; the measured step is the mean over the typical steps (after the first, without
# the slowest and fastest tenth), and every fitted cost a mean over the same steps, so one step slowed by another
# process does not decide a row.
# KEEP=DIR keeps the traces there (cal.json, run1.json …, again.json), so another build's model can be set
# against the very same runs: `attnres simulate --calibrate DIR/cal.json --measured DIR/run3.json`.
#
# Two ranks, because this machine has two cores: with more worker processes than cores, compute spans stretch
# with whatever else runs at the time and no per-action duration predicts them (docs/step-time.md, "Where it misses").
set -euo pipefail
BIN=${1:-.build/release/attnres}
STEPS=${2:-32}
# NICE=-10 runs the measured runs at a higher CPU priority than the rest of a shared machine (root only).
RUN=(${NICE:+nice -n "$NICE"} "$BIN")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/attnres-validate-XXXXXX")
trap 'if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$WORK"/*.json "$KEEP"/ 2>/dev/null || true; fi; rm -rf "$WORK"' EXIT
BASE=(--mode compute --ranks 2 --layers 16 --hidden 64 --heads 4 --seq 32 --microbatch-size 2 --steps "$STEPS")
CAL=(--virtual 2 --schedule interleaved-1f1b --residual block --blocks 4 --cache cross-stage --microbatches 8)
CONFIGS=(
  "--virtual 2 --schedule interleaved-1f1b --residual block --blocks 4 --cache cross-stage --microbatches 4"
  "--virtual 2 --schedule interleaved-1f1b --residual block --blocks 4 --cache cross-stage --microbatches 16"
  "--virtual 1 --schedule 1f1b --residual block --blocks 4 --cache cross-stage --microbatches 8"
  "--virtual 1 --schedule gpipe --residual block --blocks 4 --cache cross-stage --microbatches 8"
  "--virtual 4 --schedule interleaved-1f1b --residual block --blocks 4 --cache cross-stage --microbatches 8"
  "--virtual 2 --schedule interleaved-1f1b --residual standard --cache none --microbatches 8"
  "--virtual 2 --schedule interleaved-1f1b --residual full --cache none --microbatches 8"
  "--virtual 2 --schedule interleaved-1f1b --residual full --cache cross-stage --microbatches 8"
  "--virtual 2 --schedule interleaved-1f1b --residual full --cache received-only --microbatches 8"
  "--virtual 2 --schedule interleaved-1f1b --residual block --blocks 4 --cache none --microbatches 8"
  "--virtual 2 --schedule interleaved-1f1b --residual block --blocks 4 --cache received-only --microbatches 8"
  "--virtual 2 --schedule interleaved-1f1b --residual block --blocks 8 --cache cross-stage --microbatches 8"
  "--virtual 1 --schedule 1f1b --residual standard --cache none --microbatches 4"
  "--virtual 4 --schedule interleaved-1f1b --residual full --cache cross-stage --microbatches 4"
)
echo "attnres simulate validation — $(nproc) cores, $(uname -r), nice ${NICE:-0}, calibration: ${BASE[*]} ${CAL[*]}"
"${RUN[@]}" run "${BASE[@]}" "${CAL[@]}" --trace "$WORK/cal.json" >/dev/null
# The fitted costs, and where the calibration run's own time goes per rank, measured beside simulated: a model that
# cannot replay its own run (compute, send, wait or between-action time off) says so here, before any prediction.
"$BIN" simulate --calibrate "$WORK/cal.json" --measured "$WORK/cal.json" --json "$WORK/self.json" | awk 'NR == 1 || /^per rank, ms/ { on = NR > 1 } NR == 1 || on'
printf '%-100s  %11s  %11s  %7s\n' "config (plus: ${BASE[*]})" "measured" "predicted" "error"
i=0
for c in "self" "${CONFIGS[@]}"; do
  if [ "$c" = self ]; then out="$WORK/self.json"; label="calibration run itself: ${CAL[*]}"; else
    i=$((i + 1))
    # shellcheck disable=SC2086
    "${RUN[@]}" run "${BASE[@]}" $c --trace "$WORK/run$i.json" >/dev/null
    "$BIN" simulate --calibrate "$WORK/cal.json" --measured "$WORK/run$i.json" --json "$WORK/sim$i.json" >/dev/null
    out="$WORK/sim$i.json"; label="$c"
  fi
  python3 - "$out" "$label" <<'PY' | tee -a "$WORK/rows"
import json, sys
d = json.load(open(sys.argv[1]))
m, p = d["measured_step_seconds"], d["runs"][0]["simulated"]["step_seconds"]
print(f"{sys.argv[2]:<100}  {m*1e3:8.2f} ms  {p*1e3:8.2f} ms  {100*(p/m-1):+6.1f}%")
PY
done
# The noise floor: the calibration configuration run again, predicted from the first run.
"${RUN[@]}" run "${BASE[@]}" "${CAL[@]}" --trace "$WORK/again.json" >/dev/null
"$BIN" simulate --calibrate "$WORK/cal.json" --measured "$WORK/again.json" --json "$WORK/again-sim.json" >/dev/null
python3 - "$WORK/self.json" "$WORK/again-sim.json" <<'PY'
import json, sys
a, b = (json.load(open(f))["measured_step_seconds"] for f in sys.argv[1:])
print(f"noise floor: the calibration configuration measured {a*1e3:.2f} ms, run again {b*1e3:.2f} ms ({100*(b/a-1):+.1f}%); load average {open('/proc/loadavg').read().split()[0]}")
PY
python3 - "$WORK/rows" <<'PY'
import statistics, sys
errs = [abs(float(l.split()[-1].rstrip('%'))) for l in open(sys.argv[1]).read().splitlines()[1:]]
print(f"\n{len(errs)} predicted configurations: median |error| {statistics.median(errs):.1f}%, worst {max(errs):.1f}% (goal: median ≤ 5%, worst ≤ 10%)")
PY
