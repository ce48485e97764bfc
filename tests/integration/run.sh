#!/usr/bin/env bash
# ember's integration tests: the real ember binary booting real guests on
# /dev/kvm. Each tests/integration/test_*.sh file defines functions named
# test_*; this runs them all (or those matching $1) and prints one line per
# test: PASS, FAIL or SKIPPED. Exit status is non-zero if any failed, or if
# any was skipped while EMBER_REQUIRE_KVM=1 (as in CI).
#
# Tests run EMBER_TEST_JOBS at a time (default: one per CPU), each in a
# bash process of its own, so a test's $$, variables and traps are its
# own. Most of a test's time is one guest vCPU busy on one CPU, so two
# CPUs run two tests in about the time of one. A test that changes
# something the whole host shares takes a lock on it first (exclusive,
# in lib.sh). The longest tests start first: the time each took last is
# kept in $EMBER_CACHE/integration-seconds; a test never timed counts as
# long when it boots Linux.
set -u
cd "$(dirname "$0")/../.."
export EMBER=${EMBER:-build/obj/ember}
export BUILD=${BUILD:-build}
export JAILER=${JAILER:-build/obj/ember-jailer}
export EMBER_TEST=${EMBER_TEST:-build/obj/ember-test}
export JAILER_TEST=${JAILER_TEST:-build/obj/ember-jailer-test}

load_tests() {
	. tests/integration/lib.sh
	for f in tests/integration/test_*.sh; do
		. "$f"
	done
}

# run.sh --one NAME: one test, in this process (what each job runs).
if [ "${1:-}" = --one ]; then
	[ -d "${EMBER_IT_ROOT:-}" ] || { echo "run.sh --one: run by run.sh itself (EMBER_IT_ROOT unset)" >&2; exit 2; }
	load_tests
	run_test "$2"
	# What a failed test left running (an ember it started in the
	# background, a peer) goes with it, not on into the next tests.
	pkill -KILL -P $$ 2>/dev/null
	exit 0
fi

filter=${1:-}
jobs=${EMBER_TEST_JOBS:-$(nproc)}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "EMBER_TEST_JOBS must be a positive number, not '$jobs'" >&2; exit 2; }
EMBER_IT_ROOT=$(mktemp -d /tmp/ember-it.XXXXXX)
export EMBER_IT_ROOT
trap 'rm -rf "$EMBER_IT_ROOT"' EXIT
times_file=${EMBER_CACHE:-${HOME:-/root}/.cache/ember}/integration-seconds

load_tests

# Seconds a test took last time, or a guess: 300 when it boots Linux.
expected_seconds() {
	local s
	s=$(awk -v t="$1" '$1 == t {print $2}' "$times_file" 2>/dev/null)
	if [ -n "$s" ]; then echo "$s"
	elif declare -f "$1" | grep -qE 'vmlinux|LINUX_TIMEOUT|fn_start|agent_vm|linux_'; then echo 300
	else echo 5
	fi
}

tests=()
for t in $(declare -F | awk '{print $3}' | grep '^test_' | sort); do
	[ -n "$filter" ] && [[ $t != *$filter* ]] && continue
	tests+=("$(expected_seconds "$t") $t")
done
mapfile -t order < <(printf '%s\n' "${tests[@]}" | sort -k1,1nr -k2,2 | awk '{print $2}')
echo "integration: ${#order[@]} tests, $jobs at a time"
: > "$EMBER_IT_ROOT/results"

# Each job's output goes to its own file, printed whole when it ends, so
# parallel tests' lines never interleave.
declare -A running=()
start_one() {
	"$0" --one "$1" > "$EMBER_IT_ROOT/$1.log" 2>&1 &
	running[$!]=$1
}
next=0
while [ "$next" -lt "${#order[@]}" ] || [ "${#running[@]}" -gt 0 ]; do
	while [ "$next" -lt "${#order[@]}" ] && [ "${#running[@]}" -lt "$jobs" ]; do
		start_one "${order[$next]}"
		next=$((next + 1))
	done
	wait -n -p done_pid
	name=${running[$done_pid]}
	unset "running[$done_pid]"
	cat "$EMBER_IT_ROOT/$name.log"
	if ! grep -q "^[A-Z]* $name " "$EMBER_IT_ROOT/results"; then
		echo "FAIL    $name (its process ended without a result)"
		echo "FAIL $name 0" >> "$EMBER_IT_ROOT/results"
	fi
done

# Keep what each test took, for the order of the next run.
if mkdir -p "$(dirname "$times_file")" 2>/dev/null; then
	{ awk '$1 == "PASS" || $1 == "FAIL" {print $2, $3}' "$EMBER_IT_ROOT/results"
	  cat "$times_file" 2>/dev/null; } | awk '!seen[$1]++' > "$times_file.new" &&
		mv "$times_file.new" "$times_file"
fi

passed=$(grep -c '^PASS' "$EMBER_IT_ROOT/results")
failed=$(grep -c '^FAIL' "$EMBER_IT_ROOT/results")
skipped=$(grep -c '^SKIPPED' "$EMBER_IT_ROOT/results")
echo
echo "integration: $passed passed, $failed failed, $skipped skipped"
if [ $((passed + failed + skipped)) -ne "${#order[@]}" ]; then
	echo "integration: ${#order[@]} tests were to run, $((passed + failed + skipped)) results came back"
	exit 1
fi
[ "$failed" -gt 0 ] && echo "failed: $(awk '$1 == "FAIL" {printf "%s ", $2}' "$EMBER_IT_ROOT/results")"
if [ "$skipped" -gt 0 ]; then
	echo "WARNING: $skipped test(s) SKIPPED; they did not pass."
	[ "${EMBER_REQUIRE_KVM:-0}" = 1 ] && { echo "EMBER_REQUIRE_KVM=1: skipping is a failure"; exit 1; }
fi
[ "$failed" -eq 0 ]
