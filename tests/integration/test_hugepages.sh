# Guest memory backed by huge pages (machine-config "huge_pages"): "2M"
# (hugetlbfs pages from the host's pool) and "Transparent" (madvise
# MADV_HUGEPAGE), booted, snapshotted and restored through File and Uffd
# with the test guest checking the 4 MiB pattern it wrote before the
# snapshot. The 2M tests reserve the pages they need in
# /proc/sys/vm/nr_hugepages themselves and put the old value back.

UFFD=${UFFD:-$(dirname "$EMBER")/ember-uffd}
HUGE_FREE=/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages

# huge_reserve N: N more free 2 MiB pages in the pool (HUGE_OLD keeps the
# old nr_hugepages for huge_release), or skip (status 1) if the host cannot.
huge_reserve() {
	exclusive hugepages
	HUGE_OLD=
	if [ ! -w /proc/sys/vm/nr_hugepages ] || [ ! -r "$HUGE_FREE" ]; then
		skip "cannot reserve 2 MiB huge pages here (/proc/sys/vm/nr_hugepages not writable)"
		return 1
	fi
	HUGE_OLD=$(cat /proc/sys/vm/nr_hugepages)
	echo $((HUGE_OLD + $1)) > /proc/sys/vm/nr_hugepages 2> /dev/null
	if [ "$(cat "$HUGE_FREE")" -lt "$1" ]; then
		huge_release
		skip "the host could not reserve $1 free 2 MiB huge pages (fragmented or too little memory)"
		return 1
	fi
}

huge_release() {
	[ -n "${HUGE_OLD:-}" ] && echo "$HUGE_OLD" > /proc/sys/vm/nr_hugepages
	HUGE_OLD=
}

# guest_vma PID: the smaps entry of the 64 MiB guest memory mapping.
guest_vma() {
	awk '/^[0-9a-f]+-[0-9a-f]+ /{b=""} {b=b $0 "\n"} /^VmFlags/{if (b ~ /\nSize: +65536 kB\n/) printf "%s", b}' \
		"/proc/$1/smaps"
}

# huge_boot PAGES: the test guest (64 MiB, 4 MiB filled) with huge_pages
# PAGES, running as ember "src".
huge_boot() {
	start_api src || return 1
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.counter=1000 testvm.fill=4\"}"
	expect_api 204 PUT /machine-config "{\"vcpu_count\": 1, \"mem_size_mib\": 64, \"huge_pages\": \"$1\"}"
	expect_api 200 GET /machine-config
	grep -qF "\"huge_pages\":\"$1\"" "$T/resp" || fail "GET /machine-config does not show $1: $(cat "$T/resp")"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out src 'testvm: count 3' 60 || return 1
	expect_api 200 GET /vm/config
	grep -qF "\"huge_pages\":\"$1\"" "$T/resp" || fail "GET /vm/config does not show $1"
}

# huge_snapshot: pause src, snapshot it to $T/state + $T/mem, kill it; COUNT
# is its last count.
huge_snapshot() {
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	COUNT=$(last_count src)
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/state\", \"mem_file_path\": \"$T/mem\"}"
	kill -9 "$API_PID"
	wait "$API_PID" 2>/dev/null
	[ -f "$T/state" ] && [ -f "$T/mem" ] || { fail "snapshot files missing"; return 1; }
}

# huge_restore NAME BACKEND_JSON PAGES [EXTRA_JSON]: restore $T/state, count
# on from COUNT+1 with the pattern intact, and show huge_pages PAGES.
huge_restore() {
	start_api "$1" || return 1
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_backend\": $2, \"resume_vm\": true${4:+, $4}}"
	wait_out "$1" "testvm: count $((COUNT + 2))" 60 || return 1
	[ "$(first_count "$1")" = "$((COUNT + 1))" ] || fail "$1: counting resumed at $(first_count "$1"), expected $((COUNT + 1))"
	! grep -q 'FAIL memory' "$T/$1.out" || fail "$1: guest memory came back wrong"
	expect_api 200 GET /machine-config
	grep -qF "\"huge_pages\":\"$3\"" "$T/resp" || fail "$1: the restored VM does not show $3: $(cat "$T/resp")"
}

# huge_resnapshot NAME: snapshot NAME (just restored, its memory filled on
# first touch) at once, stop it, and restore that: the snapshot holds the
# pages not filled yet too (the second half of the pattern is not read
# back before count COUNT+8), so the guest reads all of its pattern back.
huge_resnapshot() {
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	local again
	again=$(last_count "$1")
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/$1.state2\", \"mem_file_path\": \"$T/$1.mem2\"}"
	stop_api
	start_api "$1.again" || return 1
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/$1.state2\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/$1.mem2\"}, \"resume_vm\": true}"
	wait_out "$1.again" "testvm: count $((again + 20))" 60 || fail "$1.again: the guest did not count on to $((again + 20))"
	! grep -q 'FAIL memory' "$T/$1.again.out" ||
		fail "$1.again: $(grep -m1 'FAIL memory' "$T/$1.again.out") (pages not filled yet were left out of the snapshot)"
}

test_hugepages_2m_boot_snapshot_restore() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	need_file "$UFFD" || return
	huge_reserve 40 || return
	local free0
	free0=$(cat "$HUGE_FREE")
	huge_boot 2M || { huge_release; return; }
	# The whole guest is reserved from the pool when ember maps it.
	[ "$(cat "$HUGE_FREE")" -le $((free0 - 2)) ] || fail "the pool's free pages did not fall ($free0 -> $(cat "$HUGE_FREE"))"
	guest_vma "$API_PID" | grep -q '^KernelPageSize: *2048 kB' ||
		fail "the guest memory mapping is not in 2 MiB pages: $(guest_vma "$API_PID" | head -3)"
	huge_snapshot || { huge_release; return; }

	# File: 2 MiB pages filled from the memory file on first touch, so
	# right after the restore far fewer than the guest's 32 are in use.
	huge_restore file "{\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}" 2M
	guest_vma "$API_PID" | grep -q '^KernelPageSize: *2048 kB' || fail "file: the restored memory is not in 2 MiB pages"
	local used
	used=$(guest_vma "$API_PID" | awk '/^Private_Hugetlb:/ {print $2}')
	[ -n "$used" ] && [ "$used" -lt 32768 ] ||
		fail "file: ${used:-?} kB of 2 MiB pages in use right after the restore (filled eagerly?)"
	huge_resnapshot file
	stop_api
	# A memory file cut after the load: the first fault cannot be filled,
	# and ember stops with the reason rather than give the guest zeros.
	cp "$T/mem" "$T/mem.cut"
	start_api cut || { huge_release; return; }
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem.cut\"}, \"resume_vm\": false}"
	truncate -s 0 "$T/mem.cut"
	api PATCH /vm '{"state": "Resumed"}' > /dev/null
	local st=0
	wait "$API_PID" || st=$?
	[ "$st" = 1 ] || fail "cut: ember exited with $st, expected 1"
	grep -q 'cannot fill the 2 MiB page at guest memory offset .*: it ends before it' "$T/cut.err" ||
		fail "cut: no reason in the log: $(tail -3 "$T/cut.err")"

	# Uffd: ember-uffd fills each fault a 2 MiB page at a time.
	"$UFFD" --socket "$T/handler.sock" --mem-file "$T/mem" --once > "$T/uffd.out" 2> "$T/uffd.err" < /dev/null &
	local upid=$! i
	for i in $(seq 100); do [ -S "$T/handler.sock" ] && break; sleep 0.05; done
	huge_restore ufd "{\"backend_type\": \"Uffd\", \"backend_path\": \"$T/handler.sock\"}" 2M
	guest_vma "$API_PID" | grep -q '^KernelPageSize: *2048 kB' || fail "ufd: the restored memory is not in 2 MiB pages"
	huge_resnapshot ufd
	stop_api
	wait "$upid" || fail "ember-uffd --once exited with $?"
	grep -q 'MiB in 2048 KiB pages; [1-9][0-9]* pages served by fault' "$T/uffd.err" ||
		fail "ember-uffd did not serve 2 MiB pages: $(cat "$T/uffd.err")"

	# A 2M snapshot restored with 4 KiB pages (an override) works too.
	huge_restore small "{\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}" None '"huge_pages": "None"'
	stop_api
	huge_release
}

test_hugepages_2m_pool_too_small() {
	exclusive hugepages
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	[ -r "$HUGE_FREE" ] || { skip "no 2 MiB huge page pool on this host"; return; }
	# More than the pool has free: refused at InstanceStart, with the numbers.
	local mib=$((($(cat "$HUGE_FREE") + 8) * 2))
	start_api vm || return
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\"}"
	expect_api 204 PUT /machine-config "{\"vcpu_count\": 1, \"mem_size_mib\": $mib, \"huge_pages\": \"2M\"}"
	expect_api 400 PUT /actions '{"action_type": "InstanceStart"}'
	grep -qF "need $((mib / 2)) free 2 MiB huge pages" "$T/resp" || fail "the fault does not say what is missing: $(cat "$T/resp")"
	grep -qF "/proc/sys/vm/nr_hugepages" "$T/resp" && grep -qF "the host has " "$T/resp" ||
		fail "the fault does not say what the host has or where it is set: $(cat "$T/resp")"
	stop_api
}

test_hugepages_transparent_boot_snapshot_restore() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	need_file "$UFFD" || return
	huge_boot Transparent || return
	guest_vma "$API_PID" | grep -q '^VmFlags:.* hg' || fail "the guest memory is not advised MADV_HUGEPAGE"
	huge_snapshot || return
	huge_restore file "{\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}" Transparent
	guest_vma "$API_PID" | grep -q '^VmFlags:.* hg' || fail "file: the restored memory is not advised MADV_HUGEPAGE"
	stop_api
	"$UFFD" --socket "$T/handler.sock" --mem-file "$T/mem" --once > "$T/uffd.out" 2> "$T/uffd.err" < /dev/null &
	local upid=$! i
	for i in $(seq 100); do [ -S "$T/handler.sock" ] && break; sleep 0.05; done
	huge_restore ufd "{\"backend_type\": \"Uffd\", \"backend_path\": \"$T/handler.sock\"}" Transparent
	stop_api
	wait "$upid" || fail "ember-uffd --once exited with $?"
	# And back to 4 KiB pages on request.
	huge_restore none "{\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}" None '"huge_pages": "None"'
	guest_vma "$API_PID" | grep -q '^VmFlags:.* hg' && fail "none: the memory is still advised MADV_HUGEPAGE"
	stop_api
}

# The values and their checks, through the API (no VM started).
test_hugepages_api_values() {
	start_api vm || return
	expect_api 400 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 65, "huge_pages": "2M"}'
	grep -qF "not a multiple of the configured page size" "$T/resp" || fail "odd size with 2M: $(cat "$T/resp")"
	expect_api 400 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 63, "huge_pages": "Transparent"}'
	expect_api 400 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64, "huge_pages": "1G"}'
	grep -qF 'unknown variant `1G`' "$T/resp" || fail "1G: $(cat "$T/resp")"
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64, "huge_pages": "2M"}'
	expect_api 400 PATCH /machine-config '{"mem_size_mib": 127}'
	expect_api 204 PATCH /machine-config '{"mem_size_mib": 128}'
	expect_api 200 GET /machine-config
	grep -qF '"mem_size_mib":128' "$T/resp" && grep -qF '"huge_pages":"2M"' "$T/resp" ||
		fail "a PATCH of the size lost huge_pages: $(cat "$T/resp")"
	expect_api 204 PATCH /machine-config '{"huge_pages": "Transparent"}'
	expect_api 200 GET /vm/config
	grep -qF '"huge_pages":"Transparent"' "$T/resp" || fail "PATCH to Transparent: $(cat "$T/resp")"
	# A PUT without the field is back to None, as Firecracker's.
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 65}'
	expect_api 200 GET /machine-config
	grep -qF '"huge_pages":"None"' "$T/resp" || fail "a PUT without huge_pages kept it: $(cat "$T/resp")"
	# snapshot_load's own values: Snapshot (the default), None, Transparent, 2M.
	expect_api 400 PUT /snapshot/load '{"snapshot_path": "/nonexistent", "mem_file_path": "/nonexistent", "huge_pages": "4K"}'
	grep -qF 'unknown variant `4K`' "$T/resp" || fail "snapshot_load 4K: $(cat "$T/resp")"
	stop_api
}
