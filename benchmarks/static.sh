#!/usr/bin/env bash
# Static against dynamic ember: the same objects linked both ways
# (build/ember, static-pie; build/obj/ember-dynamic, as ember was linked
# before), run alternately in the same run:
#   - exec → the API socket answers, wall and CPU time of all threads
#     (benchmarks/apibench, as benchmarks/api.sh);
#   - the memory outside guest RAM with 3 drives, a network interface and
#     vsock in use (devices_vm "all" in lib.sh: a Linux guest reads every
#     drive, pings the host, sends over vsock), counted as Firecracker's
#     tests count it: Rss (and Pss) of every mapping smaller than guest RAM.
#
# usage: benchmarks/static.sh [RUNS [MEM_RUNS]]   (default 20 and 3; needs root for the tap)
# Writes benchmarks/results/static.md (OUT) and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/lib.sh
RUNS=${1:-20}
MEM_RUNS=${2:-3}
BUILD=${BUILD:-build}
STATIC=${STATIC:-$BUILD/ember}
DYNAMIC=${DYNAMIC:-$BUILD/obj/ember-dynamic}
OUT=${OUT:-benchmarks/results/static.md}
BENCH=$BUILD/apibench
for b in "$STATIC" "$DYNAMIC"; do
	[ -x "$b" ] || { echo "static.sh: $b missing (make $b)" >&2; exit 1; }
done
scratch_dir static
gcc -O2 -Wall -o "$BENCH" benchmarks/apibench.c

: > "$tmp/api-static"; : > "$tmp/api-dynamic"; : > "$tmp/mem-static"; : > "$tmp/mem-dynamic"
for i in $(seq "$RUNS"); do
	for v in dynamic static; do
		bin=$DYNAMIC; [ $v = static ] && bin=$STATIC
		"$BENCH" ember "$tmp/e.sock" -- "$bin" --api-sock "$tmp/e.sock" >> "$tmp/api-$v"
	done
done
for i in $(seq "$MEM_RUNS"); do
	for v in dynamic static; do
		bin=$DYNAMIC; [ $v = static ] && bin=$STATIC
		if devices_vm "$bin" all "$tmp/vm"; then
			fc_overhead "$tmp/vm/smaps" 128 >> "$tmp/mem-$v"
			cp "$tmp/vm/smaps" "$tmp/smaps-$v"
		else
			run_failed static.sh "$v: the devices VM did not get ready" "$tmp/vm/err"
			echo "-1 -1" >> "$tmp/mem-$v"
		fi
	done
done

# ms for the timings, from apibench's µs
for v in static dynamic; do awk '{ print $1 / 1000, $2 / 1000 }' "$tmp/api-$v" > "$tmp/api-$v.ms"; done
row() { # label file column unit
	read -r dm dp dn <<< "$(stats "$tmp/$2-dynamic$5" "$3" auto)"
	read -r sm sp sn <<< "$(stats "$tmp/$2-static$5" "$3" auto)"
	local ratio=-
	[ "$dn" -gt 0 ] && [ "$sn" -gt 0 ] && ratio=$(awk -v a="$sm" -v b="$dm" 'BEGIN { printf "%.2f", a / b }')
	echo "| $1 | $dm / $dp $4 | $sm / $sp $4 | $ratio | $dn / $sn |"
}
# The largest mappings of the last static run.
top_maps() {
	awk -v mem=$((128 * 1024)) '/^[0-9a-f]+-[0-9a-f]+ /{ h = $0; next } /^Size:/ { s = $2 } /^Rss:/ { r = $2 }
		/^Pss:/ { if (s < mem && r > 0) { n = split(h, f, " "); p = n >= 6 ? f[6] : "anonymous " f[2]; sub(/.*\//, "", p)
		          printf "| %d | %d | %s |\n", r, s, p } }' "$1" | sort -t'|' -k2,2nr | head -n 12
}
mkdir -p "$(dirname "$OUT")"
{
	echo "# Static against dynamic ember"
	echo
	echo "\`benchmarks/static.sh $RUNS $MEM_RUNS\` $(machine_line)"
	echo "The same objects linked two ways: \`$DYNAMIC\` (dynamic, as ember was before) and" \
	     "\`$STATIC\` (static-pie), alternately. Exec → API answers: $RUNS runs each, \`benchmarks/apibench\`" \
	     "(exec to the first answer to \`GET /\` on the API socket; CPU: all threads, from schedstat)." \
	     "Memory: $MEM_RUNS runs each of a Linux guest (1 vCPU, 128 MiB) with 3 drives, a network" \
	     "interface on a tap and vsock, every device used (reads on every drive, a ping, a line over vsock)," \
	     "then the Rss and Pss of every mapping smaller than guest RAM, as Firecracker's tests count" \
	     "it; each ember ran from a private copy of its binary, as in a jail."
	echo
	echo "| metric | dynamic median / p90 | static median / p90 | ratio static/dynamic | runs |"
	echo "|---|---|---|---|---|"
	row "exec → API socket answers" api 1 ms .ms
	row "CPU time until then, all threads" api 2 ms .ms
	row "memory outside guest RAM, RSS (3 drives, net, vsock)" mem 1 KiB ""
	row "memory outside guest RAM, PSS" mem 2 KiB ""
	echo
	if [ -f "$tmp/smaps-static" ]; then
		echo "The static ember's mappings outside guest RAM (last run), by RSS:"
		echo
		echo "| RSS KiB | size KiB | mapping |"
		echo "|---|---|---|"
		top_maps "$tmp/smaps-static"
		echo
	fi
	failures_line "No run failed."
} > "$OUT"
cat "$OUT"
[ ! -s "$tmp/failures" ]
