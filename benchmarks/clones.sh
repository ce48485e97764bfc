#!/usr/bin/env bash
# Memory density: how much host memory N idle clones of one warm Linux
# guest take, and what the balloon and KSM give back; plus boot and
# restore times with 2 MiB huge pages against 4 KiB pages.
#
# 1. Clones. For each setup a Linux guest (build/vmlinux, build/rootfs.ext4
#    read-only, MEM_MIB, 1 vCPU, a balloon with statistics every second)
#    boots, its init settles, and it is snapshotted while it sleeps. N
#    clones restore that snapshot (File: the memory file mapped by all),
#    each runs the same small job once resumed (touches FREE_MIB and frees
#    it, keeps KEEP_MIB of copies of a binary in a tmpfs: what a function
#    leaves behind) and then idles. Once every clone is idle, host memory
#    is polled every second until it is steady (SETTLE_TIMEOUT at most)
#    and read from /proc/PID/smaps_rollup of each VMM and fincore(1) of
#    the memory file. The setups:
#      none  nothing
#      fpr   the balloon's free_page_reporting
#      ksm   machine-config ember_ksm and the host's KSM running, scanning
#            fast (its settings are put back afterwards)
#      both  fpr and ksm
# 2. Reclaim: on the clones of the first setup, PATCH /balloon amount_mib
#    RECLAIM_MIB (100), timed until the balloon's actual_mib reaches it (or
#    the VMM's RSS fell by as much), RUNS times (deflated again between runs).
# 3. Huge pages: the test guest booted (start to "testvm: booted") and
#    restored (load request to running) with huge_pages "2M" and with 4 KiB
#    pages, RUNS times each, against QEMU's microvm machine with
#    -mem-prealloc -mem-path on a hugetlbfs mount (and without both). The
#    script reserves the huge pages (/proc/sys/vm/nr_hugepages) and puts
#    the old value back; where it cannot it says SKIPPED.
# QEMU's microvm is tried on the same Linux guest once; it does not run it
# on this host (benchmarks/boot.md), so 1 and 2 have no peer; 3 has.
#
# usage: benchmarks/clones.sh [RUNS]   (default 5)
#   CLONES="4 8"  SETUPS="none fpr ksm both" (SETUPS="": the huge page rows only)  MEM_MIB=256  FREE_MIB=32
#   KEEP_MIB=16  RECLAIM_MIB=100  SETTLE_TIMEOUT=120  JOB_TIMEOUT=1800  HUGE=1 (0: no huge page rows)
#   QEMU_LINUX=1 (0: do not try QEMU on the Linux guest)
# Needs root for KSM and huge pages (without, those rows say SKIPPED).
# Writes benchmarks/results/clones.md (OUT), clones.tsv, data/clones-memory.dat
# and prints it. Exits 1 if a run failed (said so on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/lib.sh
RUNS=${1:-5}
CLONES=${CLONES:-4 8}
SETUPS=${SETUPS-none fpr ksm both}
MEM=${MEM_MIB:-256}
FREE_MIB=${FREE_MIB:-32}
KEEP_MIB=${KEEP_MIB:-16}
RECLAIM=${RECLAIM_MIB:-100}
SETTLE_TIMEOUT=${SETTLE_TIMEOUT:-120}
JOB_TIMEOUT=${JOB_TIMEOUT:-1800} # s for all N clones to be restored and through their job
LINUX_TIMEOUT=${LINUX_TIMEOUT:-600}
HUGE=${HUGE:-1}
HUGE_MEM=${HUGE_MEM:-128}
BUILD=${BUILD:-build}
EMBER=${EMBER:-$BUILD/ember}
OUT=${OUT:-benchmarks/results/clones.md}
for f in "$EMBER" "$BUILD/vmlinux" "$BUILD/rootfs.ext4" "$BUILD/testvm.elf"; do
	[ -e "$f" ] || { echo "clones.sh: $f missing (make)" >&2; exit 1; }
done
for s in $SETUPS; do
	case $s in none|fpr|ksm|both) ;; *) echo "clones.sh: unknown setup '$s'" >&2; exit 2 ;; esac
done

KSM=/sys/kernel/mm/ksm
HUGEPAGES=/proc/sys/vm/nr_hugepages
ksm_saved="" huge_saved="" huge_mount=""
scratch_dir clones
# Whatever happens, the host's KSM and huge page settings go back.
clones_cleanup() {
	if [ -n "$ksm_saved" ]; then
		read -r run scan sleep <<< "$ksm_saved"
		echo "$scan" > $KSM/pages_to_scan; echo "$sleep" > $KSM/sleep_millisecs; echo "$run" > $KSM/run
	fi
	[ -n "$huge_mount" ] && umount "$huge_mount" 2> /dev/null
	scratch_cleanup # ends the VMMs, so that the huge pages can be given back
	[ -n "$huge_saved" ] && echo "$huge_saved" > $HUGEPAGES
	true
}
trap clones_cleanup EXIT

gcc -O2 -Wall -o "$BUILD/bootbench" benchmarks/bootbench.c
gcc -O2 -Wall -o "$BUILD/restorebench" benchmarks/restorebench.c benchmarks/vmmrun.c

# api SOCK METHOD PATH [BODY]: prints the HTTP status; the body in $tmp/resp.
api() {
	curl -s -o "$tmp/resp" -w '%{http_code}' --max-time 60 --unix-socket "$1" -X "$2" \
		-H 'Content-Type: application/json' ${4:+-d "$4"} "http://localhost$3" || echo 000
}
expect() { # STATUS SOCK METHOD PATH [BODY]
	local got
	got=$(api "${@:2}")
	[ "$got" = "$1" ] || { echo "clones.sh: $3 $4 answered $got: $(cat "$tmp/resp" 2> /dev/null)" >&2; return 1; }
}
wait_line() { # FILE TEXT PID SECONDS
	local deadline=$((SECONDS + $4))
	until grep -q "$2" "$1" 2> /dev/null; do
		kill -0 "$3" 2> /dev/null || return 1
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}
failed() { run_failed clones.sh "$1" "$2"; }

# ---- 1. clones ----------------------------------------------------------
# The guest's script: settle, say so, sleep (the snapshot is taken here),
# then, in every clone, the job and idling.
cp --sparse=always "$BUILD/rootfs.ext4" "$tmp/root.img"
cat > "$tmp/clone.sh" <<SH
sleep 2
echo clone-settled
sleep 5
mount -t tmpfs -o size=$((KEEP_MIB + 8))m tmpfs /tmp
dd if=/dev/zero of=/dev/null bs=${FREE_MIB}M count=1 2>/dev/null
i=0
while [ \$((i * \$(stat -c %s /bin/busybox))) -lt $((KEEP_MIB << 20)) ]; do cp /bin/busybox /tmp/b\$i; i=\$((i + 1)); done
echo clone-idle
exec sleep 1000000
SH
debugfs -w -R "write $tmp/clone.sh /clone.sh" "$tmp/root.img" > /dev/null 2>&1
ROOT=$(realpath "$tmp/root.img")

ksm_can() { [ -w $KSM/run ] && [ -r /proc/self/ksm_merging_pages ]; }
ksm_on() {
	[ -n "$ksm_saved" ] || ksm_saved="$(cat $KSM/run) $(cat $KSM/pages_to_scan) $(cat $KSM/sleep_millisecs)"
	echo 10000 > $KSM/pages_to_scan; echo 20 > $KSM/sleep_millisecs; echo 1 > $KSM/run
}
ksm_off() { [ -n "$ksm_saved" ] && echo "${ksm_saved%% *}" > $KSM/run; true; }

# Boot the guest for SETUP and snapshot it to DIR/state + DIR/mem; the
# memory file is then dropped from the page cache (as a snapshot read
# from disk would start).
source_snapshot() { # SETUP DIR
	local setup=$1 dir=$2 fpr=false ksm="" pid
	mkdir -p "$dir"
	case $setup in fpr|both) fpr=true ;; esac
	case $setup in ksm|both) ksm=', "ember_ksm": true' ;; esac
	cat > "$dir/vm.json" <<-JSON
	{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/vmlinux")",
	  "boot_args": "console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"sh /clone.sh\""},
	 "machine-config": {"vcpu_count": 1, "mem_size_mib": $MEM$ksm},
	 "drives": [{"drive_id": "rootfs", "path_on_host": "$ROOT", "is_root_device": true, "is_read_only": true}],
	 "balloon": {"amount_mib": 0, "deflate_on_oom": false, "stats_polling_interval_s": 1, "free_page_reporting": $fpr}}
	JSON
	"$EMBER" --api-sock "$dir/src.sock" --config-file "$dir/vm.json" < /dev/null > "$dir/src.out" 2> "$dir/src.err" &
	pid=$!
	echo "$pid" > "$dir/src.pid"
	local t0=$SECONDS rc=0
	wait_line "$dir/src.out" clone-settled "$pid" "$LINUX_TIMEOUT" &&
		expect 204 "$dir/src.sock" PATCH /vm '{"state": "Paused"}' &&
		expect 204 "$dir/src.sock" PUT /snapshot/create \
			"{\"snapshot_path\": \"$dir/state\", \"mem_file_path\": \"$dir/mem\"}" || rc=1
	kill -9 "$pid" 2> /dev/null; wait "$pid" 2> /dev/null || true
	rm -f "$dir/src.pid"
	if [ $rc -ne 0 ]; then
		failed "$setup: the Linux guest did not settle or its snapshot failed" "$dir/src.out"
		return 1
	fi
	echo "clones.sh: $setup: Linux booted and snapshotted in $((SECONDS - t0)) s" >&2
	sync "$dir/mem"
	dd if="$dir/mem" iflag=nocache count=0 status=none
}

# Restore clone I of the snapshot in DIR (its pid in DIR/clone.I.pid).
clone_start() { # DIR I
	local dir=$1 i=$2 pid
	"$EMBER" --api-sock "$dir/c$i.sock" < /dev/null > "$dir/c$i.out" 2> "$dir/c$i.err" &
	pid=$!
	echo "$pid" > "$dir/clone.$i.pid"
	local k
	for k in $(seq 100); do [ -S "$dir/c$i.sock" ] && break; sleep 0.05; done
	expect 204 "$dir/c$i.sock" PUT /snapshot/load "{\"snapshot_path\": \"$dir/state\", \"mem_backend\":
		{\"backend_type\": \"File\", \"backend_path\": \"$dir/mem\"}, \"resume_vm\": true}"
}

# field FILE NAME: a "Name: N kB" value of smaps_rollup.
field() { awk -v k="$2:" '$1 == k { print $2; exit }' "$1"; }

# Host memory of the clones now, KiB: "rss pss host merged cache", where
# host = sum of (Pss - Pss_File) + the memory file's page cache (the file
# pages the clones map count once, there), merged = the pages KSM merged.
memory_now() { # DIR N
	local dir=$1 n=$2 i pid rss=0 pss=0 anon=0 merged=0 cache
	for i in $(seq "$n"); do
		pid=$(cat "$dir/clone.$i.pid")
		cp "/proc/$pid/smaps_rollup" "$tmp/rollup" 2> /dev/null || { echo "-1 -1 -1 -1 -1"; return; }
		rss=$((rss + $(field "$tmp/rollup" Rss)))
		pss=$((pss + $(field "$tmp/rollup" Pss)))
		anon=$((anon + $(field "$tmp/rollup" Pss) - $(field "$tmp/rollup" Pss_File)))
		[ -r "/proc/$pid/ksm_merging_pages" ] && merged=$((merged + $(cat "/proc/$pid/ksm_merging_pages") * 4))
	done
	cache=$(($(fincore --bytes --noheadings --output RES "$dir/mem") / 1024))
	echo "$rss $pss $((anon + cache)) $merged $cache"
}

# N clones of SETUP's snapshot, each through its job, then left until host
# memory is steady (3 readings a second apart within 1 MiB, and KSM
# through two more full scans); appends the reading to RESULTS (KiB), and
# "seconds_to_steady" to RESULTS.t.
clones_run() { # SETUP DIR N RESULTS
	local setup=$1 dir=$2 n=$3 results=$4 i pid rc=0
	for i in $(seq "$n"); do clone_start "$dir" "$i" || { rc=1; break; }; done
	local t0=$SECONDS
	if [ $rc -eq 0 ]; then
		for i in $(seq "$n"); do
			wait_line "$dir/c$i.out" clone-idle "$(cat "$dir/clone.$i.pid")" $((JOB_TIMEOUT - (SECONDS - t0))) ||
				{ rc=1; break; }
		done
	fi
	if [ $rc -ne 0 ]; then
		failed "$setup N=$n: clone $i did not restore or did not finish its job" "$dir/c$i.err"
		echo "-1 -1 -1 -1 -1" >> "$results"
		clones_stop "$dir" "$n"
		return
	fi
	local scans=-1 prev=-1 steady=0 now host t1=$SECONDS
	echo "clones.sh: $setup N=$n: every clone restored and through its job in $((t1 - t0)) s" >&2
	case $setup in ksm|both) scans=$(cat $KSM/full_scans) ;; esac
	while [ $((SECONDS - t1)) -lt "$SETTLE_TIMEOUT" ]; do
		sleep 1
		now=$(memory_now "$dir" "$n")
		host=$(echo "$now" | cut -d' ' -f3)
		if [ "$prev" -ge 0 ] && [ $((host - prev)) -le 1024 ] && [ $((prev - host)) -le 1024 ]; then
			steady=$((steady + 1))
		else
			steady=0
		fi
		prev=$host
		[ "$steady" -ge 3 ] && { [ "$scans" -lt 0 ] || [ "$(cat $KSM/full_scans)" -ge $((scans + 2)) ]; } && break
	done
	[ "$steady" -ge 3 ] && echo "clones.sh: $setup N=$n: memory steady $((SECONDS - t1)) s later" >&2 ||
		echo "clones.sh: $setup N=$n: memory not steady after $SETTLE_TIMEOUT s" >&2
	echo "$now" >> "$results"
	echo "$((SECONDS - t0))" >> "$results.t"
}

clones_stop() { # DIR N
	local i pid
	for i in $(seq "$2"); do
		pid=$(cat "$1/clone.$i.pid" 2> /dev/null) || continue
		kill -9 "$pid" 2> /dev/null; wait "$pid" 2> /dev/null || true
		rm -f "$1/clone.$i.pid" "$1/c$i".*
	done
}

# balloon_actual SOCK: actual_mib of the balloon, -1 if unknown.
balloon_actual() {
	[ "$(api "$1" GET /balloon/statistics)" = 200 ] && grep -oE '"actual_mib":[0-9]+' "$tmp/resp" | cut -d: -f2 || echo -1
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# Inflate clone I's balloon by RECLAIM MiB: appends "ms rss_drop_mib" to
# RESULTS, then deflates it again.
reclaim_once() { # DIR I RESULTS
	local dir=$1 i=$2 sock=$1/c$2.sock pid rss0 t0 t1 ms=-1 drop=0 k
	pid=$(cat "$dir/clone.$i.pid")
	rss0=$(rss_kib "$pid")
	t0=$(date +%s%N)
	if expect 204 "$sock" PATCH /balloon "{\"amount_mib\": $RECLAIM}"; then
		for k in $(seq 3000); do # 150 s
			drop=$(((rss0 - $(rss_kib "$pid")) / 1024))
			[ "$(balloon_actual "$sock")" -ge "$RECLAIM" ] || [ "$drop" -ge "$RECLAIM" ] && { ms=$(( ($(date +%s%N) - t0) / 1000000 )); break; }
			sleep 0.05
		done
	fi
	drop=$(((rss0 - $(rss_kib "$pid")) / 1024))
	[ "$ms" -ge 0 ] || failed "reclaim: clone $i's balloon did not reach $RECLAIM MiB" "$dir/c$i.err"
	echo "$ms $drop" >> "$3"
	expect 204 "$sock" PATCH /balloon '{"amount_mib": 0}' || return 0
	for k in $(seq 600); do [ "$(balloon_actual "$sock")" -eq 0 ] && break; sleep 0.1; done
}

# QEMU on the same Linux guest: microvm with the root drive and a balloon
# as virtio-mmio devices (QEMU puts them on the kernel command line). On
# kvm_pvm it stops at the first instruction the host cannot emulate.
qemu_linux="not tried (QEMU_LINUX=0)"
if [ "${QEMU_LINUX:-1}" = 1 ]; then
	BOOTBENCH_LOG=$tmp/qemu-linux.log "$BUILD/bootbench" clone-settled "KVM internal error" 300 -- \
		"${QEMU_MICROVM[@]}" -serial stdio -m "$MEM" -kernel "$BUILD/vmlinux" \
		-append "console=ttyS0 reboot=k panic=1 quiet root=/dev/vda ro noxsave ember.cmd=\"sh /clone.sh\"" \
		-drive id=root,file="$ROOT",format=raw,if=none,readonly=on -device virtio-blk-device,drive=root \
		-device virtio-balloon-device > /dev/null 2>&1 || true
	if grep -q clone-settled "$tmp/qemu-linux.log" 2> /dev/null; then
		qemu_linux="it booted it, but the clone runs are ember's only"
	else
		qemu_linux="it stopped: \`$(grep -m1 -E 'KVM internal error[^.]*' -o "$tmp/qemu-linux.log" || echo "no init within 300 s")\`"
		code=$(grep -m1 -o '^Code=.*' "$tmp/qemu-linux.log" | cut -c1-70 || true)
		[ -n "$code" ] && qemu_linux+=" at \`$code...\`"
	fi
fi

N_MAX=0
for n in $CLONES; do [ "$n" -gt "$N_MAX" ] && N_MAX=$n; done
declare -A skipped
for setup in $SETUPS; do
	d=$tmp/$setup
	case $setup in
	ksm|both) if ! ksm_can; then skipped[$setup]="the host's KSM cannot be run ($KSM/run not writable)"
	                  echo "clones.sh: SKIPPED $setup: ${skipped[$setup]}" >&2; continue; fi ;;
	esac
	if ! source_snapshot "$setup" "$d"; then
		for n in $CLONES; do echo "-1 -1 -1 -1 -1" >> "$tmp/mem-$setup-$n"; done
		continue
	fi
	case $setup in ksm|both) ksm_on ;; esac
	for n in $CLONES; do
		: >> "$tmp/mem-$setup-$n"
		clones_run "$setup" "$d" "$n" "$tmp/mem-$setup-$n"
		# The balloon, on the first setup's largest batch.
		if [ "$setup" = "${SETUPS%% *}" ] && [ "$n" = "$N_MAX" ] && [ -f "$d/clone.1.pid" ]; then
			: > "$tmp/reclaim"
			for r in $(seq "$RUNS"); do reclaim_once "$d" $(((r - 1) % n + 1)) "$tmp/reclaim"; done
		fi
		clones_stop "$d" "$n"
	done
	ksm_off
	rm -rf "$d"
done

# ---- 3. huge pages ------------------------------------------------------
GUEST_ARGS="testvm.counter=1000 testvm.fill=1"
# QEMU's command line for the test guest; PAGES 2M adds a hugetlbfs
# backing, preallocated.
qemu_testvm() { # PAGES DIR -> the array qemu
	qemu=("${QEMU_MICROVM[@]}" -serial stdio -m "$HUGE_MEM" -kernel "$BUILD/testvm.elf" -append "$GUEST_ARGS"
	      -device virtio-balloon-device)
	[ "$1" = 2M ] && qemu+=(-mem-prealloc -mem-path "$huge_mount")
	[ -n "$2" ] && qemu+=(-qmp unix:"$2/qmp.sock",server=on,wait=off -pidfile "$2/qemu.pid"
	                       -global migration.store-global-state=off)
	true
}
ember_testvm_json() { # PAGES FILE
	echo "{\"boot-source\": {\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"$GUEST_ARGS\"}," \
	     "\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": $HUGE_MEM, \"huge_pages\": \"$1\"}}" > "$2"
}
boot_once() { # VMM PAGES RESULTS
	local qemu
	if [ "$1" = ember ]; then
		ember_testvm_json "$2" "$tmp/boot.json"
		"$BUILD/bootbench" "testvm: booted" "" 30 -- "$EMBER" --no-api --config-file "$tmp/boot.json" >> "$3"
	else
		qemu_testvm "$2" ""
		"$BUILD/bootbench" "testvm: booted" "" 30 -- "${qemu[@]}" >> "$3"
	fi
}
# Snapshot the test guest once per VMM and page size into DIR.
save_testvm() { # VMM PAGES DIR
	local qemu dir=$3
	mkdir -p "$dir"
	if [ "$1" = ember ]; then
		printf '%s\n' "PUT /boot-source {\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"$GUEST_ARGS\"}" \
			"PUT /machine-config {\"vcpu_count\": 1, \"mem_size_mib\": $HUGE_MEM, \"huge_pages\": \"$2\"}" \
			'PUT /actions {"action_type": "InstanceStart"}' > "$dir/setup"
		RESTOREBENCH_LOG=$dir/save.log "$BUILD/restorebench" ember-save "$dir/api.sock" "$dir/setup" "$dir/state" \
			"$dir/mem" 60 -- "$EMBER" --api-sock "$dir/api.sock" > "$dir/count"
	else
		qemu_testvm "$2" "$dir"
		RESTOREBENCH_LOG=$dir/save.log "$BUILD/restorebench" qemu-save "$dir/qmp.sock" "file:$dir/state" 60 \
			-- "${qemu[@]}" > "$dir/count"
	fi || { failed "$1 $2: saving the test guest" "$dir/save.log"; rm -f "$dir/state"; }
}
restore_once() { # VMM PAGES DIR RESULTS
	local qemu dir=$3
	[ -f "$dir/state" ] || { echo "-1 -1 -1 -1" >> "$4"; return; }
	if [ "$1" = ember ]; then
		echo "{\"snapshot_path\": \"$dir/state\", \"mem_backend\": {\"backend_type\": \"File\"," \
		     "\"backend_path\": \"$dir/mem\"}, \"resume_vm\": true}" > "$dir/load.json"
		RESTOREBENCH_LOG=$dir/restore.log "$BUILD/restorebench" ember-restore "$dir/b.sock" "$dir/load.json" \
			"$(cat "$dir/count")" 1 60 -- "$EMBER" --api-sock "$dir/b.sock" >> "$4"
	else
		qemu_testvm "$2" "$dir"
		RESTOREBENCH_LOG=$dir/restore.log "$BUILD/restorebench" qemu-restore "$dir/qmp.sock" "file:$dir/state" \
			"$(cat "$dir/count")" 1 60 -- "${qemu[@]}" -incoming defer >> "$4"
	fi || { failed "$1 $2: restoring the test guest" "$dir/restore.log"; echo "-1 -1 -1 -1" >> "$4"; }
}

huge_skip=""
if [ "$HUGE" = 1 ]; then
	need=$((HUGE_MEM / 2 * 2 + 8)) # the saved VM and the restored one at once, at most
	if [ -w $HUGEPAGES ]; then
		huge_saved=$(cat $HUGEPAGES)
		[ "$huge_saved" -ge "$need" ] || echo "$need" > $HUGEPAGES
		free_huge=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
		[ "$free_huge" -ge "$need" ] || huge_skip="only $free_huge of $need huge pages of 2 MiB could be reserved"
		if [ -z "$huge_skip" ]; then
			huge_mount=$tmp/hugepages
			mkdir -p "$huge_mount"
			mount -t hugetlbfs -o pagesize=2M none "$huge_mount" || { huge_mount=""; huge_skip="cannot mount hugetlbfs"; }
		fi
	else
		huge_skip="$HUGEPAGES is not writable (needs root)"
	fi
	[ -n "$huge_skip" ] && echo "clones.sh: SKIPPED the 2M rows: $huge_skip" >&2
	for vmm in ember qemu; do
		for pages in None 2M; do
			[ "$pages" = 2M ] && [ -n "$huge_skip" ] && continue
			: > "$tmp/boot-$vmm-$pages"; : > "$tmp/restore-$vmm-$pages"
			save_testvm "$vmm" "$pages" "$tmp/h-$vmm-$pages"
		done
	done
	for r in $(seq "$RUNS"); do
		for pages in None 2M; do
			[ "$pages" = 2M ] && [ -n "$huge_skip" ] && continue
			for vmm in ember qemu; do
				boot_once "$vmm" "$pages" "$tmp/boot-$vmm-$pages"
				restore_once "$vmm" "$pages" "$tmp/h-$vmm-$pages" "$tmp/restore-$vmm-$pages"
			done
		done
	done
fi

# ---- report -------------------------------------------------------------
mib() { awk -v v="$1" 'BEGIN { printf(v < 0 ? "-" : "%.0f", v / 1024) }'; }
declare -A LABEL=([none]="nothing" [fpr]="balloon free page reporting" [ksm]="KSM" [both]="free page reporting + KSM")
base=${SETUPS%% *}
headline_init clones
dat=$(dirname "$OUT")/data/clones-memory.dat
mkdir -p "$(dirname "$dat")"
echo "# setup N rss_mib pss_mib host_mib ksm_merged_mib (medians)" > "$dat"
cmd="benchmarks/clones.sh $RUNS"
[ "$(nice)" = 0 ] || cmd="nice -n $(nice) $cmd"
[ "$CLONES" = "4 8" ] || cmd="CLONES=\"$CLONES\" $cmd"
[ "$SETUPS" = "none fpr ksm both" ] || cmd="SETUPS=\"$SETUPS\" $cmd"
[ "$HUGE" = 1 ] || cmd="HUGE=0 $cmd"
[ "$FREE_MIB" = 32 ] && [ "$KEEP_MIB" = 16 ] || cmd="FREE_MIB=$FREE_MIB KEEP_MIB=$KEEP_MIB $cmd"
[ "$RECLAIM" = 100 ] || cmd="RECLAIM_MIB=$RECLAIM $cmd"
shared=""
[ "$(awk '{ print int($1) }' /proc/loadavg)" -ge 1 ] && shared=" The machine was shared with other work while it ran (load $(cut -d' ' -f1-3 /proc/loadavg) at the end): the times may be re-run later."
{
	echo "# Memory density: idle clones, balloon, KSM, huge pages"
	echo
	echo "\`$cmd\` $(machine_line)$shared"
	echo
	echo "## Host memory of N idle clones"
	echo
	echo "One Linux guest ($MEM MiB, 1 vCPU, the read-only root drive, a balloon) booted once per setup," \
	     "snapshotted 2 s after its init settled; N clones restored from it (File: the memory file mapped by" \
	     "all, dropped from the page cache before); each, once resumed, touches $FREE_MIB MiB and frees it and" \
	     "keeps $KEEP_MIB MiB of copies of a binary in a tmpfs, then idles. Read once host memory was steady" \
	     "(polled every second, 3 readings within 1 MiB; with KSM two more full scans too)." \
	     "**host** = Σ over the VMMs of (Pss − Pss_File) from /proc/PID/smaps_rollup + the memory file's" \
	     "page cache (fincore): the memory the clones cost the host, file pages counted once. RSS and PSS" \
	     "are the plain sums. KSM: \`ember_ksm: true\`, the host's KSM run=1 at 10000 pages per 20 ms;" \
	     "merged = Σ /proc/PID/ksm_merging_pages. MiB; one batch per row (the median of several if run so)." \
	     "QEMU's microvm on the same Linux guest (the root drive and a virtio-balloon-device on virtio-mmio):" \
	     "$qemu_linux; so there is no peer for these rows."
	echo
	echo "| setup | N | host MiB | host MiB per clone | Σ RSS MiB | Σ PSS MiB | KSM merged MiB | memory file cached MiB | host vs nothing | s to steady |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	for setup in $SETUPS; do
		if [ -n "${skipped[$setup]:-}" ]; then
			echo "| ${LABEL[$setup]} | - | **SKIPPED**: ${skipped[$setup]} | | | | | | | |"
			continue
		fi
		for n in $CLONES; do
			f=$tmp/mem-$setup-$n
			read -r rm _ rn <<< "$(stats "$f" 1)"; read -r pm _ _ <<< "$(stats "$f" 2)"
			read -r hm _ _ <<< "$(stats "$f" 3)"; read -r km _ _ <<< "$(stats "$f" 4)"
			read -r cm _ _ <<< "$(stats "$f" 5)"
			read -r bm _ bn <<< "$(stats "$tmp/mem-$base-$n" 3)"
			read -r tm _ _ <<< "$(stats "$f.t" 1 2> /dev/null || echo "- - 0")"
			vs=-
			[ "$rn" -gt 0 ] && [ "$bn" -gt 0 ] && vs=$(awk -v a="$hm" -v b="$bm" 'BEGIN { printf "%.2f", a / b }')
			if [ "$rn" -gt 0 ]; then
				echo "| ${LABEL[$setup]} | $n | $(mib "$hm") | $(awk -v v="$hm" -v n="$n" 'BEGIN { printf "%.1f", v / 1024 / n }') | $(mib "$rm") | $(mib "$pm") | $(mib "$km") | $(mib "$cm") | $vs | ${tm%.*} |"
				echo "$setup $n $(mib "$rm") $(mib "$pm") $(mib "$hm") $(mib "$km")" >> "$dat"
			else
				echo "| ${LABEL[$setup]} | $n | **failed** | | | | | | | |"
			fi
			awk '$3 >= 0 { print $3 / 1024 / '"$n"' }' "$f" > "$f.per"
			headline "host memory per idle Linux clone, N=$n, ${LABEL[$setup]}" MiB "$f.per" 1
		done
	done
	echo
	echo "## Reclaiming $RECLAIM MiB with the balloon"
	echo
	if [ -s "$tmp/reclaim" ]; then
		read -r em ep en <<< "$(stats "$tmp/reclaim" 1 auto)"
		dm=$(awk '$1 >= 0 { print $2 }' "$tmp/reclaim" | sort -n | awk '{ v[NR] = $1 }
			END { print NR ? ((NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) : "-" }')
		headline "balloon inflation by $RECLAIM MiB: PATCH → actual_mib $RECLAIM" ms "$tmp/reclaim" 1
		echo "On the clones of \"${LABEL[$base]}\" (N=$N_MAX), one after another: PATCH /balloon amount_mib $RECLAIM," \
		     "timed until GET /balloon/statistics says actual_mib $RECLAIM (or the VMM's RSS fell by $RECLAIM MiB)," \
		     "then deflated. Median **$em ms**, p90 $ep ms over $en runs. The VMM's RSS fell by $dm MiB (median):" \
		     "the pages the guest gave were mostly never touched since the restore, so never resident" \
		     "(with File the untouched part of guest memory costs the host nothing to begin with)."
	else
		echo "Not run (no clones of the first setup)."
	fi
	echo
	echo "## Boot and restore with 2 MiB huge pages"
	echo
	if [ "$HUGE" != 1 ]; then
		echo "Not run (HUGE=0)."
	else
		echo "The test guest ($HUGE_MEM MiB, \`$GUEST_ARGS\`), $RUNS runs each, ember and QEMU alternately." \
		     "**boot**: start → \"testvm: booted\" (bootbench); **restore**: load request → running" \
		     "(restorebench, as benchmarks/snapshot.sh; ember File); **exec → running** counts from the" \
		     "VMM's exec instead (QEMU sets up and preallocates its memory before the request, ember at the load). ember: \`huge_pages\` \"None\" / \"2M\"" \
		     "(a 2M memory file is not read at the load: ember fills each 2 MiB page from it on the first touch); QEMU: default / \`-mem-prealloc -mem-path\` on a hugetlbfs" \
		     "mount, with \`-device virtio-balloon-device\` (the test guest does not drive it). ms, median / p90."
		[ -n "$huge_skip" ] && echo && echo "**SKIPPED the 2M rows: $huge_skip.**"
		echo
		echo "| pages | metric | ember median / p90 | QEMU median / p90 | ratio ember/QEMU | runs ember / QEMU |"
		echo "|---|---|---|---|---|---|"
		for pages in None 2M; do
			name=$([ $pages = None ] && echo "4 KiB" || echo "2 MiB")
			if [ "$pages" = 2M ] && [ -n "$huge_skip" ]; then
				echo "| 2 MiB | boot, restore | **SKIPPED** | **SKIPPED** | - | - |"
				continue
			fi
			for m in "boot 1" "restore 1" "restore 4"; do
				read -r m c <<< "$m"
				label=$m
				[ "$c" = 4 ] && label="restore: exec → running"
				read -r em ep en <<< "$(stats "$tmp/$m-ember-$pages" "$c" auto)"
				read -r qm qp qn <<< "$(stats "$tmp/$m-qemu-$pages" "$c" auto)"
				ratio=-
				[ "$en" -gt 0 ] && [ "$qn" -gt 0 ] && ratio=$(awk -v a="$em" -v b="$qm" 'BEGIN { printf "%.2f", a / b }')
				echo "| $name | $label | $em / $ep | $qm / $qp | $ratio | $en / $qn |"
				headline "test guest $label, $name pages" ms "$tmp/$m-ember-$pages" "$c" "$tmp/$m-qemu-$pages" "$c"
			done
		done
	fi
	echo
	failures_line "No run failed."
	echo
	echo "The whole run took ${SECONDS} s."
} > "$OUT"
cat "$OUT"
[ ! -s "$tmp/failures" ]
