#!/usr/bin/env bash
# Concurrent starts: N VMMs launched together, each booting the test
# guest, timed from the first launch to the last "testvm: booted" on a
# console (benchmarks/bootbench, BENCH_ABSOLUTE). ember (`--no-api
# --config-file`, no jailer) and QEMU's microvm machine, run alternately
# for each N in the same run. VMs started per second = N / that time.
# (Restores run together are timed by benchmarks/snapshot.sh.)
#
# usage: benchmarks/density.sh [RUNS]   (default 5; CONCURRENCY="1 2 4 8 16")
# Writes benchmarks/results/density.md (and density.tsv,
# data/density-start.dat) and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/lib.sh
RUNS=${1:-5}
CONCURRENCY=${CONCURRENCY:-1 2 4 8 16}
MEM=${MEM_MIB:-128}
BUILD=${BUILD:-build}
EMBER=${EMBER:-$BUILD/ember}
OUT=${OUT:-benchmarks/results/density.md}
BENCH=$BUILD/bootbench
scratch_dir density

gcc -O2 -Wall -o "$BENCH" benchmarks/bootbench.c
cat > "$tmp/testvm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/testvm.elf")", "boot_args": ""},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": $MEM}}
JSON
QEMU=("${QEMU_MICROVM[@]}" -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4
      -m "$MEM" -kernel "$BUILD/testvm.elf" -append "")

# One batch: N copies of the command at once; prints the milliseconds from
# the first fork to the last marker, or -1 if any VM did not get there.
batch() { # N COMMAND...
	local n=$1 i pids=()
	shift
	for i in $(seq "$n"); do
		BENCH_ABSOLUTE=1 "$BENCH" "testvm: booted" "" 30 -- "$@" > "$tmp/vm.$i" &
		pids+=($!)
	done
	wait "${pids[@]}"
	cat "$tmp"/vm.* | batch_span "$n" 4
	rm -f "$tmp"/vm.*
}

for n in $CONCURRENCY; do
	: > "$tmp/ember-$n"; : > "$tmp/qemu-$n"
	for r in $(seq "$RUNS"); do
		batch "$n" "$EMBER" --no-api --config-file "$tmp/testvm.json" >> "$tmp/ember-$n"
		batch "$n" "${QEMU[@]}" >> "$tmp/qemu-$n"
	done
done

headline_init density
mkdir -p "$(dirname "$OUT")/data"
dat=$(dirname "$OUT")/data/density-start.dat
echo "# N ember_median_ms qemu_median_ms ember_vms_per_s qemu_vms_per_s" > "$dat"
failed=0
{
	echo "# Concurrent starts"
	echo
	echo "\`benchmarks/density.sh $RUNS\` $(machine_line)"
	echo "N VMMs launched together, each booting the test guest ($MEM MiB, 1 vCPU): milliseconds from"
	echo "the first launch to the last guest's \"testvm: booted\", median / p90 over $RUNS batches; VMs/s is"
	echo "N over the median. ember without the jailer (\`benchmarks/jailer.sh\` times jailed starts)."
	echo
	echo "| N | ember median / p90 | QEMU microvm median / p90 | ember VMs/s | QEMU VMs/s | ratio ember/QEMU (time) | batches ember / QEMU |"
	echo "|---|---|---|---|---|---|---|"
	for n in $CONCURRENCY; do
		read -r em ep en <<< "$(stats "$tmp/ember-$n" 1)"
		read -r qm qp qn <<< "$(stats "$tmp/qemu-$n" 1)"
		failed=$((failed + 2 * RUNS - en - qn))
		headline "starts, N=$n launched together: first exec → last booted" ms "$tmp/ember-$n" 1 "$tmp/qemu-$n" 1
		ratio=-
		[ "$en" -gt 0 ] && [ "$qn" -gt 0 ] && ratio=$(awk -v a="$em" -v b="$qm" 'BEGIN { printf "%.2f", a / b }')
		echo "| $n | $em / $ep | $qm / $qp | $(per_second "$n" "$em" "$en") | $(per_second "$n" "$qm" "$qn") | $ratio | $en / $qn |"
		echo "$n $em $qm $(per_second "$n" "$em" "$en") $(per_second "$n" "$qm" "$qn")" >> "$dat"
	done
	echo
	[ "$failed" -eq 0 ] && echo "Every VM of every batch booted." || echo "**$failed batches had a VM that did not boot.**"
} > "$OUT"
cat "$OUT"
[ "$failed" -eq 0 ]
