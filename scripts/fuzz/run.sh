#!/usr/bin/env bash
# Runs the libFuzzer binaries that `make fuzz-build` put in BUILD_DIR, one after the other, and prints per target
# the inputs executed, the executions per second and the findings (crash-*, timeout-*, oom-* files libFuzzer wrote).
# Exits non-zero when any target found something. Called by `make fuzz`:
#   scripts/fuzz/run.sh BUILD_DIR RUNS MAX_LEN TIMEOUT_S TARGET...
# Per target T: seeds (written by the binary from this build's encoders, or topologies/ for topology-yaml) go to
# BUILD_DIR/seeds/T, the growing corpus to BUILD_DIR/corpus/T, findings to BUILD_DIR/findings/T; the regression
# corpus Tests/Corpus/T is replayed first, so a finding that was fixed and comes back stops the run at once.
set -u
# Swift's own crash backtracer would fight ASan over the crashed process; libFuzzer prints the stack itself.
export SWIFT_BACKTRACE=enable=no
dir=$1 runs=$2 max_len=$3 timeout=$4
shift 4
failed=0
rows=()
for t in "$@"; do
  bin=$dir/$t seeds=$dir/seeds/$t corpus=$dir/corpus/$t findings=$dir/findings/$t log=$dir/$t.log
  rm -rf "$seeds" "$findings"
  mkdir -p "$seeds" "$corpus" "$findings"
  inputs=("$corpus" "$seeds")
  if [ "$t" = topology-yaml ]; then inputs+=(topologies); else "$bin" --write-seeds="$seeds" || exit 2; fi
  [ -d "Tests/Corpus/$t" ] && inputs+=("Tests/Corpus/$t")
  dict=()
  [ -f "scripts/fuzz/$t.dict" ] && dict=("-dict=scripts/fuzz/$t.dict")
  echo "fuzz: $bin -runs=$runs -max_len=$max_len -timeout=$timeout ${dict[*]} ${inputs[*]}  (log: $log)"
  "$bin" -runs="$runs" -max_len="$max_len" -timeout="$timeout" -print_final_stats=1 -artifact_prefix="$findings/" \
    "${dict[@]}" "${inputs[@]}" >"$log" 2>&1
  rc=$?
  executed=$(awk '/stat::number_of_executed_units:/ { print $2 }' "$log" | tail -1)
  rate=$(awk '/stat::average_exec_per_sec:/ { print $2 }' "$log" | tail -1)
  found=$(find "$findings" -type f | wc -l)
  rows+=("$(printf '%-16s %12s %10s %9s  %s' "$t" "${executed:-?}" "${rate:-?}" "$found" "$( [ "$rc" = 0 ] && echo ok || echo "libFuzzer exit $rc")")")
  if [ "$rc" != 0 ] || [ "$found" != 0 ]; then
    failed=1
    echo "fuzz: $t stopped (exit $rc): the end of $log:"
    tail -n 25 "$log"
    find "$findings" -type f -exec echo "fuzz: finding {}" \;
  fi
done
printf '\n%-16s %12s %10s %9s  %s\n' target "inputs run" "exec/s" findings status
for r in "${rows[@]}"; do echo "$r"; done
exit $failed
