#!/usr/bin/env bash
# The soak: ember booted, restored and kept running many times over, each
# ember sampled while its guest runs (open files, threads, RSS, peak RSS,
# the files in its directory, and the driver's own open files), by
# tests/soak/soak.c. Fails if any run fails or any of these grows from
# the first quarter of a phase's samples to its last (tests/soak/growth.h).
#
#   boots     BOOTS embers in turn boot the test guest through the API (with
#             a read-only drive); sampled while it runs, it resets: exit 0
#   cycles    one ember: CYCLES times pause, snapshot (Full, same paths),
#             resume, swap a drive's file, 4 API clients at once; sampled
#             every EVERY cycles once the guest has counted on
#   restores  RESTORES embers in turn load a snapshot of that guest (File;
#             taken by a cycles phase of one cycle); sampled once the guest
#             counts on (its memory checked), then SIGTERM: exit 143
#   together  ROUNDS times, TOGETHER (16) of those restores at once
#   leak      with LEAK=path of soak-leak.so: the cycles again (40) in an
#             ember made to leak a socket and 64 KiB per API client; the
#             check must find its open files and RSS grew
#
# usage: tests/soak/run.sh   (make soak; make test runs a short one)
# Writes OUT/report.md (default build/soak) with each phase's samples
# (OUT/<phase>.tsv) summed up, prints it, and exits 1 if the soak failed.
# Never checks a time; SOAK_TIMEOUT (s, default 60) only bounds each run.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benchmarks/lib.sh # scratch_dir
BUILD=${BUILD:-build}
EMBER=${EMBER:-$BUILD/obj/ember}
SOAK=${SOAK:-$BUILD/obj/soak}
OUT=${OUT:-$BUILD/soak}
BOOTS=${BOOTS:-1000}
CYCLES=${CYCLES:-1000}
EVERY=${EVERY:-10}
RESTORES=${RESTORES:-1000}
ROUNDS=${ROUNDS:-20}
TOGETHER=${TOGETHER:-16}
LEAK=${LEAK:-}
# Preloading needs the dynamic loader: the leaking ember is the same
# objects linked dynamically (build/obj/ember-dynamic; build/ember is static).
LEAK_EMBER=${LEAK_EMBER:-$EMBER}
# The sanitizer's allocator keeps freed memory in quarantine: its RSS
# grows by design, so memory is reported but not checked there.
if [ "${SAN:-0}" = 1 ]; then export SOAK_MEMORY_CHECK=0; fi

if [ ! -c /dev/kvm ] || [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	echo "SKIPPED soak: /dev/kvm is not available  <<<<<<<<<< NOT RUN"
	[ "${EMBER_REQUIRE_KVM:-0}" = 1 ] && { echo "EMBER_REQUIRE_KVM=1: skipping is a failure"; exit 1; }
	exit 0
fi
for f in "$EMBER" "$SOAK" "$BUILD/testvm.elf" ${LEAK:+"$LEAK" "$LEAK_EMBER"}; do
	[ -f "$f" ] || { echo "soak: $f missing (make)" >&2; exit 1; }
done

scratch_dir soak # $tmp, short: socket paths must fit a sun_path
mkdir -p "$OUT"
rm -f "$OUT"/*.tsv "$OUT"/*.log "$OUT"/report.md
truncate -s 1M "$tmp/a.img" "$tmp/b.img"
testvm=$(realpath "$BUILD/testvm.elf")
drive="PUT /drives/scratch {\"drive_id\": \"scratch\", \"path_on_host\": \"$tmp/a.img\", \"is_root_device\": false, \"is_read_only\": true}"
cat > "$tmp/boots.setup" <<EOF
PUT /boot-source {"kernel_image_path": "$testvm", "boot_args": "testvm.waitinput"}
PUT /machine-config {"vcpu_count": 1, "mem_size_mib": 64}
$drive
PUT /actions {"action_type": "InstanceStart"}
EOF
# The counting guest (as benchmarks/snapshot.sh): each count line re-checks
# 64 pages of a 1 MiB pattern, so a restore whose memory came back wrong
# says so.
sed 's/"testvm.waitinput"/"testvm.counter=1000 testvm.fill=1"/' "$tmp/boots.setup" > "$tmp/cycles.setup"
cat > "$tmp/load.json" <<EOF
{"snapshot_path": "$tmp/snapshot/vm.state", "mem_backend": {"backend_type": "File", "backend_path": "$tmp/snapshot/vm.mem"}, "resume_vm": true}
EOF

failed=()
declare -A took
phase() { # NAME COMMAND...: its samples in OUT/NAME.tsv
	local name=$1 start=$SECONDS
	shift
	mkdir -p "$tmp/$name"
	echo "soak: $name" >&2
	# The leaking ember's verdict is the check's (below), not its runs'.
	"$@" > "$OUT/$name.tsv" || [ "$name" = leak ] || failed+=("$name: a run failed")
	took[$name]=$((SECONDS - start))
}
cycles() { # NAME N EVERY [PRELOAD EMBER]
	phase "$1" env SOAK_PRELOAD="${4:-}" "$SOAK" cycles "$2" "$3" "$tmp/$1" "$tmp/cycles.setup" \
		"$tmp/$1/vm.state" "$tmp/$1/vm.mem" "$tmp/a.img" "$tmp/b.img" -- "${5:-$EMBER}"
}

start=$SECONDS
phase boots "$SOAK" boots "$BOOTS" "$tmp/boots" "$tmp/boots.setup" -- "$EMBER"
cycles cycles "$CYCLES" "$EVERY"
cycles snapshot 1 1 # the restores' snapshot
if [ -s "$tmp/snapshot/count" ]; then
	after=$(cat "$tmp/snapshot/count")
	phase restores "$SOAK" restores "$RESTORES" "$tmp/restores" "$tmp/load.json" "$after" -- "$EMBER"
	phase together "$SOAK" together "$ROUNDS" "$TOGETHER" "$tmp/together" "$tmp/load.json" "$after" -- "$EMBER"
else
	failed+=("restores: not run, no snapshot was made")
fi
if [ -n "$LEAK" ]; then cycles leak 40 5 "$(realpath "$LEAK")" "$LEAK_EMBER"; fi
total=$((SECONDS - start))
# The logs of failed runs (console and API conversation), kept.
logs=0
for log in "$tmp"/*/failed-*.log "$tmp"/*/*/failed-*.log; do
	[ -f "$log" ] || continue
	d=${log#"$tmp"/}
	cp "$log" "$OUT/${d//\//-}"
	logs=$((logs + 1))
done

section() { # NAME TITLE
	[ -f "$OUT/$1.tsv" ] || return 0
	echo
	echo "## $2"
	"$SOAK" check "$OUT/$1.tsv" > "$tmp/$1.md" || [ "$1" = leak ] || failed+=("$1: the check failed (its table says why)")
	echo
	echo "\`$1.tsv\`, ${took[$1]} s: $(cat "$tmp/$1.md")"
}
leak_seen() { # the check found both of the leaking ember's leaks
	grep -q "^| ember's open files .*GREW" "$tmp/leak.md" && grep -q "^| ember's RSS .*GREW" "$tmp/leak.md"
}

{
	echo "# Soak"
	echo
	echo "\`tests/soak/run.sh\` with BOOTS=$BOOTS CYCLES=$CYCLES EVERY=$EVERY RESTORES=$RESTORES" \
	     "ROUNDS=$ROUNDS TOGETHER=$TOGETHER, ember: \`$EMBER\`; on $(date -u +%Y-%m-%d), $(nproc) CPUs," \
	     "$(uname -r); $total s in all. Each sample is taken while the guest runs; RSS and" \
	     "peak RSS (VmHWM) in KiB. A column grows if the median of its last quarter of samples" \
	     "exceeds that of its first quarter by more than the allowed growth."
	section boots "$BOOTS boots in turn: one ember each, sampled while the guest runs, then it resets (exit 0)"
	section cycles "One ember, $CYCLES cycles of pause, snapshot, resume, drive swap and 4 API clients at once, sampled every $EVERY"
	section restores "$RESTORES restores in turn (File), each sampled once the guest counts on, then SIGTERM (exit 143)"
	section together "$TOGETHER restores at once, $ROUNDS time(s)"
	if [ -n "$LEAK" ]; then
		section leak "The check on an ember made to leak (a socket and 64 KiB per API client): must fail"
		if [ -f "$tmp/leak.md" ] && leak_seen; then
			echo
			echo "The check saw both leaks, as it must."
		else
			failed+=("leak: the check did not see the leaking ember's open files and RSS grow")
		fi
	fi
	echo
	if [ ${#failed[@]} -eq 0 ]; then
		echo "**Soak passed.**"
	else
		echo "**Soak FAILED**: $(printf '%s; ' "${failed[@]}" | sed 's/; $//')."
		[ "$logs" -eq 0 ] || echo "Logs of failed runs: \`$OUT/*-failed-*.log\`."
	fi
} > "$OUT/report.md"
cat "$OUT/report.md"
[ ${#failed[@]} -eq 0 ]
