#!/usr/bin/env bash
# Validation of `attnres simulate` against real compute-mode runs on this machine's local workers: calibrate on one
# run, predict the step time of every other configuration (other m, V, schedule, residual, cache, blocks) of the
# same model width, and print measured vs predicted with the median and worst error (docs/step-time.md).
#
#   scripts/validate-step-time.sh [ATTNRES_BINARY] [STEPS]
#
# REPEAT (default 3) runs of every configuration: on this 2-core machine the same configuration measures ±15 %
# apart from one run to the next (the noise-floor line shows it), more than the goal, so every measured row is the
# median of REPEAT runs and the calibration is the run whose step is the median of its REPEAT runs.
#
# STEPS (default 96) steps per run; the measured step is the mean over the typical steps (after the warm-up quarter,
# without the slowest and fastest tenth: on this machine the first ~30 steps run up to 30 % slower, and a 32-step run
# measured ±10 % apart from one run to the next where 128-step runs agreed to ±2 %), and every fitted cost a mean over the same steps, so one step slowed by another
# process does not decide a row.
# KEEP=DIR keeps the traces there (cal.json, cal-K.json, runI-K.json …), so another build's model can be set
# against the very same runs: `attnres simulate --calibrate DIR/cal.json --measured DIR/run3-1.json`.
#
# Two ranks, because this machine has two cores: with more worker processes than cores, compute spans stretch
# with whatever else runs at the time and no per-action duration predicts them (docs/step-time.md, "Where it misses").
set -euo pipefail
BIN=${1:-.build/release/attnres}
STEPS=${2:-96}
# CAL_STEPS (default 4 × STEPS) steps in each calibration run: every prediction inherits the calibration run's noise,
# and which of three 96-step calibration runs was taken moved the median error of the same rows from 3 % to 10 %.
CAL_STEPS=${CAL_STEPS:-$((4 * STEPS))}
REPEAT=${REPEAT:-3}
# NICE=-10 runs the measured runs at a higher CPU priority than the rest of a shared machine (root only).
RUN=(${NICE:+nice -n "$NICE"} "$BIN")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/attnres-validate-XXXXXX")
trap 'if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$WORK"/*.json "$KEEP"/ 2>/dev/null || true; fi; rm -rf "$WORK"' EXIT
BASE=(--mode compute --ranks 2 --layers 16 --hidden 64 --heads 4 --seq 32 --microbatch-size 2 --steps "$STEPS")
# The calibration is full AttnRes: its chunks read 1 to 16 sources and hand on up to 16 state tensors, the whole
# range the other configurations need, so depth attention's and the executor's costs are measured over it rather
# than extrapolated from block(4)'s 1 to 5 (docs/step-time.md, "Validation").
CAL=(--virtual 2 --schedule interleaved-1f1b --residual full --cache cross-stage --microbatches 8)
CONFIGS=(
  "--virtual 2 --schedule interleaved-1f1b --residual block --blocks 4 --cache cross-stage --microbatches 4"
  "--virtual 2 --schedule interleaved-1f1b --residual block --blocks 4 --cache cross-stage --microbatches 16"
  "--virtual 1 --schedule 1f1b --residual block --blocks 4 --cache cross-stage --microbatches 8"
  "--virtual 1 --schedule gpipe --residual block --blocks 4 --cache cross-stage --microbatches 8"
  "--virtual 4 --schedule interleaved-1f1b --residual block --blocks 4 --cache cross-stage --microbatches 8"
  "--virtual 2 --schedule interleaved-1f1b --residual standard --cache none --microbatches 8"
  "--virtual 2 --schedule interleaved-1f1b --residual full --cache none --microbatches 8"
  "--virtual 2 --schedule interleaved-1f1b --residual block --blocks 4 --cache cross-stage --microbatches 8"
  "--virtual 2 --schedule interleaved-1f1b --residual full --cache received-only --microbatches 8"
  "--virtual 2 --schedule interleaved-1f1b --residual block --blocks 4 --cache none --microbatches 8"
  "--virtual 2 --schedule interleaved-1f1b --residual block --blocks 4 --cache received-only --microbatches 8"
  "--virtual 2 --schedule interleaved-1f1b --residual block --blocks 8 --cache cross-stage --microbatches 8"
  "--virtual 1 --schedule 1f1b --residual standard --cache none --microbatches 4"
  "--virtual 4 --schedule interleaved-1f1b --residual full --cache cross-stage --microbatches 4"
)
echo "attnres simulate validation — $(nproc) cores, $(uname -r), nice ${NICE:-0}, calibration: ${BASE[*]} ${CAL[*]} --steps $CAL_STEPS"
# The measured typical step of a trace (the same statistic `simulate --measured` prints).
measured() { "$BIN" simulate --calibrate "$1" --measured "$1" --json "$1.self" >/dev/null
             python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["measured_step_seconds"])' "$1.self"; }
for k in $(seq 1 "$REPEAT"); do
  "${RUN[@]}" run "${BASE[@]}" "${CAL[@]}" --steps "$CAL_STEPS" --trace "$WORK/cal-$k.json" >/dev/null
  echo "$(measured "$WORK/cal-$k.json") $WORK/cal-$k.json" >> "$WORK/cal-steps"
done
# The calibration: the run with the median step.
cp "$(sort -g "$WORK/cal-steps" | awk -v n="$REPEAT" 'NR == int((n + 1) / 2) { print $2 }')" "$WORK/cal.json"
# The fitted costs, and where the calibration run's own time goes per rank, measured beside simulated: a model that
# cannot replay its own run (compute, send, wait or between-action time off) says so here, before any prediction.
"$BIN" simulate --calibrate "$WORK/cal.json" --measured "$WORK/cal.json" --json "$WORK/self.json" | awk 'NR == 1 || /^per rank, ms/ { on = NR > 1 } NR == 1 || on'
printf '%-100s  %11s  %11s  %7s\n' "config (plus: ${BASE[*]})" "measured" "predicted" "error"
i=0
for c in "self" "${CONFIGS[@]}"; do
  if [ "$c" = self ]; then out="$WORK/self.json"; label="calibration run itself: ${CAL[*]}"; else
    i=$((i + 1))
    out=""
    for k in $(seq 1 "$REPEAT"); do
      # shellcheck disable=SC2086
      "${RUN[@]}" run "${BASE[@]}" $c --trace "$WORK/run$i-$k.json" >/dev/null
      "$BIN" simulate --calibrate "$WORK/cal.json" --measured "$WORK/run$i-$k.json" --json "$WORK/sim$i-$k.json" >/dev/null
      out="$out $WORK/sim$i-$k.json"
    done
    label="$c"
  fi
  # shellcheck disable=SC2086
  python3 - "$label" $out <<'PY' | tee -a "$WORK/rows"
import json, statistics, sys
ds = [json.load(open(f)) for f in sys.argv[2:]]
m = statistics.median(d["measured_step_seconds"] for d in ds)
p = statistics.median(d["runs"][0]["simulated"]["step_seconds"] for d in ds)
print(f"{sys.argv[1]:<100}  {m*1e3:8.2f} ms  {p*1e3:8.2f} ms  {100*(p/m-1):+6.1f}%")
PY
done
# The noise floor: the spread of the calibration configuration's own REPEAT runs.
python3 - "$WORK/cal-steps" <<'PY'
import statistics, sys
steps = sorted(float(l.split()[0]) for l in open(sys.argv[1]))
med = statistics.median(steps)
print(f"noise floor: the calibration configuration's {len(steps)} runs measured " + ", ".join(f"{s*1e3:.2f}" for s in steps)
      + f" ms ({100*(steps[0]/med-1):+.1f}% … {100*(steps[-1]/med-1):+.1f}% around their median); load average {open('/proc/loadavg').read().split()[0]}")
PY
python3 - "$WORK/rows" <<'PY'
import statistics, sys
errs = [abs(float(l.split()[-1].rstrip('%'))) for l in open(sys.argv[1]).read().splitlines()[1:]]
print(f"\n{len(errs)} predicted configurations: median |error| {statistics.median(errs):.1f}%, worst {max(errs):.1f}% (goal: median ≤ 5%, worst ≤ 10%)")
PY
