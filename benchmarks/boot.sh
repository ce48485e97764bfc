#!/usr/bin/env bash
# Boot benchmark: ember and QEMU's microvm machine side by side, run
# alternately (A/B/A/B) on the same guest in the same run.
#
#   testvm   start -> "testvm: booted" on the console, and start -> exit
#   Linux    start -> "ember-init: ready" (our kernel + initramfs)
#
# usage: benchmarks/boot.sh [TESTVM_RUNS] [LINUX_RUNS]   (defaults 20 and 1)
# Writes benchmarks/results/boot.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/lib.sh
RUNS=${1:-20}
LINUX_RUNS=${2:-1}
BUILD=${BUILD:-build}
EMBER=${EMBER:-$BUILD/ember}
OUT=${OUT:-benchmarks/results/boot.md}
BENCH=$BUILD/bootbench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

gcc -O2 -Wall -o "$BENCH" benchmarks/bootbench.c
QEMU=("${QEMU_MICROVM[@]}" -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4)

cat > "$tmp/testvm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath $BUILD/testvm.elf)", "boot_args": ""},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 128}}
JSON
LINUX_ARGS="console=ttyS0 reboot=k panic=1 quiet ember.cmd=true"
cat > "$tmp/linux.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath $BUILD/vmlinux)",
   "initrd_path": "$(realpath $BUILD/initramfs.cpio)", "boot_args": "$LINUX_ARGS"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 128}}
JSON


: > "$tmp/ember-testvm"; : > "$tmp/qemu-testvm"
for i in $(seq "$RUNS"); do
	"$BENCH" "testvm: booted" "" 30 -- "$EMBER" --no-api --config-file "$tmp/testvm.json" >> "$tmp/ember-testvm"
	"$BENCH" "testvm: booted" "" 30 -- "${QEMU[@]}" -m 128 -kernel "$BUILD/testvm.elf" -append "" >> "$tmp/qemu-testvm"
done

: > "$tmp/ember-linux"; : > "$tmp/qemu-linux"
for i in $(seq "$LINUX_RUNS"); do
	"$BENCH" "ember-init: ready" "" 900 -- "$EMBER" --no-api --config-file "$tmp/linux.json" >> "$tmp/ember-linux"
	BOOTBENCH_LOG=$tmp/qemu-linux.log "$BENCH" "ember-init: ready" "KVM internal error" 900 -- "${QEMU[@]}" -m 128 -kernel "$BUILD/vmlinux" \
		-initrd "$BUILD/initramfs.cpio" -append "$LINUX_ARGS noxsave" >> "$tmp/qemu-linux"
done
# Where QEMU stopped, if it did: its words, for the report.
qemu_linux_note="not run"
if [ -f "$tmp/qemu-linux.log" ]; then
	qemu_linux_note=$(grep -m1 -E "KVM internal error|emulation failure" "$tmp/qemu-linux.log" || echo "reached init")
fi
qemu_linux_code=$(grep -m1 -o "^Code=.*" "$tmp/qemu-linux.log" 2>/dev/null | cut -c1-80 || true)

# The instructions ember emulated during one Linux boot (when Linux runs).
emulated=""
if [ "$LINUX_RUNS" -gt 0 ]; then
	"$EMBER" --no-api --config-file "$tmp/linux.json" --level Debug > /dev/null 2> "$tmp/ember-linux.err" < /dev/null || true
	emulated=$(grep -o "emulated instructions: .*" "$tmp/ember-linux.err" | tail -1)
fi

row() { # label ember-file qemu-file column
	read -r em ep en <<< "$(stats "$2" "$4")"
	read -r qm qp qn <<< "$(stats "$3" "$4")"
	local ratio="-"
	[ "$en" -gt 0 ] && [ "$qn" -gt 0 ] && ratio=$(awk -v a="$em" -v b="$qm" 'BEGIN { printf "%.2f", a / b }')
	[ "$qn" -eq 0 ] && { qm="does not boot"; qp="-"; }
	echo "| $1 | $em / $ep | $qm / $qp | $ratio | $en / $qn |"
}

headline_init boot
headline "testvm boot: start → console marker" ms "$tmp/ember-testvm" 1 "$tmp/qemu-testvm" 1
headline "testvm boot: start → VMM exited" ms "$tmp/ember-testvm" 2 "$tmp/qemu-testvm" 2
headline "Linux boot: start → init marker (QEMU: does not boot here)" ms "$tmp/ember-linux" 1 "$tmp/qemu-linux" 1
keep_samples boot-testvm-ember "$tmp/ember-testvm"
keep_samples boot-testvm-qemu "$tmp/qemu-testvm"
keep_samples boot-linux-ember "$tmp/ember-linux"
{
	echo "# Boot benchmark"
	echo
	echo "\`benchmarks/boot.sh $RUNS $LINUX_RUNS\` $(machine_line)"
	echo "Milliseconds from starting the VMM, measured outside it by \`benchmarks/bootbench\`."
	echo
	echo "| metric | ember median / p90 | QEMU microvm median / p90 | ratio ember/QEMU | runs ember / QEMU |"
	echo "|---|---|---|---|---|"
	row "testvm: start → console marker" "$tmp/ember-testvm" "$tmp/qemu-testvm" 1
	row "testvm: start → VMM exited" "$tmp/ember-testvm" "$tmp/qemu-testvm" 2
	row "Linux: start → init marker" "$tmp/ember-linux" "$tmp/qemu-linux" 1
	echo
	echo "QEMU on the Linux guest: $qemu_linux_note ${qemu_linux_code:+(\\`$qemu_linux_code...\\`)}"
	echo
	echo "ember's emulation fallback during one Linux boot: ${emulated:-not reported}"
} > "$OUT"
cat "$OUT"
