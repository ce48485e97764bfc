# virtio-balloon: Firecracker's API rules and messages with the test guest
# (whose firmware does not drive a balloon), the config file's section and
# GET /vm/config; Linux guests whose balloon, inflated by 64 MiB, gives
# that memory back to the host (ember's RSS falls, a snapshot's memory file
# shrinks), sends statistics, deflates again and on OOM, and whose free
# pages go back to the host by free page reporting and hinting.

balloon_boot_source() {
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.counter=1000\"}"
}

# expect_fault TEXT WHAT: the last answer's fault holds TEXT.
expect_fault() {
	grep -qF -- "$1" "$T/resp" || fail "$2: $(cat "$T/resp")"
}

# test_api.py's test_api_balloon, as far as a guest without a balloon
# driver allows, and the bad values of every field (serde's words, as
# Firecracker answers them).
test_balloon_api() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	start_api bapi || return
	balloon_boot_source
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 128}'
	expect_api 400 PATCH /balloon '{"amount_mib": 0}'
	expect_fault 'The requested operation is not supported before starting the microVM.' "pre-boot PATCH"
	expect_api 400 GET /balloon
	expect_fault 'Balloon config error: No balloon device found.' "GET without a balloon"
	expect_api 204 PUT /balloon '{"amount_mib": 1, "deflate_on_oom": true}'
	expect_api 204 PUT /balloon '{"amount_mib": 0, "deflate_on_oom": false, "stats_polling_interval_s": 5}'
	expect_api 200 GET /balloon
	grep -qF '{"amount_mib":0,"deflate_on_oom":false,"stats_polling_interval_s":5,"free_page_hinting":false,"free_page_reporting":false}' "$T/resp" ||
		fail "GET /balloon: $(cat "$T/resp")"
	expect_api 400 PATCH /balloon '{"amount_mib": 2}'
	expect_api 400 PUT /balloon '{"amount_mib": 1024, "deflate_on_oom": false, "stats_polling_interval_s": 5}'
	expect_fault 'Balloon config error: Amount of pages requested is too large.' "too large"
	# Bad values: each answered 400 with the field named.
	expect_api 400 PUT /balloon '{"deflate_on_oom": false}'
	expect_fault 'missing field `amount_mib`' "no amount_mib"
	expect_api 400 PUT /balloon '{"amount_mib": 1}'
	expect_fault 'missing field `deflate_on_oom`' "no deflate_on_oom"
	expect_api 400 PUT /balloon '{"amount_mib": -1, "deflate_on_oom": false}'
	expect_fault 'invalid value: integer `-1`, expected u32' "negative amount_mib"
	expect_api 400 PUT /balloon '{"amount_mib": 1, "deflate_on_oom": "yes"}'
	expect_fault 'invalid type: string \"yes\", expected a boolean' "string deflate_on_oom"
	expect_api 400 PUT /balloon '{"amount_mib": 1, "deflate_on_oom": false, "stats_polling_interval_s": 65536}'
	expect_fault 'invalid value: integer `65536`, expected u16' "interval beyond u16"
	expect_api 400 PUT /balloon '{"amount_mib": 1, "deflate_on_oom": false, "free_page_reporting": 1}'
	expect_fault 'invalid type: integer `1`, expected a boolean' "number free_page_reporting"
	expect_api 400 PUT /balloon '{"amount_mib": 1, "deflate_on_oom": false, "free_page_hinting": null, "x": 1}'
	expect_fault 'unknown field `x`' "unknown field"
	expect_api 400 GET /balloon/statistics
	expect_fault 'The requested operation is not supported before starting the microVM.' "pre-boot statistics"
	expect_api 400 PATCH /balloon/hinting/start
	expect_fault 'The requested operation is not supported before starting the microVM.' "pre-boot hinting start"
	expect_api 400 GET /balloon/hinting/status
	expect_fault 'The requested operation is not supported before starting the microVM.' "pre-boot hinting status"
	expect_api 200 GET /vm/config
	grep -qF '"balloon":{"amount_mib":0,"deflate_on_oom":false,"stats_polling_interval_s":5,' "$T/resp" ||
		fail "GET /vm/config: $(cat "$T/resp")"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out bapi 'testvm: count 2' 60
	expect_api 400 PUT /balloon '{"amount_mib": 0, "deflate_on_oom": false}'
	expect_fault 'The requested operation is not supported after starting the microVM.' "post-boot PUT"
	# The test guest never starts the device: Firecracker's answer.
	expect_api 400 PATCH /balloon '{"amount_mib": 4}'
	expect_fault 'Balloon update error: Balloon: Device not activated yet.' "PATCH of an inactive device"
	expect_api 400 PATCH /balloon '{"amount_mib": "4"}'
	expect_fault 'invalid type: string \"4\", expected u32' "string amount_mib"
	expect_api 400 PATCH /balloon '{"amount_mib": 4, "deflate_on_oom": true}'
	expect_fault 'unknown field `deflate_on_oom`' "PATCH with another field"
	expect_api 204 PATCH /balloon/statistics '{"stats_polling_interval_s": 5}'
	expect_api 204 PATCH /balloon/statistics '{"stats_polling_interval_s": 7}'
	expect_api 400 PATCH /balloon/statistics '{"stats_polling_interval_s": 0}'
	expect_fault 'Statistics cannot be enabled/disabled after activation.' "turning statistics off"
	expect_api 200 GET /balloon
	grep -qF '"stats_polling_interval_s":7' "$T/resp" || fail "GET /balloon after PATCH: $(cat "$T/resp")"
	expect_api 200 GET /balloon/statistics
	grep -qF '{"target_pages":0,"actual_pages":0,"target_mib":0,"actual_mib":0}' "$T/resp" ||
		fail "statistics: $(cat "$T/resp")"
	# Hinting was not asked for.
	expect_api 400 PATCH /balloon/hinting/start '{"acknowledge_on_stop": true}'
	expect_fault 'Balloon update error: Balloon: Attempting to use hinting when not enabled' "hinting start, not enabled"
	expect_api 400 PATCH /balloon/hinting/stop
	expect_fault 'Attempting to use hinting when not enabled' "hinting stop, not enabled"
	expect_api 400 GET /balloon/hinting/status
	expect_fault 'Attempting to use hinting when not enabled' "hinting status, not enabled"
	stop_api

	# Without statistics, and without a balloon at all, after boot.
	start_api bapi2 || return
	balloon_boot_source
	expect_api 204 PUT /balloon '{"amount_mib": 0, "deflate_on_oom": false, "free_page_hinting": true}'
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	# With hinting, on a device the guest never started.
	expect_api 200 GET /balloon/hinting/status
	[ "$(cat "$T/resp")" = '{"host_cmd":0,"guest_cmd":null}' ] || fail "hinting status: $(cat "$T/resp")"
	expect_api 400 PATCH /balloon/hinting/start
	expect_fault 'Balloon update error: Balloon: Device not activated yet.' "hinting start, inactive"
	expect_api 400 PATCH /balloon/hinting/start '{"acknowledge_on_stop": "yes"}'
	expect_fault 'invalid type: string \"yes\", expected a boolean' "string acknowledge_on_stop"
	expect_api 400 PATCH /balloon/hinting/other
	expect_fault 'Unrecognized PATCH request path `/hinting/other`.' "unknown hinting path"
	expect_api 400 GET /balloon/hinting
	expect_fault 'Unrecognized GET request path `/hinting/`.' "hinting without a command"
	expect_api 400 GET /balloon/statistics
	expect_fault 'Internal VMM error: Balloon: Received stats query when stats are disabled.' "statistics disabled"
	expect_api 400 PATCH /balloon/statistics '{"stats_polling_interval_s": 3}'
	expect_fault 'Statistics cannot be enabled/disabled after activation.' "turning statistics on"
	stop_api
	start_api bapi3 || return
	balloon_boot_source
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	expect_api 400 PATCH /balloon '{"amount_mib": 1}'
	expect_fault 'Balloon update error: Failed perform action on device: Device not found' "PATCH without a balloon"
	expect_api 400 GET /balloon
	expect_fault 'Internal VMM error: Failed perform action on device: Device not found' "GET without a balloon"
	expect_api 400 GET /balloon/statistics
	expect_fault 'Internal VMM error: Failed perform action on device: Device not found' "statistics without a balloon"
	expect_api 400 PATCH /balloon/hinting/stop
	expect_fault 'Balloon update error: Failed perform action on device: Device not found' "hinting without a balloon"
	stop_api
}

# The config file's "balloon" section: the device is there (GET /vm/config)
# and its rules are those of PUT /balloon.
test_balloon_config_file() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	local kernel
	kernel=$(realpath "$BUILD/testvm.elf")
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$kernel", "boot_args": "testvm.counter=1000"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
 "balloon": {"amount_mib": 8, "deflate_on_oom": true, "stats_polling_interval_s": 1, "free_page_reporting": true}}
JSON
	start_api bcfg --config-file "$T/vm.json" || return
	wait_out bcfg 'testvm: count 2' 60
	expect_api 200 GET /vm/config
	grep -qF '"balloon":{"amount_mib":8,"deflate_on_oom":true,"stats_polling_interval_s":1,"free_page_hinting":false,"free_page_reporting":true}' "$T/resp" ||
		fail "GET /vm/config: $(cat "$T/resp")"
	expect_api 200 GET /balloon/statistics
	grep -qF '"target_pages":2048,' "$T/resp" || fail "statistics: $(cat "$T/resp")"
	stop_api
	cat > "$T/big.json" <<JSON
{"boot-source": {"kernel_image_path": "$kernel"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
 "balloon": {"amount_mib": 65, "deflate_on_oom": true}}
JSON
	run_ember big 30 --no-api --config-file "$T/big.json"
	expect_status 1
	expect_err big 'Amount of pages requested is too large'
}

# rss_kib PID: VmRSS of the process, in KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# balloon_stat NAME: a number from the last GET /balloon/statistics.
balloon_stat() { grep -oE "\"$1\":[0-9]+" "$T/resp" | cut -d: -f2; }

# wait_actual MIB SECONDS: until the driver says it holds MIB MiB.
wait_actual() {
	local i
	for i in $(seq $(($2 * 2))); do
		[ "$(api GET /balloon/statistics)" = 200 ] && [ "$(balloon_stat actual_mib)" = "$1" ] && return 0
		sleep 0.5
	done
	fail "the balloon did not reach $1 MiB within $2 s: $(cat "$T/resp")"
	return 1
}

# The last "meminfo TOTAL AVAILABLE" line (KiB) the guest printed after
# the line count given, waiting for one.
meminfo_after() {
	local i
	for i in $(seq 600); do
		local l
		l=$(tail -n +"$(($1 + 1))" "$T/bl.out" | tr -d '\r' | grep -E '^meminfo [0-9]+ [0-9]+' | tail -1)
		[ -n "$l" ] && { echo "${l#meminfo }"; return 0; }
		sleep 0.1
	done
	fail "no meminfo line from the guest"
	return 1
}

# A Linux guest of 128 MiB touches all but 16 MiB of its free memory (so
# it is resident in ember; a fresh page costs this host's guests seconds
# per MiB, so no more than that), then the balloon is inflated by 64 MiB:
# ember's RSS falls by
# 48..80 MiB (the guest may hand over a few pages it never touched, and
# ember's own memory moves a little), the guest's MemTotal by 64 MiB
# (within 4 MiB: deflate_on_oom is off, so the driver takes the pages out
# of the guest's total) and MemAvailable by at least 48 MiB; statistics
# arrive every second; after PATCH back to 0 the guest has its memory back.
test_balloon_linux_inflate_gives_memory_back() {
	need_kvm || return
	need_file "$BUILD/vmlinux" || return
	need_file "$BUILD/rootfs.ext4" || return
	cp "$BUILD/rootfs.ext4" "$T/root.img"
	cat > "$T/balloon.sh" <<'SH'
free=$(awk '/^MemFree:/ {print int($2 / 1024)}' /proc/meminfo)
# busybox dd allocates bs bytes and reading /dev/zero writes every page.
dd if=/dev/zero of=/dev/null bs=$((free - 16))M count=1 2>/dev/null
echo balloon-touched $((free - 16))
while true; do
	echo meminfo $(awk '/^MemTotal:/ {t = $2} /^MemAvailable:/ {a = $2} END {print t, a}' /proc/meminfo)
	sleep 1
done
SH
	debugfs -w -R "write $T/balloon.sh /balloon.sh" "$T/root.img" > /dev/null 2>&1
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/vmlinux")",
  "boot_args": "console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"sh /balloon.sh\""},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
 "drives": [{"drive_id": "rootfs", "path_on_host": "$T/root.img", "is_root_device": true, "is_read_only": true}],
 "balloon": {"amount_mib": 0, "deflate_on_oom": false, "stats_polling_interval_s": 1}}
JSON
	start_api bl --config-file "$T/vm.json" || return
	wait_out bl 'balloon-touched' "$LINUX_TIMEOUT" || { stop_api; return; }
	local lines before after rss0 rss1
	lines=$(wc -l < "$T/bl.out")
	before=$(meminfo_after "$lines") || { stop_api; return; }
	rss0=$(rss_kib "$API_PID")
	expect_api 204 PATCH /balloon '{"amount_mib": 64}'
	wait_actual 64 300 || { stop_api; return; }
	rss1=$(rss_kib "$API_PID")
	lines=$(wc -l < "$T/bl.out")
	after=$(meminfo_after "$lines") || { stop_api; return; }
	local drop=$(((rss0 - rss1) / 1024))
	echo "    RSS $((rss0 / 1024)) -> $((rss1 / 1024)) MiB; guest MemTotal/MemAvailable KiB $before -> $after" >&2
	[ "$drop" -ge 48 ] && [ "$drop" -le 80 ] || fail "ember's RSS fell by $drop MiB, expected 48..80"
	local t0=${before% *} a0=${before#* } t1=${after% *} a1=${after#* }
	local tdrop=$(((t0 - t1) / 1024)) adrop=$(((a0 - a1) / 1024))
	[ "$tdrop" -ge 60 ] && [ "$tdrop" -le 68 ] || fail "the guest's MemTotal fell by $tdrop MiB, expected 64 +- 4"
	[ "$adrop" -ge 48 ] || fail "the guest's MemAvailable fell by $adrop MiB, expected at least 48"
	# Statistics from the guest's driver (sent every second).
	expect_api 200 GET /balloon/statistics
	for k in total_memory available_memory free_memory; do
		[ -n "$(balloon_stat "$k")" ] || fail "statistics lack $k: $(cat "$T/resp")"
	done
	[ "$(balloon_stat target_pages)" = 16384 ] || fail "target_pages: $(cat "$T/resp")"
	# Deflate: the guest gets its memory back.
	expect_api 204 PATCH /balloon '{"amount_mib": 0}'
	wait_actual 0 300 || { stop_api; return; }
	# The guest's meminfo line can lag its console by one period on a
	# loaded host (seen 1 MiB short): up to 20 new lines for the total.
	local n
	for n in $(seq 20); do
		lines=$(wc -l < "$T/bl.out")
		after=$(meminfo_after "$lines") || { stop_api; return; }
		[ "${after% *}" = "$t0" ] && break
	done
	[ "${after% *}" = "$t0" ] || fail "after deflating MemTotal is ${after% *} KiB, expected $t0"
	stop_api
}

# A snapshot keeps the device (its section is read back and checked): the
# restored VM has the balloon with its configuration and statistics.
test_balloon_testvm_snapshot_restore() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	start_api bsrc || return
	balloon_boot_source
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
	expect_api 204 PUT /balloon '{"amount_mib": 16, "deflate_on_oom": true, "stats_polling_interval_s": 2}'
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out bsrc 'testvm: count 2' 60 || { stop_api; return; }
	expect_api 204 PATCH /balloon/statistics '{"stats_polling_interval_s": 3}'
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/state\", \"mem_file_path\": \"$T/mem\"}"
	stop_api
	local n
	n=$(last_count bsrc)
	start_api bdst || return
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}, \"resume_vm\": true}"
	wait_out bdst "testvm: count $((n + 2))" 60
	expect_api 200 GET /balloon
	grep -qF '{"amount_mib":16,"deflate_on_oom":true,"stats_polling_interval_s":3,' "$T/resp" ||
		fail "GET /balloon after the restore: $(cat "$T/resp")"
	expect_api 200 GET /balloon/statistics
	grep -qF '"target_pages":4096,' "$T/resp" || fail "statistics after the restore: $(cat "$T/resp")"
	stop_api
}

# hwm_kib PID: VmHWM (the peak RSS) of the process, in KiB.
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# Free page reporting: a guest process touches 96 MiB and exits; the
# guest reports the freed blocks and ember gives them back, so its RSS
# falls at least 64 MiB below its peak (VmHWM) within a generous timeout.
# Without reporting the touched pages stay resident.
test_balloon_linux_free_page_reporting() {
	need_kvm || return
	need_file "$BUILD/vmlinux" || return
	need_file "$BUILD/rootfs.ext4" || return
	cp "$BUILD/rootfs.ext4" "$T/root.img"
	cat > "$T/report.sh" <<'SH'
dd if=/dev/zero of=/dev/null bs=96M count=1 2>/dev/null
echo report-touched
while true; do sleep 1; done
SH
	debugfs -w -R "write $T/report.sh /report.sh" "$T/root.img" > /dev/null 2>&1
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/vmlinux")",
  "boot_args": "console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"sh /report.sh\""},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 256},
 "drives": [{"drive_id": "rootfs", "path_on_host": "$T/root.img", "is_root_device": true, "is_read_only": true}],
 "balloon": {"amount_mib": 0, "deflate_on_oom": false, "free_page_reporting": true}}
JSON
	start_api rep --config-file "$T/vm.json" || return
	wait_out rep 'report-touched' "$LINUX_TIMEOUT" || { stop_api; return; }
	local i gap=0
	for i in $(seq 240); do
		gap=$((($(hwm_kib "$API_PID") - $(rss_kib "$API_PID")) / 1024))
		[ "$gap" -ge 64 ] && break
		sleep 0.5
	done
	echo "    RSS $(($(rss_kib "$API_PID") / 1024)) MiB, peak $(($(hwm_kib "$API_PID") / 1024)) MiB" >&2
	[ "$gap" -ge 64 ] || fail "ember's RSS is only $gap MiB below its peak, expected at least 64"
	stop_api
}

# linux_balloon_vm NAME SCRIPT BALLOON_JSON [MIB [DISK]]: boot a Linux
# guest of MIB MiB (256) that runs SCRIPT (a file) with the balloon
# BALLOON_JSON (and DISK as its /dev/vdb), under the API as NAME.
linux_balloon_vm() {
	cp "$BUILD/rootfs.ext4" "$T/$1.img"
	debugfs -w -R "write $2 /run.sh" "$T/$1.img" > /dev/null 2>&1
	local disk=
	[ -n "${5:-}" ] && disk=", {\"drive_id\": \"data\", \"path_on_host\": \"$5\", \"is_root_device\": false, \"is_read_only\": true}"
	cat > "$T/$1.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/vmlinux")",
  "boot_args": "console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"sh /run.sh\""},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": ${4:-256}},
 "drives": [{"drive_id": "rootfs", "path_on_host": "$T/$1.img", "is_root_device": true, "is_read_only": true}$disk],
 "balloon": $3}
JSON
	start_api "$1" --config-file "$T/$1.json"
}

# blocks_mib FILE: the space FILE takes on disk (its allocated blocks), in MiB.
blocks_mib() { echo $(($(stat -c '%b * %B' "$1") >> 20)); }

# snapshot_to NAME: a Full snapshot of the running VM into $T/NAME.{state,mem}; it runs on.
snapshot_to() {
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/$1.state\", \"mem_file_path\": \"$T/$1.mem\"}"
	expect_api 204 PATCH /vm '{"state": "Resumed"}'
}

# hint_status_is HOST GUEST SECONDS: until GET /balloon/hinting/status says so.
hint_status_is() {
	local i want="{\"host_cmd\":$1,\"guest_cmd\":$2}"
	for i in $(seq $(($3 * 2))); do
		[ "$(api GET /balloon/hinting/status)" = 200 ] && [ "$(cat "$T/resp")" = "$want" ] && return 0
		sleep 0.5
	done
	fail "hinting status is $(cat "$T/resp"), expected $want within $3 s"
	return 1
}

# One Linux guest (256 MiB; statistics every second, free page hinting)
# whose process read 96 MiB of non-zero bytes from a disk straight into
# its memory (O_DIRECT: no page cache) and exited, so that memory is free
# in the guest but resident in ember, and which then rewrites a 1..4 MiB
# file in its tmpfs every second:
# - statistics arrive again and again: free_memory changes between polls
#   within a generous timeout;
# - a snapshot taken after inflating the balloon by 64 MiB has a memory
#   file 48..80 MiB smaller on disk than one taken before (the discarded
#   pages are holes);
# - free page hinting (the balloon still inflated): a run without
#   acknowledge_on_stop ends with the driver's STOP (guest_cmd 0) and
#   stays at its command id until /balloon/hinting/stop, and ember's RSS
#   falls by at least 12 MiB (of the ~32 MiB of the filled memory the
#   balloon left free, and what else is free but resident; the guest
#   hints only whole 4 MiB blocks; 20 MiB seen); a run with the default
#   acknowledge_on_stop ends with ember's DONE (host_cmd 1) by itself.
test_balloon_linux_statistics_snapshot_hinting() {
	need_kvm || return
	need_file "$BUILD/vmlinux" || return
	need_file "$BUILD/rootfs.ext4" || return
	cat > "$T/hint.sh" <<'SH'
dd if=/dev/vdb of=/dev/null bs=96M count=1 iflag=direct,fullblock 2>/dev/null
echo balloon-filled
i=0
while true; do
	i=$((i + 1))
	dd if=/dev/zero of=/tmp/grow bs=1M count=$((i % 4 + 1)) 2>/dev/null
	sleep 1
done
SH
	yes 'ember balloon' | head -c 96M > "$T/fill.img"
	linux_balloon_vm bh "$T/hint.sh" \
		'{"amount_mib": 0, "deflate_on_oom": false, "stats_polling_interval_s": 1, "free_page_hinting": true}' \
		256 "$T/fill.img" || return
	wait_out bh 'balloon-filled' "$LINUX_TIMEOUT" || { stop_api; return; }
	# Statistics keep coming: free_memory follows the guest's file.
	local i m0 m1=
	expect_api 200 GET /balloon/statistics
	m0=$(balloon_stat free_memory)
	[ -n "$m0" ] || fail "statistics lack free_memory: $(cat "$T/resp")"
	for i in $(seq 120); do
		sleep 0.5
		[ "$(api GET /balloon/statistics)" = 200 ] && m1=$(balloon_stat free_memory)
		[ -n "$m1" ] && [ "$m1" != "$m0" ] && break
	done
	[ -n "$m1" ] && [ "$m1" != "$m0" ] || fail "free_memory stayed $m0 for 60 s: no fresh statistics"
	# A snapshot after inflating is smaller by what the balloon took.
	snapshot_to before
	expect_api 204 PATCH /balloon '{"amount_mib": 64}'
	wait_actual 64 300 || { stop_api; return; }
	snapshot_to after
	local full small
	full=$(blocks_mib "$T/before.mem") small=$(blocks_mib "$T/after.mem")
	echo "    memory file on disk: $full MiB before inflating, $small MiB after" >&2
	[ $((full - small)) -ge 48 ] && [ $((full - small)) -le 80 ] ||
		fail "the memory file shrank by $((full - small)) MiB after inflating by 64, expected 48..80"
	rm -f "$T/before.mem" "$T/after.mem"
	# Free page hinting, with the balloon still inflated. The first run
	# without acknowledge_on_stop: guest_cmd 0 can only be this run's STOP
	# (the driver never sent a command before).
	expect_api 200 GET /balloon/hinting/status
	[ "$(cat "$T/resp")" = '{"host_cmd":0,"guest_cmd":null}' ] || fail "hinting status before a run: $(cat "$T/resp")"
	local rss0 rss1
	rss0=$(rss_kib "$API_PID")
	expect_api 204 PATCH /balloon/hinting/start '{"acknowledge_on_stop": false}'
	hint_status_is 2 0 120 || { stop_api; return; }
	sleep 1
	rss1=$(rss_kib "$API_PID")
	echo "    RSS $((rss0 / 1024)) -> $((rss1 / 1024)) MiB after a hinting run" >&2
	[ $(((rss0 - rss1) / 1024)) -ge 12 ] || fail "ember's RSS fell by $(((rss0 - rss1) / 1024)) MiB after hinting, expected at least 12"
	expect_api 200 GET /balloon/hinting/status
	[ "$(cat "$T/resp")" = '{"host_cmd":2,"guest_cmd":0}' ] || fail "a run without acknowledge_on_stop: $(cat "$T/resp")"
	expect_api 204 PATCH /balloon/hinting/stop
	hint_status_is 1 0 10 || { stop_api; return; }
	# With the default acknowledge_on_stop ember says DONE (host_cmd 1,
	# which it left for the run's id 3 at once) when the driver finished.
	expect_api 204 PATCH /balloon/hinting/start
	hint_status_is 1 0 120
	stop_api
}

# oom_guest NAME DEFLATE: a 128 MiB Linux guest whose balloon (statistics
# every second, deflate_on_oom DEFLATE) holds 80 MiB from boot; once the
# guest sees it (MemAvailable below 32 MiB), a process touches 40 MiB,
# more than the guest has without the balloon's memory (about 27 MiB
# available; each MiB past that is one OOM event, seconds of reclaim in
# an emulated guest kernel, so the test asks no more than it needs).
# Leaves the result line ("alloc-ok"/"alloc-failed") in NAME's output and
# the VM running.
oom_guest() {
	cat > "$T/oom.sh" <<'SH'
while [ "$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)" -ge 32768 ]; do sleep 0.5; done
sleep 2
echo balloon-held $(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
if dd if=/dev/zero of=/dev/null bs=40M count=1 2>/dev/null; then echo alloc-ok; else echo alloc-failed; fi
while true; do sleep 1; done
SH
	linux_balloon_vm "$1" "$T/oom.sh" \
		"{\"amount_mib\": 80, \"deflate_on_oom\": $2, \"stats_polling_interval_s\": 1}" 128 || return 1
	wait_out "$1" 'balloon-held' "$LINUX_TIMEOUT" || return 1
	wait_out "$1" 'alloc-(ok|failed)' "$LINUX_TIMEOUT"
}

# Deflate on OOM: with it, the allocation that needs the balloon's memory
# succeeds and the balloon's actual size falls (by at least 8 MiB: the
# guest's driver gives back 1 MiB per OOM event, as many as it needs).
# Without it, the same allocation fails (refused or OOM-killed) and the
# balloon keeps its 80 MiB.
test_balloon_linux_deflate_on_oom() {
	need_kvm || return
	need_file "$BUILD/vmlinux" || return
	need_file "$BUILD/rootfs.ext4" || return
	oom_guest oomy true || { stop_api; return; }
	grep -q 'alloc-ok' "$T/oomy.out" || fail "with deflate_on_oom the allocation failed: $(grep -a alloc "$T/oomy.out")"
	sleep 2 # the driver's new actual size, and a statistics round
	expect_api 200 GET /balloon/statistics
	local actual
	actual=$(balloon_stat actual_mib)
	echo "    deflate_on_oom: the balloon holds $actual MiB after the allocation" >&2
	[ -n "$actual" ] && [ "$actual" -le 72 ] || fail "the balloon holds ${actual:-?} MiB after the OOM, expected at most 72"
	[ "$(balloon_stat target_mib)" = 80 ] || fail "the target changed: $(cat "$T/resp")"
	stop_api
	oom_guest oomn false || { stop_api; return; }
	grep -q 'alloc-failed' "$T/oomn.out" || fail "without deflate_on_oom the allocation succeeded"
	expect_api 200 GET /balloon/statistics
	[ "$(balloon_stat actual_mib)" = 80 ] || fail "without deflate_on_oom the balloon gave memory back: $(cat "$T/resp")"
	stop_api
}
