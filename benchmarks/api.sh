#!/usr/bin/env bash
# API benchmark: from exec to a control socket that answers, and the
# round-trip time of one request on it, for ember's API socket and QEMU's
# QMP socket (qemu-system-x86_64 -S -qmp unix:...), run alternately.
#
# usage: benchmarks/api.sh [RUNS]   (default 20). Writes benchmarks/results/api.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/lib.sh
RUNS=${1:-20}
BUILD=${BUILD:-build}
EMBER=${EMBER:-$BUILD/ember}
OUT=${OUT:-benchmarks/results/api.md}
BENCH=$BUILD/apibench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -O2 -Wall -o "$BENCH" benchmarks/apibench.c

for i in $(seq "$RUNS"); do
	"$BENCH" ember "$tmp/e.sock" -- "$EMBER" --api-sock "$tmp/e.sock" >> "$tmp/ember"
	"$BENCH" qemu "$tmp/q.sock" -- "${QEMU_MICROVM[@]}" -S -m 128 \
		-qmp unix:"$tmp/q.sock",server=on,wait=off >> "$tmp/qemu"
done

row() { # label column unit divisor
	read -r em ep en <<< "$(stats "$tmp/ember" "$2")"
	read -r qm qp qn <<< "$(stats "$tmp/qemu" "$2")"
	local f='BEGIN { printf "%.3g", v / d }'
	em=$(awk -v v="$em" -v d="$4" "$f"); ep=$(awk -v v="$ep" -v d="$4" "$f")
	qm=$(awk -v v="$qm" -v d="$4" "$f"); qp=$(awk -v v="$qp" -v d="$4" "$f")
	local ratio=$(awk -v a="$em" -v b="$qm" 'BEGIN { printf "%.3f", a / b }')
	echo "| $1 | $em / $ep $3 | $qm / $qp $3 | $ratio | $en / $qn |"
}

# The headlines in ms, the round trip in µs.
awk '{ print $1 / 1000, $2 / 1000, $3 }' "$tmp/ember" > "$tmp/ember.ms"
awk '{ print $1 / 1000, $2 / 1000, $3 }' "$tmp/qemu" > "$tmp/qemu.ms"
headline_init api
headline "exec → API socket answers (QEMU: QMP)" ms "$tmp/ember.ms" 1 "$tmp/qemu.ms" 1
headline "exec → API socket answers: CPU time, all threads" ms "$tmp/ember.ms" 2 "$tmp/qemu.ms" 2
headline "one API request round trip (QEMU: QMP query-status)" µs "$tmp/ember.ms" 3 "$tmp/qemu.ms" 3
{
	echo "# API benchmark"
	echo
	echo "\`benchmarks/api.sh $RUNS\` $(machine_line) Measured by \`benchmarks/apibench\`."
	echo
	echo "| metric | ember median / p90 | QEMU (QMP) median / p90 | ratio ember/QEMU | runs |"
	echo "|---|---|---|---|---|"
	row "exec → socket answers (ember: GET /; QEMU: QMP greeting)" 1 ms 1000
	row "CPU time used until then (all threads)" 2 ms 1000
	row "one request round trip (ember: GET /; QEMU: query-status)" 3 µs 1
} > "$OUT"
cat "$OUT"
