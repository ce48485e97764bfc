#!/usr/bin/env bash
# ember's integration tests: the real ember binary booting real guests on
# /dev/kvm. Each tests/integration/test_*.sh file defines functions named
# test_*; this runs them all (or those matching $1) and prints one line per
# test: PASS, FAIL or SKIPPED. Exit status is non-zero if any failed, or if
# any was skipped while EMBER_REQUIRE_KVM=1 (as in CI).
set -u
cd "$(dirname "$0")/../.."
export EMBER=${EMBER:-build/obj/ember}
export BUILD=${BUILD:-build}
export JAILER=${JAILER:-build/obj/ember-jailer}
export EMBER_TEST=${EMBER_TEST:-build/obj/ember-test}
export JAILER_TEST=${JAILER_TEST:-build/obj/ember-jailer-test}
filter=${1:-}

. tests/integration/lib.sh

for f in tests/integration/test_*.sh; do
	. "$f"
done

for t in $(declare -F | awk '{print $3}' | grep '^test_' | sort); do
	[ -n "$filter" ] && [[ $t != *$filter* ]] && continue
	run_test "$t"
done
summary
