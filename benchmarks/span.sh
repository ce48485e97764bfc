#!/usr/bin/env bash
# The VMM's own span of a start: from the InstanceStart request to vCPU 0
# entering the guest, as ember logs it ("vcpu 0: entering the guest N us
# after the InstanceStart request"). The test guest is configured through
# the API first, as an orchestrator would; QEMU has no such request, so
# this one is ember alone.
#
# usage: benchmarks/span.sh [RUNS]   (default 20; MEM_MIB, default 128)
# Writes benchmarks/results/span.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/lib.sh
RUNS=${1:-20}
MEM=${MEM_MIB:-128}
BUILD=${BUILD:-build}
EMBER=${EMBER:-$BUILD/ember}
OUT=${OUT:-benchmarks/results/span.md}
tmp=$(mktemp -d /tmp/span.XXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2> /dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
api() { curl -s -o /dev/null --unix-socket "$tmp/api.sock" -X PUT "http://localhost$1" -d "$2"; }

kernel=$(realpath "$BUILD/testvm.elf")
for i in $(seq "$RUNS"); do
	rm -f "$tmp/api.sock"
	"$EMBER" --api-sock "$tmp/api.sock" > /dev/null 2> "$tmp/err" < /dev/null &
	pid=$!
	for k in $(seq 200); do [ -S "$tmp/api.sock" ] && break; sleep 0.01; done
	api /boot-source "{\"kernel_image_path\": \"$kernel\", \"boot_args\": \"testvm.hang\"}"
	api /machine-config "{\"vcpu_count\": 1, \"mem_size_mib\": $MEM}"
	api /actions '{"action_type": "InstanceStart"}'
	for k in $(seq 200); do grep -q 'entering the guest' "$tmp/err" && break; sleep 0.01; done
	kill "$pid"
	wait "$pid" 2> /dev/null || true
	pid=
	grep -o 'entering the guest [0-9]* us' "$tmp/err" | awk '{print $4}' >> "$tmp/us" || echo -1 >> "$tmp/us"
done
read -r med p90 n <<< "$(stats "$tmp/us" 1)"
headline_init span
headline "VMM span: InstanceStart → first guest instruction (ember only)" µs "$tmp/us" 1
{
	echo "# The VMM's span of a start"
	echo
	echo "\`benchmarks/span.sh $RUNS\` $(machine_line)"
	echo "From ember taking the InstanceStart request to vCPU 0 entering the guest, by ember's"
	echo "own log; the test guest with $MEM MiB, configured through the API first."
	echo
	echo "| metric | median | p90 | runs |"
	echo "|---|---|---|---|"
	echo "| InstanceStart → first guest instruction | $med µs | $p90 µs | $n |"
} > "$OUT"
cat "$OUT"
