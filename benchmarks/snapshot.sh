#!/usr/bin/env bash
# Restore benchmark: ember loading a snapshot (PUT /snapshot/load, guest
# memory from the file or through userfaultfd) and QEMU's microvm machine
# loading the same test guest from a file (-incoming), run alternately
# (A/B/A/B) for each memory size in the same run.
#
# The guest is the test guest counting over a memory pattern
# (testvm.counter, testvm.fill): before each "testvm: count N" line it
# re-checks 64 pages of the pattern, so a guest whose memory came back
# wrong says "testvm: FAIL memory" instead. For each size it is booted and
# saved once per VMM, then restored RUNS times, each timed from the
# restore request (the VMM already started and answering) to
#   running    the VMM says the VM runs (QEMU: QMP's RESUME event)
#   progress   the first new "testvm: count" line on the console
# The first restore of each size waits until every page of the pattern
# was checked once; the others for CHECK_LINES more lines.
#
# At the first size, restores run together: N VMMs launched at once, each
# restoring the same snapshot (ember: File), timed from the first launch
# to the last "running" (CONCURRENCY="1 2 4 8 16", CONC_RUNS=3 batches).
#
# usage: benchmarks/snapshot.sh [RUNS]   (default 20; SIZES="128 1024 4096" MiB)
# Writes benchmarks/results/snapshot.md (and snapshot.tsv, data/restore.dat,
# data/density-restore.dat) and prints it. Exits 1 if any restore failed
# (said so on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/lib.sh
RUNS=${1:-20}
SIZES=${SIZES:-128 1024 4096}
BUILD=${BUILD:-build}
EMBER=${EMBER:-$BUILD/ember}
OUT=${OUT:-benchmarks/results/snapshot.md}
BENCH=$BUILD/restorebench
# Every page touch is slow under kvm_pvm (filling 16 MiB takes ~10 s), so
# the pattern stays small at every memory size.
FILL=${FILL:-16}
SPIN=${SPIN:-1000}
GUEST_ARGS="testvm.counter=$SPIN testvm.fill=$FILL"
CHECK_LINES=${CHECK_LINES:-2}
FULL_CHECK=${FULL_CHECK:-$((FILL * 256 / 64))} # lines until every page was checked once
TIMEOUT=${TIMEOUT:-120}         # seconds, per save and per restore
CONCURRENCY=${CONCURRENCY-1 2 4 8 16} # empty: none
CONC_RUNS=${CONC_RUNS:-3}
# How QEMU reads the state: "fd" (the file opened here and passed over
# QMP: QEMU 7.2 has no file: URI) or "exec" (exec:cat FILE).
QEMU_LOAD=${QEMU_LOAD:-fd}

scratch_dir snapbench # $tmp, short: socket paths must fit a sun_path

gcc -O2 -Wall -o "$BENCH" benchmarks/restorebench.c benchmarks/vmmrun.c
[ -f "$BUILD/testvm.elf" ] || { echo "snapshot.sh: $BUILD/testvm.elf missing (make $BUILD/testvm.elf)" >&2; exit 1; }

# Run a command in the background and wait for it: a signal to the script
# then ends the run at once, and scratch_cleanup ends the command (PIDFILE).
waited() { # PIDFILE COMMAND...
	local pidfile=$1
	shift
	"$@" &
	echo $! > "$pidfile"
	wait $!
}

failed() { # what log-file
	run_failed snapshot.sh "$1" "$2"
}

# ---- QEMU ---------------------------------------------------------------
# The same command line saves and restores (the restore adds -incoming
# defer). store-global-state=off: the saved state does not say "paused",
# so the restored VM starts running by itself as soon as it is loaded.
qemu_cmd() { # MEM_MIB DIR -> the array qemu
	qemu=("${QEMU_MICROVM[@]}" -serial stdio -m "$1" -kernel "$BUILD/testvm.elf" -append "$GUEST_ARGS"
	      -qmp unix:"$2/qmp.sock",server=on,wait=off -pidfile "$2/qemu.pid"
	      -global migration.store-global-state=off)
}

# Boot the guest with MEM_MIB, let it count a few lines, pause it the
# moment a line is complete (so every restore starts at the beginning of
# a step, for every VMM), save it to DIR/vm.state; DIR/count gets the
# last count the guest printed.
qemu_snapshot_prepare() { # MEM_MIB DIR
	local mem=$1 dir=$2
	mkdir -p "$dir"
	local qemu
	qemu_cmd "$mem" "$dir"
	if ! RESTOREBENCH_LOG=$dir/save.log waited "$dir/bench.pid" "$BENCH" qemu-save "$dir/qmp.sock" \
		"file:$dir/vm.state" "$TIMEOUT" -- "${qemu[@]}" > "$dir/count"; then
		failed "QEMU save at $mem MiB" "$dir/save.log"
		rm -f "$dir/vm.state"
	fi
}

# Restore DIR/vm.state into a new QEMU; prints "<running_ms> <progress_ms>".
qemu_restore_once() { # MEM_MIB DIR
	local mem=$1 dir=$2 lines=$CHECK_LINES uri out rc=0 qemu
	if [ ! -f "$dir/vm.state" ]; then
		echo "-1 -1 -1 -1"
		return
	fi
	[ -e "$dir/checked" ] || lines=$FULL_CHECK
	case $QEMU_LOAD in
	fd) uri="file:$dir/vm.state" ;;
	exec) uri="exec:cat $dir/vm.state" ;;
	*) echo "snapshot.sh: QEMU_LOAD must be fd or exec" >&2; exit 2 ;;
	esac
	qemu_cmd "$mem" "$dir"
	RESTOREBENCH_LOG=$dir/restore.log waited "$dir/bench.pid" "$BENCH" qemu-restore "$dir/qmp.sock" \
		"$uri" "$(cat "$dir/count")" "$lines" "$TIMEOUT" -- "${qemu[@]}" -incoming defer \
		> "$dir/times" || rc=$?
	out=$(cat "$dir/times")
	case $rc in
	0) touch "$dir/checked"; echo "$out" ;;
	3) failed "QEMU restore at $mem MiB: the guest's memory came back wrong" "$dir/restore.log"
	   echo "-1 -1 -1 -1" ;;
	*) failed "QEMU restore at $mem MiB (status $rc)" "$dir/restore.log"
	   echo "$out" ;;
	esac
}

# ---- ember --------------------------------------------------------------
UFFD=${UFFD:-$(dirname "$EMBER")/ember-uffd}

# Boot the guest ($GUEST_ARGS) with MEM_MIB through the API, let it count a
# few lines, pause it the moment a line is complete, snapshot it to
# DIR/vm.state + DIR/vm.mem (DIR/count: the last count printed); then start
# ember-uffd serving DIR/vm.mem (its working set first) on DIR/uffd.sock
# for the Uffd restores of this size.
ember_snapshot_prepare() { # MEM_MIB DIR
	local mem=$1 dir=$2
	mkdir -p "$dir"
	cat > "$dir/setup" <<EOF
PUT /boot-source {"kernel_image_path": "$(realpath "$BUILD/testvm.elf")", "boot_args": "$GUEST_ARGS"}
PUT /machine-config {"vcpu_count": 1, "mem_size_mib": $mem}
PUT /actions {"action_type": "InstanceStart"}
EOF
	if ! RESTOREBENCH_LOG=$dir/save.log waited "$dir/bench.pid" "$BENCH" ember-save "$dir/api.sock" \
		"$dir/setup" "$dir/vm.state" "$dir/vm.mem" "$TIMEOUT" -- "$EMBER" --api-sock "$dir/api.sock" \
		> "$dir/count"; then
		failed "ember snapshot at $mem MiB" "$dir/save.log"
		rm -f "$dir/vm.state"
		return
	fi
	"$UFFD" --socket "$dir/uffd.sock" --mem-file "$dir/vm.mem" --working-set "$dir/vm.mem.ws" \
		2> "$dir/uffd.log" &
	echo $! > "$dir/uffd.pid"
	local i
	for i in $(seq 100); do [ -S "$dir/uffd.sock" ] && break; sleep 0.05; done
}

# Load the snapshot in DIR into a new ember with the memory backend
# BACKEND (File or Uffd) and resume it; prints "<running_ms> <progress_ms>
# <entry_ms>" (-1 for a step not reached) and reports a "FAIL memory" line
# as a failure.
ember_restore_once() { # MEM_MIB BACKEND DIR
	local mem=$1 backend=$2 dir=$3 lines=$CHECK_LINES path out rc=0
	if [ ! -f "$dir/vm.state" ]; then
		echo "-1 -1 -1 -1"
		return
	fi
	[ -e "$dir/checked-$backend" ] || lines=$FULL_CHECK
	[ "$backend" = File ] && path=$dir/vm.mem || path=$dir/uffd.sock
	echo "{\"snapshot_path\": \"$dir/vm.state\", \"mem_backend\": {\"backend_type\": \"$backend\"," \
	     "\"backend_path\": \"$path\"}, \"resume_vm\": true}" > "$dir/load.json"
	RESTOREBENCH_LOG=$dir/restore-$backend.log waited "$dir/bench.pid" "$BENCH" ember-restore \
		"$dir/b.sock" "$dir/load.json" "$(cat "$dir/count")" "$lines" "$TIMEOUT" -- \
		"$EMBER" --api-sock "$dir/b.sock" > "$dir/times" || rc=$?
	out=$(cat "$dir/times")
	case $rc in
	0) touch "$dir/checked-$backend"; echo "$out" ;;
	3) failed "ember $backend restore at $mem MiB: the guest's memory came back wrong" "$dir/restore-$backend.log"
	   echo "-1 -1 -1 -1" ;;
	*) failed "ember $backend restore at $mem MiB (status $rc)" "$dir/restore-$backend.log"
	   echo "$out" ;;
	esac
}

# N restores of the snapshot in DIR at once, by VMM (ember: File; or
# qemu), each in a directory of its own linking to the snapshot; prints the
# milliseconds from the first VMM's launch to the last one running, or -1
# if any did not get there.
restores_together() { # MEM_MIB DIR VMM N
	local mem=$1 dir=$2 vmm=$3 n=$4 i sub pids=()
	local CHECK_LINES=0 # no more than the first new line: the time is "running"
	for i in $(seq "$n"); do
		sub=$dir/together.$i
		mkdir -p "$sub"
		ln -sf "$dir/vm.state" "$sub/vm.state"
		[ -f "$dir/vm.mem" ] && ln -sf "$dir/vm.mem" "$sub/vm.mem"
		cp "$dir/count" "$sub/count"
		touch "$sub/checked" "$sub/checked-File" # a full check was done once already
		if [ "$vmm" = ember ]; then
			BENCH_ABSOLUTE=1 ember_restore_once "$mem" File "$sub" > "$sub/times.all" &
		else
			BENCH_ABSOLUTE=1 qemu_restore_once "$mem" "$sub" > "$sub/times.all" &
		fi
		pids+=($!)
	done
	wait "${pids[@]}" # not a bare wait: ember-uffd runs in the background too
	cat "$dir"/together.*/times.all | batch_span "$n" 5
	rm -rf "$dir"/together.*
}

# ---- runs ---------------------------------------------------------------
declare -A state_size ember_state ember_mem
for mem in $SIZES; do
	d=$tmp/$mem
	ember_snapshot_prepare "$mem" "$d/ember"
	qemu_snapshot_prepare "$mem" "$d/qemu"
	state_size[$mem]=$(stat -c %s "$d/qemu/vm.state" 2> /dev/null || echo 0)
	ember_state[$mem]=$(stat -c %s "$d/ember/vm.state" 2> /dev/null || echo 0)
	ember_mem[$mem]=$(du -k "$d/ember/vm.mem" 2> /dev/null | cut -f1 || echo 0)
	: > "$tmp/ember-file-$mem"; : > "$tmp/ember-uffd-$mem"; : > "$tmp/qemu-$mem"
	for i in $(seq "$RUNS"); do
		ember_restore_once "$mem" File "$d/ember" >> "$tmp/ember-file-$mem"
		ember_restore_once "$mem" Uffd "$d/ember" >> "$tmp/ember-uffd-$mem"
		qemu_restore_once "$mem" "$d/qemu" >> "$tmp/qemu-$mem"
	done
	if [ "$mem" = "${SIZES%% *}" ]; then
		for n in $CONCURRENCY; do
			: > "$tmp/together-ember-$n"; : > "$tmp/together-qemu-$n"
			for i in $(seq "$CONC_RUNS"); do
				restores_together "$mem" "$d/ember" ember "$n" >> "$tmp/together-ember-$n"
				restores_together "$mem" "$d/qemu" qemu "$n" >> "$tmp/together-qemu-$n"
			done
		done
	fi
	[ -f "$d/ember/uffd.pid" ] && kill "$(cat "$d/ember/uffd.pid")" 2> /dev/null
	rm -rf "$d" # the state files of the larger sizes are large
done

cell() { # median p90 n
	[ "$3" -gt 0 ] && echo "$1 / $2" || echo "-"
}
ratio() { # ember-median ember-n qemu-median qemu-n
	[ "$2" -gt 0 ] && [ "$4" -gt 0 ] && awk -v a="$1" -v b="$3" 'BEGIN { printf "%.2f", a / b }' || echo "-"
}
first_mem=${SIZES%% *}
row() { # mem label column
	read -r fm fp fn <<< "$(stats "$tmp/ember-file-$1" "$3")"
	read -r um up un <<< "$(stats "$tmp/ember-uffd-$1" "$3")"
	read -r qm qp qn <<< "$(stats "$tmp/qemu-$1" "$3")"
	echo "| $1 MiB | $2 | $(cell "$fm" "$fp" "$fn") | $(cell "$um" "$up" "$un") | $(cell "$qm" "$qp" "$qn") |" \
	     "$(ratio "$fm" "$fn" "$qm" "$qn") | $(ratio "$um" "$un" "$qm" "$qn") | $fn / $un / $qn |"
}

headline_init snapshot
mkdir -p "$(dirname "$OUT")/data"
echo "# MiB file_median file_p90 uffd_median uffd_p90 qemu_median qemu_p90 (ms, request -> running)" \
	> "$(dirname "$OUT")/data/restore.dat"
for mem in $SIZES; do
	headline "restore → running, $mem MiB, ember File" ms "$tmp/ember-file-$mem" 1 "$tmp/qemu-$mem" 1
	headline "restore → running, $mem MiB, ember Uffd" ms "$tmp/ember-uffd-$mem" 1 "$tmp/qemu-$mem" 1
	headline "restore: exec → running, $mem MiB, ember File" ms "$tmp/ember-file-$mem" 4 "$tmp/qemu-$mem" 4
	line=$mem
	for f in ember-file ember-uffd qemu; do
		read -r m p n <<< "$(stats "$tmp/$f-$mem" 1)"
		[ "$n" -gt 0 ] && line+=" $m $p" || line+=" ? ?"
	done
	echo "$line" >> "$(dirname "$OUT")/data/restore.dat"
done
echo "# N ember_median_ms qemu_median_ms ember_per_s qemu_per_s" > "$(dirname "$OUT")/data/density-restore.dat"
for n in $CONCURRENCY; do
	[ -f "$tmp/together-ember-$n" ] || continue
	headline "restores ($first_mem MiB), N=$n launched together: first exec → last running" ms \
		"$tmp/together-ember-$n" 1 "$tmp/together-qemu-$n" 1
	read -r em ep en <<< "$(stats "$tmp/together-ember-$n" 1)"
	read -r qm qp qn <<< "$(stats "$tmp/together-qemu-$n" 1)"
	echo "$n $em $qm $(per_second "$n" "$em" "$en") $(per_second "$n" "$qm" "$qn")" \
		>> "$(dirname "$OUT")/data/density-restore.dat"
done
{
	echo "# Restore benchmark"
	echo
	echo "\`benchmarks/snapshot.sh $RUNS\` $(machine_line)"
	echo "Milliseconds from the restore request, measured outside the VMMs by" \
	     "\`benchmarks/restorebench\` (the VMM already started and answering), to:" \
	     "**running**, the VMM saying the VM runs (ember: the 204 of PUT /snapshot/load with" \
	     "\`resume_vm\`, sent once the vCPUs are started; QEMU: QMP's RESUME event after" \
	     "migrate-incoming from a file into \`-M microvm\` started with \`-incoming defer\`);" \
	     "**progress**, the guest's first new console line; **vCPU entry**, ember's own log of vCPU 0" \
	     "entering the guest (QEMU has no such report); **exec → running**, running counted from" \
	     "the VMM's exec instead (QEMU creates its VM at start, before the request; ember at the" \
	     "load, when it learns the memory size). ember File maps the memory file" \
	     "copy-on-write; Uffd has ember-uffd serve it (its working set first)." \
	     "Guest: the test guest with \`$GUEST_ARGS\`; each new line follows a check of 64 pages."
	echo
	echo "| memory | metric | ember File median / p90 | ember Uffd median / p90 | QEMU median / p90 |" \
	     "ratio File/QEMU | ratio Uffd/QEMU | runs File / Uffd / QEMU |"
	echo "|---|---|---|---|---|---|---|---|"
	for mem in $SIZES; do
		row "$mem" "running" 1
		row "$mem" "progress" 2
		row "$mem" "vCPU entry" 3
		row "$mem" "exec → running" 4
	done
	if [ -f "$tmp/together-ember-${CONCURRENCY%% *}" ]; then
		echo
		echo "Restores run together at $first_mem MiB: N VMMs launched at once, each restoring the same" \
		     "snapshot (ember: File, the memory file mapped by all), milliseconds from the first launch to" \
		     "the last VM running, median / p90 over $CONC_RUNS batches; per second is N over the median."
		echo
		echo "| N | ember File median / p90 | QEMU median / p90 | ember restores/s | QEMU restores/s | ratio ember/QEMU (time) | batches ember / QEMU |"
		echo "|---|---|---|---|---|---|---|"
		for n in $CONCURRENCY; do
			read -r em ep en <<< "$(stats "$tmp/together-ember-$n" 1)"
			read -r qm qp qn <<< "$(stats "$tmp/together-qemu-$n" 1)"
			echo "| $n | $(cell "$em" "$ep" "$en") | $(cell "$qm" "$qp" "$qn") | $(per_second "$n" "$em" "$en") |" \
			     "$(per_second "$n" "$qm" "$qn") | $(ratio "$em" "$en" "$qm" "$qn") | $en / $qn |"
		done
	fi
	echo
	echo -n "QEMU state file:"
	for mem in $SIZES; do echo -n " $((state_size[$mem] / 1024 / 1024)) MiB at $mem MiB;"; done
	echo " QEMU reads it through $( [ "$QEMU_LOAD" = fd ] && echo "an fd passed over QMP (getfd, fd: URI)" || echo "exec:cat")."
	echo -n "ember state file / memory file on disk (sparse):"
	for mem in $SIZES; do echo -n " $((ember_state[$mem] / 1024)) KiB / $((ember_mem[$mem] / 1024)) MiB at $mem MiB;"; done
	echo
	echo
	failures_line "No restore failed; no guest reported a memory check failure."
	echo
	echo "The whole run took ${SECONDS} s."
} > "$OUT"
cat "$OUT"
[ ! -s "$tmp/failures" ]
