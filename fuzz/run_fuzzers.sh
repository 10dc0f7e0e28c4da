#!/usr/bin/env bash
# fuzz/run_fuzzers.sh BUILD_DIR SECONDS TARGET...: runs each libFuzzer target for SECONDS from a
# copy of its seed corpus (fuzz/corpus/T, plus fuzz/regressions/T) with its dictionary
# (fuzz/dicts/T.dict when there is one), then prints a line a target: executions, exec/s, edges
# (libFuzzer's cov), corpus size, and the result. Exit 1 when any target found a crash, a hang
# or a leak; the input is kept in BUILD_DIR/artifacts/T/.
set -uo pipefail
build=$1 seconds=$2
shift 2
src=$(cd "$(dirname "$0")" && pwd)
failed=0
summary=()
for t in "$@"; do
  work="$build/fuzz-work/$t" art="$build/artifacts/$t/" log="$build/fuzz-logs/$t.log"
  mkdir -p "$work" "$art" "$(dirname "$log")"
  cp -n "$src/corpus/$t"/* "$work"/ 2>/dev/null || true
  dict=()
  [ -f "$src/dicts/$t.dict" ] && dict=("-dict=$src/dicts/$t.dict")
  regress=()
  [ -d "$src/regressions/$t" ] && regress=("$src/regressions/$t")
  "$build/fuzz/${t}_fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$art" "${dict[@]}" \
    "$work" "${regress[@]}" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$')
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
  corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1 | sed 's/corp: //')
  result=ok
  if [ $rc -ne 0 ]; then
    result="FAILED (exit $rc; see $log, input in $art)"
    failed=1
  fi
  summary+=("$(printf '%-18s %10s execs %7s exec/s %6s edges  corpus %-12s %s' "$t" \
    "${execs:-?}" "${rate:-?}" "${cov:-?}" "${corp:-?}" "$result")")
done
printf '%s\n' "${summary[@]}"
exit $failed
