#!/usr/bin/env bash
# Live migration benchmark: the counting test guest migrated between two
# ember processes, and between two QEMU (-M microvm) processes, each pair
# with its source in one network namespace and its destination in another,
# the two joined by a veth pair (TCP over it, as between two hosts). ember
# and QEMU alternate (A/B/A/B) for each memory size and guest load:
#   idle   the guest counts (testvm.counter), its memory untouched
#   dirty  it also writes DIRTY MiB of its memory at every step
#          (testvm.dirty; a page that arrived wrong says "FAIL")
# Both VMMs allow 300 ms of downtime (their default). Per migration
# (benchmarks/migratebench.py): total time (the request to the source
# saying it is complete), downtime (the VMM's own figure), the guest's
# gap (the longest time between two count lines across the move, less
# its usual step), bytes sent and rounds.
#
# usage: benchmarks/migrate.sh [RUNS]   (default 5; SIZES="128 1024 4096" MiB,
#        LOADS="idle dirty", DIRTY=4 MiB per step)
# Writes benchmarks/results/migrate.md (and migrate.tsv, data/migrate.dat)
# and prints it. Exits 1 if any migration failed (said so on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/lib.sh
RUNS=${1:-5}
SIZES=${SIZES:-128 1024 4096}
LOADS=${LOADS:-idle dirty}
DIRTY=${DIRTY:-4}
SPIN=${SPIN:-1000}
BUILD=${BUILD:-build}
EMBER=${EMBER:-$BUILD/ember}
OUT=${OUT:-benchmarks/results/migrate.md}
export BUILD
[ -f "$BUILD/testvm.elf" ] || { echo "migrate.sh: $BUILD/testvm.elf missing (make testvm)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "migrate.sh: needs root for its network namespaces" >&2; exit 1; }

scratch_dir migbench
# Two namespaces, 10.77.0.1 (sources) and 10.77.0.2 (destinations).
SRC_NS=ember-migb-src-$$
DST_NS=ember-migb-dst-$$
netns_cleanup() {
	ip netns del "$SRC_NS" 2> /dev/null || true
	ip netns del "$DST_NS" 2> /dev/null || true
	scratch_cleanup
}
trap netns_cleanup EXIT
ip netns add "$SRC_NS"
ip netns add "$DST_NS"
ip link add mb-src netns "$SRC_NS" type veth peer name mb-dst netns "$DST_NS"
ip -n "$SRC_NS" addr add 10.77.0.1/24 dev mb-src
ip -n "$DST_NS" addr add 10.77.0.2/24 dev mb-dst
for ns in "$SRC_NS" "$DST_NS"; do
	ip -n "$ns" link set lo up
done
ip -n "$SRC_NS" link set mb-src up
ip -n "$DST_NS" link set mb-dst up

guest_args() { # LOAD
	[ "$1" = dirty ] && echo "testvm.counter=$SPIN testvm.dirty=$DIRTY" || echo "testvm.counter=$SPIN"
}

port=7000
# One migration; appends its line (or -1s) to $tmp/VMM-MEM-LOAD.
migrate_once() { # VMM MEM LOAD
	local vmm=$1 mem=$2 load=$3 d=$tmp/run.$port rc=0
	mkdir -p "$d"
	port=$((port + 1)) # a fresh port: the last destination's may linger
	if [ "$vmm" = ember ]; then
		python3 benchmarks/migratebench.py ember "$d" "$mem" "$(guest_args "$load")" \
			"$SRC_NS" "$DST_NS" 10.77.0.2 "$port" "$EMBER" > "$d/line" 2> "$d/bench.err" || rc=$?
	else
		python3 benchmarks/migratebench.py qemu "$d" "$mem" "$(guest_args "$load")" \
			"$SRC_NS" "$DST_NS" 10.77.0.2 "$port" -- "${QEMU_MICROVM[@]}" > "$d/line" 2> "$d/bench.err" || rc=$?
	fi
	if [ "$rc" = 0 ]; then
		cat "$d/line" >> "$tmp/$vmm-$mem-$load"
	else
		run_failed migrate.sh "$vmm $load at $mem MiB: $(tail -n 1 "$d/bench.err")" "$d/src.err"
		echo "-1 -1 -1 -1 -1 -1" >> "$tmp/$vmm-$mem-$load"
	fi
	rm -rf "$d"
}

for mem in $SIZES; do
	for load in $LOADS; do
		: > "$tmp/ember-$mem-$load"; : > "$tmp/qemu-$mem-$load"
		for i in $(seq "$RUNS"); do
			migrate_once ember "$mem" "$load"
			migrate_once qemu "$mem" "$load"
		done
	done
done

cell() { # median p90 n
	[ "$3" -gt 0 ] && echo "$1 / $2" || echo "-"
}
ratio() { # ember-median ember-n qemu-median qemu-n
	[ "$2" -gt 0 ] && [ "$4" -gt 0 ] && awk -v a="$1" -v b="$3" 'BEGIN { printf(b > 0 ? "%.2f" : "-", a / (b > 0 ? b : 1)) }' || echo "-"
}
# MiB from bytes, for the median of column 4.
mib_stats() { # FILE
	awk '$4 >= 0 { printf "%.2f\n", $4 / 1048576 }' "$1" > "$1.mib"
	stats "$1.mib" 1 auto
}
row() { # MEM LOAD LABEL COLUMN
	local em ep en qm qp qn
	if [ "$4" = 4 ]; then
		read -r em ep en <<< "$(mib_stats "$tmp/ember-$1-$2")"
		read -r qm qp qn <<< "$(mib_stats "$tmp/qemu-$1-$2")"
	else
		read -r em ep en <<< "$(stats "$tmp/ember-$1-$2" "$4" auto)"
		read -r qm qp qn <<< "$(stats "$tmp/qemu-$1-$2" "$4" auto)"
	fi
	echo "| $1 MiB | $2 | $3 | $(cell "$em" "$ep" "$en") | $(cell "$qm" "$qp" "$qn") |" \
	     "$(ratio "$em" "$en" "$qm" "$qn") | $en / $qn |"
}

headline_init migrate
mkdir -p "$(dirname "$OUT")/data"
dat=$(dirname "$OUT")/data/migrate.dat
echo "# MiB load ember_total ember_downtime ember_gap qemu_total qemu_downtime qemu_gap (ms, medians)" > "$dat"
for mem in $SIZES; do
	for load in $LOADS; do
		headline "migration total, $mem MiB, $load" ms "$tmp/ember-$mem-$load" 1 "$tmp/qemu-$mem-$load" 1
		headline "migration downtime, $mem MiB, $load" ms "$tmp/ember-$mem-$load" 2 "$tmp/qemu-$mem-$load" 2
		line="$mem $load"
		for v in ember qemu; do
			for c in 1 2 3; do
				read -r m _ n <<< "$(stats "$tmp/$v-$mem-$load" $c auto)"
				[ "$n" -gt 0 ] && line+=" $m" || line+=" ?"
			done
		done
		echo "$line" >> "$dat"
	done
done
{
	echo "# Live migration benchmark"
	echo
	echo "\`benchmarks/migrate.sh $RUNS\` $(machine_line)"
	echo "The test guest counting (\`testvm.counter=$SPIN\`; **dirty**: also writing $DIRTY MiB of its" \
	     "memory at every step, \`testvm.dirty=$DIRTY\`), migrated live over TCP between two VMM processes" \
	     "in two network namespaces joined by a veth pair, ember's pre-copy (\`PUT /ember/migration\` to an" \
	     "ember started with \`--migration-listen\`) and QEMU's (\`migrate\` over QMP to a QEMU started with" \
	     "\`-incoming tcp:\`), both with a 300 ms downtime limit, alternately in the same run" \
	     "(\`benchmarks/migratebench.py\`). **total**: the request to the source saying it is complete;" \
	     "**downtime**: the VMM's own figure (ember: its source's log of the vCPUs paused to its" \
	     "destination's log of them resumed; QEMU: query-migrate's \`downtime\`); **guest gap**: the" \
	     "guest's view, the longest time between two of its console lines across the move less its" \
	     "usual step; **sent**: bytes the source sent (QEMU: \`ram.transferred\`); **rounds**: passes over" \
	     "memory (QEMU: \`dirty-sync-count\`); **guest step**: the guest's usual time between two console" \
	     "lines before the move (dirty: $DIRTY MiB written per step, so the dirty rate is $DIRTY MiB over" \
	     "it). Medians / p90 over $RUNS migrations each."
	echo
	echo "| memory | guest | metric | ember median / p90 | QEMU median / p90 | ratio ember/QEMU | runs ember / QEMU |"
	echo "|---|---|---|---|---|---|---|"
	for mem in $SIZES; do
		for load in $LOADS; do
			row "$mem" "$load" "total (ms)" 1
			row "$mem" "$load" "downtime (ms)" 2
			row "$mem" "$load" "guest gap (ms)" 3
			row "$mem" "$load" "sent (MiB)" 4
			row "$mem" "$load" "rounds" 5
			row "$mem" "$load" "guest step (ms)" 6
		done
	done
	echo
	failures_line "No migration failed; no guest reported a page that came back wrong."
	echo
	echo "The whole run took ${SECONDS} s."
} > "$OUT"
cat "$OUT"
[ ! -s "$tmp/failures" ]
