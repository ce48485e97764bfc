# Guest memory backends, ember's own machine-config keys: "ember_mem_backend"
# ("anonymous", "memfd" or {"file": PATH}: shared memory another process
# can map) and "ember_numa_node" (mbind MPOL_BIND). The test guest fills
# 16 MiB at 16 MiB with a pattern (testvm.c: the word at address A is
# A ^ 0x5a5aa5a5c3c33c3c) and re-checks it as it counts, so a restore that
# brought memory back wrong stops counting.

# The pattern's first word, as od -t x8 prints it.
MB_WORD=5a5aa5a5c2c33c3c

# mb_word FILE: the 8 bytes at 16 MiB of FILE, hex.
mb_word() { od -A n -t x8 -j $((16 << 20)) -N 8 "$1" | tr -d ' '; }

# mb_memfd PID: /proc/PID/fd/N of ember's guest memory memfd.
mb_memfd() {
	local f
	for f in /proc/"$1"/fd/*; do
		case $(readlink "$f") in "/memfd:ember-guest-ram"*) echo "$f"; return 0 ;; esac
	done
	return 1
}

# mb_vma PID: the smaps entry of the 64 MiB guest memory mapping.
mb_vma() {
	awk '/^[0-9a-f]+-[0-9a-f]+ /{b=""} {b=b $0 "\n"} /^VmFlags/{if (b ~ /\nSize: +65536 kB\n/) printf "%s", b}' \
		"/proc/$1/smaps"
}

# mb_boot NAME MACHINE_JSON_TAIL: a 64 MiB test guest filling 16 MiB, running.
mb_boot() {
	start_api "$1" || return 1
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.counter=1000 testvm.fill=16\"}"
	expect_api 204 PUT /machine-config "{\"vcpu_count\": 1, \"mem_size_mib\": 64$2}"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out "$1" 'testvm: count 3' 60 || return 1
}

# mb_snapshot: pause, snapshot to $T/state + $T/mem, stop; COUNT its last count.
mb_snapshot() {
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	COUNT=$(last_count "$1")
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/state\", \"mem_file_path\": \"$T/mem\"}"
	stop_api
}

# mb_restore NAME EXTRA: load $T/state from File with EXTRA keys, resumed;
# the guest must count on with its pattern intact.
mb_restore() {
	start_api "$1" || return 1
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}, \"resume_vm\": true$2}"
	wait_out "$1" "testvm: count $((COUNT + 3))" 60 || return 1
	grep -q 'FAIL memory' "$T/$1.out" && fail "$1: the restored guest's memory differs: $(grep FAIL "$T/$1.out")"
	return 0
}

test_memory_backends_api_values() {
	start_api vm || return
	local m='"vcpu_count": 1, "mem_size_mib": 64'
	expect_api 400 PUT /machine-config "{$m, \"ember_mem_backend\": \"shm\"}"
	grep -qF 'machine-config.ember_mem_backend: expected \"anonymous\", \"memfd\" or {\"file\": PATH}' "$T/resp" ||
		fail "an unknown backend: $(cat "$T/resp")"
	expect_api 400 PUT /machine-config "{$m, \"ember_mem_backend\": {\"path\": \"$T/ram\"}}"
	grep -qF 'unknown field `path`' "$T/resp" || fail "a backend object with another key: $(cat "$T/resp")"
	expect_api 400 PUT /machine-config "{$m, \"ember_mem_backend\": {\"file\": \"$T\"}}"
	grep -qF "ember_mem_backend file $T: is a directory, not a regular file" "$T/resp" || fail "a directory: $(cat "$T/resp")"
	head -c 1048576 /dev/zero > "$T/short"
	expect_api 400 PUT /machine-config "{$m, \"ember_mem_backend\": {\"file\": \"$T/short\"}}"
	grep -qF "1048576 bytes, shorter than the guest's 64 MiB" "$T/resp" || fail "a short file: $(cat "$T/resp")"
	expect_api 400 PUT /machine-config "{$m, \"ember_mem_backend\": {\"file\": \"$T/ram\"}, \"huge_pages\": \"2M\"}"
	grep -qF 'a host file cannot hold huge_pages \"2M\"' "$T/resp" || fail "a file with 2M: $(cat "$T/resp")"
	expect_api 400 PUT /machine-config "{$m, \"ember_mem_backend\": \"memfd\", \"ember_ksm\": true}"
	grep -qF 'KSM merges only anonymous guest memory, not ember_mem_backend \"memfd\"' "$T/resp" ||
		fail "memfd with ember_ksm: $(cat "$T/resp")"
	expect_api 400 PUT /machine-config "{$m, \"ember_numa_node\": -1}"
	grep -qF 'invalid value: integer `-1`, expected u32' "$T/resp" || fail "a negative node: $(cat "$T/resp")"
	local max
	max=$(tr ',-' '\n\n' < /sys/devices/system/node/online | tail -1)
	expect_api 400 PUT /machine-config "{$m, \"ember_numa_node\": $((max + 1))}"
	grep -qF "ember_numa_node: $((max + 1)): the host's nodes are 0 to $max" "$T/resp" || fail "a node beyond the host's: $(cat "$T/resp")"
	# Good values, shown in GET /machine-config and /vm/config; a missing file is fine.
	expect_api 204 PUT /machine-config "{$m, \"ember_mem_backend\": \"memfd\", \"huge_pages\": \"2M\", \"ember_numa_node\": 0}"
	expect_api 200 GET /machine-config
	grep -qF '"ember_mem_backend":"memfd","ember_numa_node":0' "$T/resp" || fail "GET /machine-config: $(cat "$T/resp")"
	expect_api 204 PATCH /machine-config "{\"huge_pages\": \"None\", \"ember_mem_backend\": {\"file\": \"$T/ram\"}}"
	expect_api 200 GET /vm/config
	grep -qF "\"ember_mem_backend\":{\"file\":\"$T/ram\"},\"ember_numa_node\":0" "$T/resp" || fail "GET /vm/config: $(cat "$T/resp")"
	[ -e "$T/ram" ] && fail "the file was created before the start"
	expect_api 204 PUT /machine-config "{$m}"
	expect_api 200 GET /machine-config
	grep -qE 'ember_mem_backend|ember_numa_node' "$T/resp" && fail "a PUT without the keys kept them: $(cat "$T/resp")"
	stop_api
	# The config file: a short file fails the start, naming it.
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/testvm.elf")"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64, "ember_mem_backend": {"file": "$T/short"}}}
JSON
	run_ember cf 30 --no-api --config-file "$T/vm.json"
	expect_status 1
	expect_err cf "ember_mem_backend file $T/short: 1048576 bytes, shorter than the guest's 64 MiB"
}

# memfd: guest RAM is a shared memfd another process reads (here through
# /proc/PID/fd); a snapshot's memory file has the guest's pages; a restore
# is anonymous by default and a memfd again when the load says so.
test_memory_backend_memfd() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	mb_boot src ', "ember_mem_backend": "memfd"' || { stop_api; return; }
	local fd
	fd=$(mb_memfd "$API_PID") || { fail "no memfd:ember-guest-ram among ember's files"; stop_api; return; }
	[ "$(mb_word "$fd")" = "$MB_WORD" ] || fail "the memfd at 16 MiB holds $(mb_word "$fd"), expected $MB_WORD"
	mb_vma "$API_PID" | grep -q '^VmFlags:.* sh' || fail "the guest memory mapping is not shared"
	mb_snapshot src
	[ "$(mb_word "$T/mem")" = "$MB_WORD" ] || fail "the snapshot's memory file at 16 MiB holds $(mb_word "$T/mem")"
	mb_restore anon '' || { stop_api; return; }
	mb_memfd "$API_PID" > /dev/null && fail "restored without ember_mem_backend, guest memory is still a memfd"
	expect_api 200 GET /vm/config
	grep -qF ember_mem_backend "$T/resp" && fail "an anonymous restore shows ember_mem_backend: $(cat "$T/resp")"
	stop_api
	mb_restore shared ', "ember_mem_backend": "memfd"' || { stop_api; return; }
	fd=$(mb_memfd "$API_PID") || fail "restored with ember_mem_backend memfd, guest memory is no memfd"
	[ -n "$fd" ] && [ "$(mb_word "$fd")" != "$MB_WORD" ] && fail "the restored memfd at 16 MiB holds $(mb_word "$fd")"
	expect_api 200 GET /vm/config
	grep -qF '"ember_mem_backend":"memfd"' "$T/resp" || fail "GET /vm/config after a memfd restore: $(cat "$T/resp")"
	stop_api
	# A page-fault handler fills anonymous memory only.
	load_fails uffd "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"Uffd\", \"backend_path\": \"$T/none.sock\"}, \"ember_mem_backend\": \"memfd\"}" \
		'a page-fault handler (Uffd) fills anonymous memory only'
}

# A host file: created and sized at the start, the guest's writes land in
# it, and a snapshot has the file's pages even where they are not in the
# page cache (a mark written into the file before the start, its cache
# dropped, which the guest never touches).
test_memory_backend_file() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	mb_boot new ", \"ember_mem_backend\": {\"file\": \"$T/ram\"}" || { stop_api; return; }
	[ "$(stat -c %s "$T/ram")" = $((64 << 20)) ] || fail "the new file is $(stat -c %s "$T/ram") bytes, expected 64 MiB"
	[ "$(mb_word "$T/ram")" = "$MB_WORD" ] || fail "the file at 16 MiB holds $(mb_word "$T/ram"), expected $MB_WORD"
	stop_api
	# An existing file (larger than the guest is fine), with a mark at 48 MiB.
	head -c $((80 << 20)) /dev/zero > "$T/ram2"
	printf 'ember-mark' | dd of="$T/ram2" bs=1 seek=$((48 << 20)) conv=notrunc status=none
	dd if=/dev/null of="$T/ram2" oflag=nocache conv=notrunc,fdatasync count=0 status=none
	mb_boot old ", \"ember_mem_backend\": {\"file\": \"$T/ram2\"}" || { stop_api; return; }
	expect_api 200 GET /vm/config
	grep -qF "\"ember_mem_backend\":{\"file\":\"$T/ram2\"}" "$T/resp" || fail "GET /vm/config: $(cat "$T/resp")"
	dd if=/dev/null of="$T/ram2" oflag=nocache conv=notrunc count=0 status=none
	mb_snapshot old
	[ "$(dd if="$T/mem" bs=1 skip=$((48 << 20)) count=10 status=none)" = ember-mark ] ||
		fail "the snapshot lacks the file's page at 48 MiB (a page not in the page cache was taken for a hole)"
	[ "$(mb_word "$T/mem")" = "$MB_WORD" ] || fail "the snapshot's memory file at 16 MiB holds $(mb_word "$T/mem")"
	# Restored into a file of its own: the guest's memory comes back in it.
	mb_restore back ", \"ember_mem_backend\": {\"file\": \"$T/ram3\"}" || { stop_api; return; }
	[ "$(mb_word "$T/ram3")" = "$MB_WORD" ] || fail "the restored file at 16 MiB holds $(mb_word "$T/ram3")"
	[ "$(dd if="$T/ram3" bs=1 skip=$((48 << 20)) count=10 status=none)" = ember-mark ] || fail "the restored file lacks the mark"
	stop_api
}

# 2 MiB pages in a memfd (MFD_HUGETLB): boots, and the pool's pages are
# what the guest uses; a restore into it.
test_memory_backend_memfd_2m() {
	exclusive hugepages
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	local free=/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages
	if [ ! -w /proc/sys/vm/nr_hugepages ] || [ ! -r $free ]; then
		skip "cannot reserve 2 MiB huge pages here (/proc/sys/vm/nr_hugepages not writable)"
		return
	fi
	local old
	old=$(cat /proc/sys/vm/nr_hugepages)
	echo $((old + 64)) > /proc/sys/vm/nr_hugepages 2> /dev/null
	if [ "$(cat $free)" -lt 64 ]; then
		echo "$old" > /proc/sys/vm/nr_hugepages
		skip "the host could not reserve 64 free 2 MiB huge pages"
		return
	fi
	mb_boot src ', "ember_mem_backend": "memfd", "huge_pages": "2M"' || { stop_api; echo "$old" > /proc/sys/vm/nr_hugepages; return; }
	local fd
	fd=$(mb_memfd "$API_PID") || fail "no memfd:ember-guest-ram among ember's files"
	mb_vma "$API_PID" | grep -q '^KernelPageSize: *2048 kB' || fail "the guest memory is not in 2 MiB pages"
	[ -n "$fd" ] && [ "$(mb_word "$fd")" != "$MB_WORD" ] && fail "the memfd at 16 MiB holds $(mb_word "$fd")"
	mb_snapshot src
	mb_restore dst ', "ember_mem_backend": "memfd", "huge_pages": "2M"'
	mb_vma "$API_PID" | grep -q '^KernelPageSize: *2048 kB' || fail "restored: the guest memory is not in 2 MiB pages"
	stop_api
	echo "$old" > /proc/sys/vm/nr_hugepages
}

# ember_numa_node: the guest memory mapping is bound (numa_maps "bind:N"),
# anonymous or memfd, and kept in a snapshot; without it, the default policy.
test_memory_backend_numa_bind() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	local addr
	mb_boot bound ', "ember_numa_node": 0' || { stop_api; return; }
	addr=$(mb_vma "$API_PID" | head -1 | cut -d- -f1)
	grep -q "^$addr bind:0 " "/proc/$API_PID/numa_maps" ||
		fail "the guest memory is not bound to node 0: $(grep "^$addr " "/proc/$API_PID/numa_maps")"
	mb_snapshot bound
	mb_restore restored '' || { stop_api; return; }
	addr=$(mb_vma "$API_PID" | head -1 | cut -d- -f1)
	grep -q "^$addr bind:0 " "/proc/$API_PID/numa_maps" || fail "restored: the guest memory is not bound to node 0"
	expect_api 200 GET /vm/config
	grep -qF '"ember_numa_node":0' "$T/resp" || fail "restored: GET /vm/config: $(cat "$T/resp")"
	stop_api
	mb_boot shared ', "ember_numa_node": 0, "ember_mem_backend": "memfd"' || { stop_api; return; }
	addr=$(mb_vma "$API_PID" | head -1 | cut -d- -f1)
	grep -q "^$addr bind:0 " "/proc/$API_PID/numa_maps" || fail "the memfd guest memory is not bound to node 0"
	stop_api
	mb_boot free '' || { stop_api; return; }
	addr=$(mb_vma "$API_PID" | head -1 | cut -d- -f1)
	grep -q "^$addr default " "/proc/$API_PID/numa_maps" ||
		fail "without ember_numa_node: $(grep "^$addr " "/proc/$API_PID/numa_maps")"
	stop_api
}

# A Linux guest in a memfd of 128 MiB touches all but 16 MiB of its free
# memory (fresh pages are slow in this host's guests); inflating the
# balloon by 64 MiB must free that memory in the memfd itself (its
# allocated blocks fall by 48..80 MiB; MADV_DONTNEED would only unmap
# the pages and leave them allocated there), and RssShmem falls too.
test_memory_backend_memfd_balloon_frees() {
	need_kvm || return
	need_file "$BUILD/vmlinux" || return
	need_file "$BUILD/rootfs.ext4" || return
	cp "$BUILD/rootfs.ext4" "$T/root.img"
	cat > "$T/touch.sh" <<'SH'
free=$(awk '/^MemFree:/ {print int($2 / 1024)}' /proc/meminfo)
dd if=/dev/zero of=/dev/null bs=$((free - 16))M count=1 2>/dev/null
echo memfd-touched $((free - 16))
while true; do sleep 1; done
SH
	debugfs -w -R "write $T/touch.sh /touch.sh" "$T/root.img" > /dev/null 2>&1
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/vmlinux")",
  "boot_args": "console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"sh /touch.sh\""},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 128, "ember_mem_backend": "memfd"},
 "drives": [{"drive_id": "rootfs", "path_on_host": "$T/root.img", "is_root_device": true, "is_read_only": true}],
 "balloon": {"amount_mib": 0, "deflate_on_oom": false, "stats_polling_interval_s": 1}}
JSON
	start_api lx --config-file "$T/vm.json" || return
	wait_out lx 'memfd-touched' "$LINUX_TIMEOUT" || { stop_api; return; }
	local fd
	fd=$(mb_memfd "$API_PID") || { fail "no memfd:ember-guest-ram among ember's files"; stop_api; return; }
	local b0 s0 b1 s1 i
	b0=$(stat -L -c %b "$fd") s0=$(awk '/^RssShmem:/ {print $2}' "/proc/$API_PID/status")
	expect_api 204 PATCH /balloon '{"amount_mib": 64}'
	for i in $(seq 600); do
		[ "$(api GET /balloon/statistics)" = 200 ] && grep -qF '"actual_mib":64,' "$T/resp" && break
		sleep 0.5
	done
	grep -qF '"actual_mib":64,' "$T/resp" || { fail "the balloon did not reach 64 MiB: $(cat "$T/resp")"; stop_api; return; }
	b1=$(stat -L -c %b "$fd") s1=$(awk '/^RssShmem:/ {print $2}' "/proc/$API_PID/status")
	local drop=$(((b0 - b1) / 2048)) sdrop=$(((s0 - s1) / 1024))
	echo "    memfd allocated $((b0 / 2048)) -> $((b1 / 2048)) MiB; RssShmem $((s0 / 1024)) -> $((s1 / 1024)) MiB" >&2
	[ "$drop" -ge 48 ] && [ "$drop" -le 80 ] || fail "the memfd's allocation fell by $drop MiB, expected 48..80"
	[ "$sdrop" -ge 48 ] || fail "RssShmem fell by $sdrop MiB, expected at least 48"
	stop_api
}
