#!/usr/bin/env bash
# Jailer benchmark: time to start N jailed VMs at once (N = 1, 10, 50),
# with the jails on the disk beside the binary or on a tmpfs (ember-jailer
# copies the static binary into each jail either way, as Firecracker's
# jailer does). For each N: from launching N
# ember-jailer --daemonize processes together to every VMM answering on
# its API socket ("ready"), and to every VM having booted the test guest
# through the API and finished ("booted").
#
# usage: benchmarks/jailer.sh [RUNS]   (default 5; needs root)
# Writes benchmarks/results/jailer.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/lib.sh
RUNS=${1:-5}
SIZES=${SIZES:-1 10 50}
BUILD=${BUILD:-build}
EMBER=${EMBER:-$BUILD/ember}
JAILER=${JAILER:-$BUILD/ember-jailer}
OUT=${OUT:-benchmarks/results/jailer.md}
tmp=$(mktemp -d /tmp/ejb.XXXX) # short: API socket paths must fit a sun_path
cleanup() {
	mountpoint -q "$tmp/tmpfs" && umount "$tmp/tmpfs"
	rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/disk" "$tmp/tmpfs"
mount -t tmpfs ejb "$tmp/tmpfs"
name=$(basename "$EMBER")

now_us() { echo $(($(date +%s%N) / 1000)); }

running() { # pid: not gone, and not a zombie waiting for init to reap it
	local state
	state=$(grep '^State:' "/proc/$1/status" 2> /dev/null) || return 1
	[[ $state != *zombie* ]]
}

# One VM: jail, wait for the API, boot the test guest, wait for its end.
one_vm() { # base id
	local root=$1/$name/$2/root
	"$JAILER" --id "$2" --exec-file "$EMBER" --uid 12345 --gid 23456 --chroot-base-dir "$1" \
		--daemonize -- --api-sock /run/api.sock 2> "$tmp/$2.err" || return 1
	local sock=$root/run/api.sock pid
	until curl -s -o /dev/null --unix-socket "$sock" http://localhost/ 2> /dev/null; do sleep 0.002; done
	now_us > "$tmp/$2.ready"
	pid=$(cat "$root/$name.pid")
	cp "$BUILD/testvm.elf" "$root/testvm.elf"
	curl -s --unix-socket "$sock" -X PUT http://localhost/boot-source -d '{"kernel_image_path": "/testvm.elf"}'
	curl -s --unix-socket "$sock" -X PUT http://localhost/actions -d '{"action_type": "InstanceStart"}'
	while running "$pid"; do sleep 0.002; done
	now_us > "$tmp/$2.done"
}

: > "$tmp/results"
for run in $(seq "$RUNS"); do
	for n in $SIZES; do
		for mode in disk tmpfs; do
			ids=()
			for i in $(seq "$n"); do ids+=("b$run-$mode-$n-$i"); done
			t0=$(now_us)
			for id in "${ids[@]}"; do one_vm "$tmp/$mode" "$id" & done
			wait
			ready=0 done=0
			for id in "${ids[@]}"; do
				r=$(cat "$tmp/$id.ready") d=$(cat "$tmp/$id.done")
				[ $((r - t0)) -gt $ready ] && ready=$((r - t0))
				[ $((d - t0)) -gt $done ] && done=$((d - t0))
			done
			grep -q "copied $name to $tmp/$mode/" "$tmp/${ids[0]}.err" ||
				{ echo "jailer.sh: the $mode run copied no binary: $(cat "$tmp/${ids[0]}.err")" >&2; exit 1; }
			echo "$n $mode $ready $done" >> "$tmp/results"
			[ $mode = tmpfs ] && du -sk --exclude=dev --exclude=run "$tmp/tmpfs/$name/${ids[0]}/root" | cut -f1 > "$tmp/copy-kib"
			for id in "${ids[@]}"; do
				"$JAILER" --cleanup --id "$id" --exec-file "$EMBER" --chroot-base-dir "$tmp/$mode" > /dev/null 2>&1
			done
		done
	done
done

col() { # n mode column -> median p90 count, in ms
	awk -v n="$1" -v m="$2" -v c="$3" '$1 == n && $2 == m { print $c / 1000 }' "$tmp/results" > "$tmp/col"
	stats "$tmp/col" 1
}
headline_init jailer
for n in $SIZES; do
	awk -v n="$n" '$1 == n && $2 == "disk" { print $4 / 1000 }' "$tmp/results" > "$tmp/booted-$n"
	headline "jailed starts, N=$n launched together → last booted (ember only)" ms "$tmp/booted-$n" 1
done
{
	echo "# Jailer benchmark"
	echo
	echo "\`benchmarks/jailer.sh $RUNS\` $(machine_line)"
	echo "N jailed VMs launched together; each: ember-jailer --daemonize (jail with a copy of the static"
	echo "binary, no cgroups), API ready, then the test guest booted through the API until it resets."
	echo "Times in ms from launch to the last VM, median / p90 over $RUNS runs; tmpfs/disk is the ratio of medians."
	echo
	echo "| N | ready, disk | ready, tmpfs | tmpfs/disk | booted, disk | booted, tmpfs | tmpfs/disk |"
	echo "|---|---|---|---|---|---|---|"
	for n in $SIZES; do
		read -r rl rlp _ <<< "$(col "$n" disk 3)"
		read -r rc rcp _ <<< "$(col "$n" tmpfs 3)"
		read -r bl blp _ <<< "$(col "$n" disk 4)"
		read -r bc bcp _ <<< "$(col "$n" tmpfs 4)"
		echo "| $n | $rl / $rlp | $rc / $rcp | $(awk -v a="$rc" -v b="$rl" 'BEGIN { printf "%.2f", a / b }') |" \
		     "$bl / $blp | $bc / $bcp | $(awk -v a="$bc" -v b="$bl" 'BEGIN { printf "%.2f", a / b }') |"
	done
	echo
	echo "Each jail holds $(cat "$tmp/copy-kib") KiB (the static ember binary and the test guest)."
} > "$OUT"
cat "$OUT"
