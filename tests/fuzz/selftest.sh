#!/bin/bash
# Check that the fuzz runner fails a run for each kind of finding and
# passes a clean one: run.sh on the selftest target, seeded with an input
# that triggers one misbehaviour at a time (see selftest.c). Fails if any
# finding would go unnoticed (a sanitizer check missing from the build, a
# report that does not halt or is not read from the log, ...).
#
#   tests/fuzz/selftest.sh DIR     (DIR/selftest is the target)
set -u
dir=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$dir/selftest.d
rm -rf "$work"
mkdir -p "$work"
cp "$dir/selftest" "$work/fuzz_selftest"
bad=0

# check BYTE WANT VERDICT LOG: with the seed BYTE, run.sh must exit WANT,
# its verdict match VERDICT and the target's log match LOG.
check() {
	local byte=$1 want=$2 verdict=$3 log=$4
	rm -rf "$work/seeds" "$work/corpus-fuzz_selftest"
	mkdir -p "$work/seeds"
	printf '%s' "$byte" >"$work/seeds/input"
	out=$(FUZZ_SEEDS=$work/seeds FUZZ_TIMEOUT=2 "$here/run.sh" "$work" 1 fuzz_selftest:16)
	got=$?
	cp "$work/fuzz_selftest.log" "$work/$byte.log"
	if [ "$got" != "$want" ] || ! grep -q -e "$verdict" <<<"$out" || ! grep -q -e "$log" "$work/$byte.log"; then
		echo "fuzz selftest: seed '$byte': run.sh exited $got (want $want), verdict: $out"
		echo "fuzz selftest:   expected /$verdict/ in the verdict, /$log/ in $work/$byte.log"
		bad=1
	fi
}

# Sanitizer reports halt the target (the run fails by its exit status),
# with clang's float-cast-overflow check in the build.
check F 1 'exit status' 'float-cast-overflow'
check S 1 'exit status' 'signed-integer-overflow'
check A 1 'exit status' 'heap-buffer-overflow'
check L 1 'exit status' 'LeakSanitizer'
check C 1 'exit status' 'deadly signal'
check H 1 'exit status' 'timeout'
# A report in the log fails the run even if the target exits 0.
check R 1 's: report: selftest.c' 'runtime error'
# A clean run passes.
check P 0 'no findings' 'Done [0-9]* runs'
# A target that runs no inputs at all fails.
mkdir -p "$work/none"
ln -sf /bin/true "$work/none/fuzz_selftest"
out=$(FUZZ_SEEDS=$work/seeds "$here/run.sh" "$work/none" 1 fuzz_selftest:16)
if [ $? = 0 ] || ! grep -q 'only 0 of 1 inputs ran' <<<"$out"; then
	echo "fuzz selftest: a target that ran nothing was not failed: $out"
	bad=1
fi

if [ $bad = 0 ]; then
	echo "fuzz selftest: every kind of finding fails a run; a clean run passes"
fi
exit $bad
