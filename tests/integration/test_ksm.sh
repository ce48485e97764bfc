# machine-config "ember_ksm" (ember's own key): guest memory offered to
# KSM, the kernel's same-page merging, with madvise(MADV_MERGEABLE). Two
# test guests fill the same 16 MiB pattern at the same guest addresses:
# with ember_ksm their pages merge (/proc/PID/ksm_merging_pages), without
# it they never do.

UFFD=${UFFD:-$(dirname "$EMBER")/ember-uffd}

# ksm_vma PID: the smaps entry of the 64 MiB guest memory mapping.
ksm_vma() {
	awk '/^[0-9a-f]+-[0-9a-f]+ /{b=""} {b=b $0 "\n"} /^VmFlags/{if (b ~ /\nSize: +65536 kB\n/) printf "%s", b}' \
		"/proc/$1/smaps"
}

# ksm_boot NAME KSM_JSON: a 64 MiB test guest filling 16 MiB, running;
# its ember's pid in KSM_PID.
ksm_boot() {
	start_api "$1" || return 1
	KSM_PID=$API_PID
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.counter=1000 testvm.fill=16\"}"
	expect_api 204 PUT /machine-config "{\"vcpu_count\": 1, \"mem_size_mib\": 64$2}"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out "$1" 'testvm: count 3' 60 || return 1
}

# ksm_pause NAME: pause NAME's guest, so its pages stay still and its
# busy vCPU leaves the host's cores to ksmd (which runs at nice 5: on a
# loaded host, running guests starve it).
ksm_pause() {
	API_SOCK="$T/$1.sock" expect_api 204 PATCH /vm '{"state": "Paused"}'
}

test_ksm_guest_memory_is_mergeable() {
	exclusive ksm
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	ksm_boot on ', "ember_ksm": true' || return
	local on=$KSM_PID
	ksm_vma "$on" | grep -q '^VmFlags:.* mg' || fail "ember_ksm: the guest memory is not flagged mergeable (mg)"
	expect_api 200 GET /machine-config
	grep -qF '"ember_ksm":true' "$T/resp" || fail "GET /machine-config does not show ember_ksm: $(cat "$T/resp")"
	# Kept in a snapshot: the restored guest's memory is mergeable too.
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/state\", \"mem_file_path\": \"$T/mem\"}"
	kill -9 "$on"
	wait "$on" 2>/dev/null
	start_api restored || return
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}, \"resume_vm\": true}"
	ksm_vma "$API_PID" | grep -q '^VmFlags:.* mg' || fail "restored: the guest memory is not flagged mergeable"
	stop_api
	# Without it: not flagged, and GET keeps Firecracker's keys only.
	ksm_boot off '' || return
	ksm_vma "$KSM_PID" | grep -q '^VmFlags:.* mg' && fail "without ember_ksm the guest memory is flagged mergeable"
	expect_api 200 GET /machine-config
	grep -qF 'ember_ksm' "$T/resp" && fail "GET /machine-config shows ember_ksm while off: $(cat "$T/resp")"
	stop_api
}

test_ksm_api_values() {
	exclusive ksm
	start_api vm || return
	expect_api 400 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64, "ember_ksm": "yes"}'
	grep -qF 'expected a boolean' "$T/resp" || fail "a string for ember_ksm: $(cat "$T/resp")"
	expect_api 400 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64, "ember_ksm": true, "huge_pages": "2M"}'
	grep -qF 'KSM does not merge' "$T/resp" || fail "ember_ksm with 2M: $(cat "$T/resp")"
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64, "ember_ksm": true, "huge_pages": "Transparent"}'
	expect_api 204 PATCH /machine-config '{"mem_size_mib": 128}'
	expect_api 200 GET /vm/config
	grep -qF '"ember_ksm":true' "$T/resp" || fail "a PATCH of the size lost ember_ksm: $(cat "$T/resp")"
	expect_api 204 PATCH /machine-config '{"ember_ksm": false}'
	expect_api 200 GET /machine-config
	grep -qF 'ember_ksm' "$T/resp" && fail "PATCH ember_ksm false: $(cat "$T/resp")"
	stop_api
}

# Merging itself: KSM's scanner runs host-wide, so the test turns it on
# (fast) and puts every setting back.
test_ksm_clones_merge_only_when_asked() {
	exclusive ksm
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	local k=/sys/kernel/mm/ksm
	if [ ! -w $k/run ] || [ ! -r /proc/self/ksm_merging_pages ]; then
		skip "KSM cannot be run here ($k/run not writable or no /proc/PID/ksm_merging_pages)"
		return
	fi
	local old_run old_scan old_sleep i
	old_run=$(cat $k/run) old_scan=$(cat $k/pages_to_scan) old_sleep=$(cat $k/sleep_millisecs)
	ksm_boot a ', "ember_ksm": true' || return
	local a=$KSM_PID
	ksm_boot b ', "ember_ksm": true' || { kill "$a"; return; }
	local b=$KSM_PID
	ksm_boot c '' || { kill "$a" "$b"; return; }
	local c=$KSM_PID
	ksm_boot d '' || { kill "$a" "$b" "$c"; return; }
	local d=$KSM_PID
	for i in a b c d; do ksm_pause $i; done
	echo 20000 > $k/pages_to_scan
	echo 10 > $k/sleep_millisecs
	echo 1 > $k/run
	local ma=0 mb=0
	# (Up to 300 s: a loaded host's KSM thread gets little time.)
	for i in $(seq 3000); do
		ma=$(cat "/proc/$a/ksm_merging_pages") mb=$(cat "/proc/$b/ksm_merging_pages")
		[ "$ma" -ge 4096 ] && [ "$mb" -ge 4096 ] && break
		sleep 0.1
	done
	local full
	full=$(cat $k/full_scans)
	for i in $(seq 100); do [ "$(cat $k/full_scans)" -ge $((full + 2)) ] && break; sleep 0.1; done
	local mc md
	mc=$(cat "/proc/$c/ksm_merging_pages") md=$(cat "/proc/$d/ksm_merging_pages")
	echo "$old_scan" > $k/pages_to_scan
	echo "$old_sleep" > $k/sleep_millisecs
	echo "$old_run" > $k/run
	echo "    merged pages: $ma, $mb with ember_ksm; $mc, $md without"
	kill "$a" "$b" "$c" "$d"
	wait "$a" "$b" "$c" "$d" 2>/dev/null
	# The 16 MiB pattern is 4096 pages in each of the two.
	[ "$ma" -ge 4096 ] && [ "$mb" -ge 4096 ] || fail "ember_ksm clones merged $ma and $mb pages, expected 4096 or more each"
	[ "$mc" -eq 0 ] && [ "$md" -eq 0 ] || fail "clones without ember_ksm merged $mc and $md pages"
}

# ksm_restore NAME SNAPSHOT: a clone of SNAPSHOT restored through its own
# ember-uffd (whose UFFDIO_COPY pages are anonymous, as KSM needs: a File
# restore's untouched pages are the memory file's page cache), counting on
# until it has read back all of its 16 MiB pattern (64 pages a count),
# then paused.
# Its ember's pid in KSM_PID, the handler's in KSM_UPID.
ksm_restore() {
	"$UFFD" --socket "$T/$1.uffd" --mem-file "$T/$2.mem" --once > "$T/$1.uffd.out" 2> "$T/$1.uffd.err" < /dev/null &
	KSM_UPID=$!
	local i
	for i in $(seq 100); do [ -S "$T/$1.uffd" ] && break; sleep 0.05; done
	start_api "$1" || return 1
	KSM_PID=$API_PID
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/$2.state\", \"mem_backend\": {\"backend_type\": \"Uffd\", \"backend_path\": \"$T/$1.uffd\"}, \"resume_vm\": true}"
	local n
	n=$(grep -oE 'testvm: count [0-9]+' "$T/$2.out" | tail -1 | awk '{print $3}')
	wait_out "$1" "testvm: count $((n + 70))" 120 || return 1
	ksm_pause "$1"
}

# ksm_source NAME KSM_JSON: boot, snapshot to $T/NAME.state + .mem, stop.
ksm_source() {
	ksm_boot "$1" "$2" || return 1
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/$1.state\", \"mem_file_path\": \"$T/$1.mem\"}"
	stop_api
	return 0
}

# ksm_scans N: wait until ksmd has finished N more full scans, or has
# nothing to scan: with no mergeable memory on the host it counts no full
# scans at all, and its pages_scanned stands still (at the fast rate the
# tests set it moves many times a second while there is something).
ksm_scans() {
	local k=/sys/kernel/mm/ksm i full scanned
	full=$(cat $k/full_scans)
	for i in $(seq 600); do
		[ "$(cat $k/full_scans)" -ge $(($1 + full)) ] && return 0
		if [ $((i % 10)) = 1 ] && [ -r $k/pages_scanned ]; then
			[ "$(cat $k/pages_scanned)" = "${scanned:-}" ] && return 0
			scanned=$(cat $k/pages_scanned)
		fi
		sleep 0.1
	done
	return 1
}

# N identical clones restored from one snapshot: with ember_ksm the
# host-wide /sys/kernel/mm/ksm/pages_sharing rises by at least the
# pattern's 4096 pages for each clone past the first; without it the
# clones merge nothing (their ksm_merging_pages stay 0, and the host-wide
# counter rises by less than one clone's pattern: other processes on the
# host may use KSM meanwhile).
test_ksm_restored_clones_share_pages() {
	exclusive ksm
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	need_file "$UFFD" || return
	local k=/sys/kernel/mm/ksm n=4
	if [ ! -w $k/run ] || [ ! -r $k/pages_sharing ] || [ ! -r /proc/self/ksm_merging_pages ]; then
		skip "KSM cannot be run here ($k/run not writable, or no pages_sharing / ksm_merging_pages)"
		return
	fi
	ksm_source on ', "ember_ksm": true' || { fail "the ember_ksm source did not boot"; return; }
	ksm_source off '' || { fail "the source without ember_ksm did not boot"; return; }
	local old_run old_scan old_sleep
	old_run=$(cat $k/run) old_scan=$(cat $k/pages_to_scan) old_sleep=$(cat $k/sleep_millisecs)
	echo 20000 > $k/pages_to_scan
	echo 10 > $k/sleep_millisecs
	echo 1 > $k/run
	local pids='' upids='' i base delta_off delta_on=0 merged=0
	ksm_scans 1
	base=$(cat $k/pages_sharing)
	for i in $(seq $n); do
		ksm_restore "off$i" off || break
		pids="$pids $KSM_PID" upids="$upids $KSM_UPID"
	done
	ksm_scans 2
	delta_off=$(($(cat $k/pages_sharing) - base))
	for i in $pids; do merged=$((merged + $(cat "/proc/$i/ksm_merging_pages"))); done
	# shellcheck disable=SC2086 # lists of pids
	{ kill $pids; wait $pids $upids; } 2>/dev/null
	pids='' upids=''
	ksm_scans 1
	base=$(cat $k/pages_sharing)
	for i in $(seq $n); do
		ksm_restore "on$i" on || break
		pids="$pids $KSM_PID" upids="$upids $KSM_UPID"
	done
	local want=$(((n - 1) * 4096))
	for i in $(seq 600); do
		delta_on=$(($(cat $k/pages_sharing) - base))
		[ "$delta_on" -ge "$want" ] && break
		sleep 0.1
	done
	# shellcheck disable=SC2086
	{ kill $pids; wait $pids $upids; } 2>/dev/null
	echo "$old_scan" > $k/pages_to_scan
	echo "$old_sleep" > $k/sleep_millisecs
	echo "$old_run" > $k/run
	echo "    pages_sharing rose by $delta_on with ember_ksm, $delta_off without ($n clones each)"
	[ "$(echo $pids | wc -w)" = $n ] || fail "only $(echo $pids | wc -w) of $n ember_ksm clones restored"
	[ "$delta_on" -ge "$want" ] || fail "$n ember_ksm clones: pages_sharing rose by $delta_on, expected $want or more"
	[ "$merged" -eq 0 ] || fail "clones without ember_ksm merged $merged pages"
	[ "$delta_off" -lt 4096 ] || fail "clones without ember_ksm: pages_sharing rose by $delta_off"
}
