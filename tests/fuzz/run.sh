#!/bin/bash
# Run libFuzzer targets one after the other and fail on any finding.
#
#   tests/fuzz/run.sh DIR RUNS NAME:MAX_LEN...
#
# DIR/NAME is the target; it gets RUNS inputs (-runs), inputs of at most
# MAX_LEN bytes, the working corpus DIR/corpus-NAME and the committed seeds
# tests/fuzz/corpus/<NAME without fuzz_> (or $FUZZ_SEEDS if set). Its whole
# output goes to DIR/NAME.log; crash inputs to DIR/NAME-crash-*.
#
# A run fails if the target exits non-zero (a crash, a leak, a timeout, or
# a sanitizer report, which halts the run), if its log holds a sanitizer
# report anyway, or if fewer than RUNS inputs were executed. Prints one line
# per target (inputs executed, seconds, the verdict); exits 1 if any failed.
# FUZZ_TIMEOUT: seconds one input may take before it counts as a hang.
set -u

dir=$1 runs=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)

# Every sanitizer report stops the run with a non-zero status.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:report_error_type=1
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1

failed=0
for spec in "$@"; do
	name=${spec%%:*} max_len=${spec#*:}
	bin=$dir/$name log=$dir/$name.log corpus=$dir/corpus-$name
	seeds=${FUZZ_SEEDS:-$here/corpus/${name#fuzz_}}
	mkdir -p "$corpus"
	[ -d "$seeds" ] || seeds=
	start=$(date +%s)
	"$bin" -runs="$runs" -max_len="$max_len" -timeout="${FUZZ_TIMEOUT:-30}" \
		-print_final_stats=1 -artifact_prefix="$dir/$name-" \
		"$corpus" ${seeds:+"$seeds"} >"$log" 2>&1
	status=$?
	secs=$(($(date +%s) - start))
	executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	executed=${executed:-0}
	# UBSan says "runtime error:", ASan/LSan/libFuzzer "ERROR: ...", all of
	# them "SUMMARY: ...".
	report=$(grep -m1 -E 'runtime error|ERROR: |SUMMARY: ' "$log")
	why=
	[ "$status" -ne 0 ] && why="exit status $status"
	[ -n "$report" ] && why="${why:+$why; }report: $report"
	[ "$executed" -lt "$runs" ] && why="${why:+$why; }only $executed of $runs inputs ran"
	if [ -n "$why" ]; then
		echo "fuzz: $name: FAILED after $executed inputs in ${secs}s: $why (log: $log)"
		failed=1
	else
		echo "fuzz: $name: $executed inputs in ${secs}s, no findings (log: $log)"
	fi
done
exit $failed
