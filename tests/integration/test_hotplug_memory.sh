# virtio-mem (/hotplug/memory): Firecracker's API rules and messages with
# the test guest (whose firmware does not drive the device), the config
# file's section and GET /vm/config, a snapshot keeping the device; a
# Linux guest growing from 128 to 384 MiB and back, with ember's RSS
# following.

hp_boot_source() {
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.counter=1000\"}"
}

# hp_fault TEXT WHAT: the last answer's fault holds TEXT.
hp_fault() {
	grep -qF -- "$1" "$T/resp" || fail "$2: $(cat "$T/resp")"
}

# Every field's bad values answer 400 with Firecracker's message; the
# defaults; the pre-boot and post-boot rules.
test_hotplug_memory_api() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	start_api hapi || return
	hp_boot_source
	expect_api 400 GET /hotplug/memory
	hp_fault 'The requested operation is not supported before starting the microVM.' "pre-boot GET"
	expect_api 400 PATCH /hotplug/memory '{"requested_size_mib": 2}'
	hp_fault 'The requested operation is not supported before starting the microVM.' "pre-boot PATCH"
	local e='Memory hotplug config error: '
	expect_api 400 PUT /hotplug/memory '{"total_size_mib": 1024, "block_size_mib": 1}'
	hp_fault "${e}Block size must not be lower than 2 MiB" "block 1"
	expect_api 400 PUT /hotplug/memory '{"total_size_mib": 1024, "block_size_mib": 3}'
	hp_fault "${e}Block size must be a power of 2" "block 3"
	expect_api 400 PUT /hotplug/memory '{"total_size_mib": 1024, "slot_size_mib": 64}'
	hp_fault "${e}Slot size must not be lower than 128 MiB" "slot 64"
	expect_api 400 PUT /hotplug/memory '{"total_size_mib": 1024, "block_size_mib": 256, "slot_size_mib": 384}'
	hp_fault "${e}Slot size must be a multiple of block size (256 MiB)" "slot 384 of blocks of 256"
	expect_api 400 PUT /hotplug/memory '{"total_size_mib": 64}'
	hp_fault "${e}Total size must not be lower than slot size (128 MiB)" "total 64"
	expect_api 400 PUT /hotplug/memory '{"total_size_mib": 200}'
	hp_fault "${e}Total size must be a multiple of slot size (128 MiB)" "total 200"
	expect_api 400 PUT /hotplug/memory '{"block_size_mib": 2}'
	hp_fault 'missing field `total_size_mib`' "no total"
	expect_api 400 PUT /hotplug/memory '{"total_size_mib": -1}'
	hp_fault 'invalid value: integer `-1`, expected u32' "negative total"
	expect_api 400 PUT /hotplug/memory '{"total_size_mib": 256, "slot_size_mib": "128"}'
	hp_fault 'invalid type: string \"128\", expected u32' "string slot"
	expect_api 400 PUT /hotplug/memory '{"total_size_mib": 256, "requested_size_mib": 0}'
	hp_fault 'unknown field `requested_size_mib`' "unknown field"
	expect_api 200 GET /vm/config
	grep -qF '"memory-hotplug":null' "$T/resp" || fail "a refused PUT configured it: $(cat "$T/resp")"
	expect_api 204 PUT /hotplug/memory '{"total_size_mib": 256}'
	expect_api 200 GET /vm/config
	grep -qF '"memory-hotplug":{"total_size_mib":256,"block_size_mib":2,"slot_size_mib":128}' "$T/resp" ||
		fail "GET /vm/config: $(cat "$T/resp")"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out hapi 'testvm: count 2' 60
	expect_api 400 PUT /hotplug/memory '{"total_size_mib": 256}'
	hp_fault 'The requested operation is not supported after starting the microVM.' "post-boot PUT"
	expect_api 200 GET /hotplug/memory
	grep -qF '{"total_size_mib":256,"block_size_mib":2,"slot_size_mib":128,"plugged_size_mib":0,"requested_size_mib":0}' "$T/resp" ||
		fail "GET /hotplug/memory: $(cat "$T/resp")"
	# The test guest never starts the device: Firecracker's answer.
	expect_api 400 PATCH /hotplug/memory '{"requested_size_mib": 128}'
	hp_fault 'Memory hotplug update error: Failed to create memory hotplug device: Device is not active' "inactive"
	expect_api 400 PATCH /hotplug/memory '{"requested_size_mib": "2"}'
	hp_fault 'invalid type: string \"2\", expected u32' "string requested"
	expect_api 400 PATCH /hotplug/memory '{"requested_size_mib": 2, "total_size_mib": 256}'
	hp_fault 'unknown field `total_size_mib`' "PATCH with another field"
	expect_api 400 PATCH /hotplug/memory '{}'
	hp_fault 'missing field `requested_size_mib`' "PATCH without the field"
	stop_api

	# No device at all, after boot.
	start_api hapi2 || return
	hp_boot_source
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	expect_api 400 PATCH /hotplug/memory '{"requested_size_mib": 2}'
	hp_fault 'Memory hotplug update error: Failed perform action on device: Device not found' "PATCH without"
	expect_api 400 GET /hotplug/memory
	hp_fault 'Internal VMM error: Failed perform action on device: Device not found' "GET without"
	stop_api
}

# The config file's "memory-hotplug" section: the device is there and its
# rules are those of PUT /hotplug/memory.
test_hotplug_memory_config_file() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	local kernel
	kernel=$(realpath "$BUILD/testvm.elf")
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$kernel", "boot_args": "testvm.counter=1000"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
 "memory-hotplug": {"total_size_mib": 512, "block_size_mib": 4, "slot_size_mib": 256}}
JSON
	start_api hcfg --config-file "$T/vm.json" || return
	wait_out hcfg 'testvm: count 2' 60
	expect_api 200 GET /vm/config
	grep -qF '"memory-hotplug":{"total_size_mib":512,"block_size_mib":4,"slot_size_mib":256}' "$T/resp" ||
		fail "GET /vm/config: $(cat "$T/resp")"
	expect_api 200 GET /hotplug/memory
	grep -qF '"plugged_size_mib":0,"requested_size_mib":0' "$T/resp" || fail "GET: $(cat "$T/resp")"
	stop_api
	cat > "$T/bad.json" <<JSON
{"boot-source": {"kernel_image_path": "$kernel"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
 "memory-hotplug": {"total_size_mib": 100}}
JSON
	run_ember hbad 30 --no-api --config-file "$T/bad.json"
	expect_status 1
	expect_err hbad 'Total size must not be lower than slot size (128 MiB)'
}

# A snapshot keeps the device and the region: the memory file holds RAM
# and the hotplug region, and the restored VM has the device as it was.
test_hotplug_memory_testvm_snapshot_restore() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	start_api hsrc || return
	hp_boot_source
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
	expect_api 204 PUT /hotplug/memory '{"total_size_mib": 256, "block_size_mib": 8}'
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out hsrc 'testvm: count 2' 60 || { stop_api; return; }
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/state\", \"mem_file_path\": \"$T/mem\"}"
	stop_api
	# RAM and the region, then the memory file's identity page.
	local size
	size=$(stat -c %s "$T/mem")
	[ "$size" -eq $(((64 + 256) * 1048576 + 4096)) ] || fail "memory file of $size bytes"
	local n
	n=$(last_count hsrc)
	start_api hdst || return
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}, \"resume_vm\": true}"
	wait_out hdst "testvm: count $((n + 2))" 60
	expect_api 200 GET /hotplug/memory
	grep -qF '{"total_size_mib":256,"block_size_mib":8,"slot_size_mib":128,"plugged_size_mib":0,"requested_size_mib":0}' "$T/resp" ||
		fail "GET /hotplug/memory after the restore: $(cat "$T/resp")"
	expect_api 200 GET /vm/config
	grep -qF '"memory-hotplug":{"total_size_mib":256,"block_size_mib":8,"slot_size_mib":128}' "$T/resp" ||
		fail "GET /vm/config after the restore: $(cat "$T/resp")"
	stop_api
}

# hp_rss_kib PID: VmRSS of the process, in KiB.
hp_rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# hp_get NAME: a number from the last GET /hotplug/memory.
hp_get() { grep -oE "\"$1\":[0-9]+" "$T/resp" | cut -d: -f2; }

# hp_wait_plugged MIB SECONDS: until GET /hotplug/memory says MIB plugged.
hp_wait_plugged() {
	local i
	for i in $(seq $(($2 * 2))); do
		[ "$(api GET /hotplug/memory)" = 200 ] && [ "$(hp_get plugged_size_mib)" = "$1" ] && return 0
		sleep 0.5
	done
	fail "plugged_size_mib did not reach $1 within $2 s: $(cat "$T/resp")"
	return 1
}

# hp_guest_after LINES PATTERN: the first "mem TOTAL_KIB ONLINE_BLOCKS"
# line the guest printed after LINES lines whose fields match PATTERN
# (awk), waiting up to 300 s for one.
hp_guest_after() {
	local i l
	for i in $(seq 3000); do
		l=$(tail -n +"$(($1 + 1))" "$T/hl.out" | tr -d '\r' | awk "/^mem [0-9]+ [0-9]+\$/ && ($2) {print \$2, \$3; exit}")
		[ -n "$l" ] && { echo "$l"; return 0; }
		sleep 0.1
	done
	echo "no guest line with $2 after line $1: $(tail -3 "$T/hl.out")" >&2
	return 1
}

# A Linux guest of 128 MiB with a 256 MiB hotplug region (passing
# memhp_default_state=online_movable, which Linux needs to take the
# memory out again): PATCH requested_size_mib 256 and the guest's driver
# plugs it all, the guest's MemTotal grows by 256 MiB (within 4 MiB) and
# two 128 MiB memory blocks come online; a guest process touches 64 MiB
# (user pages come from the plugged, movable memory first; a page fault
# costs this KVM so much that more would take minutes); PATCH 0 and the
# driver unplugs it all, the guest's MemTotal and blocks are as at boot,
# GET follows, and ember's RSS falls by at least 40 MiB (of the 64 MiB
# touched: slack for the guest's own pages that moved in or out).
test_hotplug_memory_linux_grow_and_shrink() {
	need_kvm || return
	need_file "$BUILD/vmlinux" || return
	need_file "$BUILD/rootfs.ext4" || return
	cp "$BUILD/rootfs.ext4" "$T/root.img"
	# Shell builtins where it can (a process start costs this guest much).
	cat > "$T/hp.sh" <<'SH'
touched=0
while true; do
	total=0
	while read -r k v rest; do
		[ "$k" = MemTotal: ] && { total=$v; break; }
	done < /proc/meminfo
	online=0
	for f in /sys/devices/system/memory/memory*/state; do
		read -r s < "$f"
		[ "$s" = online ] && online=$((online + 1))
	done
	echo mem $total $online
	if [ "$touched" = 0 ] && [ "$online" -ge 3 ]; then
		# busybox dd allocates bs bytes and reading /dev/zero writes every
		# page; user pages come from the movable zone (the plugged memory).
		dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null
		echo hp-touched
		touched=1
	fi
	sleep 1
done
SH
	debugfs -w -R "write $T/hp.sh /hp.sh" "$T/root.img" > /dev/null 2>&1
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/vmlinux")",
  "boot_args": "console=ttyS0 reboot=k panic=1 quiet memhp_default_state=online_movable ember.cmd=\"sh /hp.sh\""},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
 "drives": [{"drive_id": "rootfs", "path_on_host": "$T/root.img", "is_root_device": true, "is_read_only": true}],
 "memory-hotplug": {"total_size_mib": 256}}
JSON
	start_api hl --config-file "$T/vm.json" || return
	wait_out hl '^mem [0-9]+ 1' "$LINUX_TIMEOUT" || { stop_api; return; }
	local boot grown shrunk lines rss0 rss1 rss2
	# (hp_guest_after runs in a subshell: its failure is reported here.)
	boot=$(hp_guest_after 0 1) || { fail "no guest line at boot"; stop_api; return; }
	rss0=$(hp_rss_kib "$API_PID")
	lines=$(wc -l < "$T/hl.out")
	expect_api 204 PATCH /hotplug/memory '{"requested_size_mib": 256}'
	hp_wait_plugged 256 300 || { stop_api; return; }
	# (As below: a line can catch the last block online before MemTotal
	# grew, so wait for a line with both.)
	grown=$(hp_guest_after "$lines" "\$3 >= 3 && \$2 - ${boot% *} >= 252 * 1024") ||
		{ fail "the guest never had 3 blocks online and 252 MiB more: $(tail -n 3 "$T/hl.out" | tr -d '\r')"; stop_api; return; }
	wait_out hl 'hp-touched' 600 || { stop_api; return; }
	sleep 2
	rss1=$(hp_rss_kib "$API_PID")
	expect_api 200 GET /hotplug/memory
	[ "$(hp_get requested_size_mib)" = 256 ] || fail "requested after PATCH: $(cat "$T/resp")"
	lines=$(wc -l < "$T/hl.out")
	expect_api 204 PATCH /hotplug/memory '{"requested_size_mib": 0}'
	hp_wait_plugged 0 300 || { stop_api; return; }
	# (The guest reads MemTotal and the blocks one after the other: a line
	# can catch a block gone before MemTotal fell, so wait for both.)
	shrunk=$(hp_guest_after "$lines" "\$3 == 1 && \$2 == ${boot% *}") ||
		{ fail "the guest never went back to 1 block and its boot MemTotal: $(tail -n 3 "$T/hl.out" | tr -d '\r')"; stop_api; return; }
	sleep 1
	rss2=$(hp_rss_kib "$API_PID")
	echo "    guest MemTotal KiB / online blocks: $boot -> $grown -> $shrunk; RSS MiB $((rss0 / 1024)) -> $((rss1 / 1024)) -> $((rss2 / 1024))" >&2
	local t0=${boot% *} t1=${grown% *} t2=${shrunk% *}
	local grow=$(((t1 - t0) / 1024))
	[ "$grow" -ge 252 ] && [ "$grow" -le 260 ] || fail "MemTotal grew by $grow MiB, expected 256 +- 4"
	[ "${grown#* }" = 3 ] || fail "online memory blocks after plugging: ${grown#* }, expected 3"
	[ "$t2" = "$t0" ] || fail "MemTotal after unplugging is $t2 KiB, at boot $t0"
	local drop=$(((rss1 - rss2) / 1024))
	[ "$drop" -ge 40 ] || fail "ember's RSS fell by $drop MiB after unplugging, expected at least 40"
	expect_api 200 GET /hotplug/memory
	[ "$(hp_get requested_size_mib)" = 0 ] || fail "requested after PATCH 0: $(cat "$T/resp")"
	stop_api
}
