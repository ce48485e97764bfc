# Paths a client names (API bodies, the config file, flags) may name
# anything: a FIFO, a directory, a socket, a device. ember opens them
# without ever waiting and refuses what the field does not take, with a
# message naming the path and what it is; the API keeps answering and
# SIGTERM still stops ember. Every request runs under a timeout, so a hang
# is a failure here, not a stuck test run.

# api_t METHOD PATH [BODY]: as api, but gives up after 10 s and prints
# "hang" ("000" if the connection closed unanswered). Once a caller has seen
# a hang it sets API_HUNG (ember is stuck), and later requests print "hang"
# at once instead of waiting again.
api_t() {
	[ -n "${API_HUNG:-}" ] && { echo hang; return; }
	local args=(-s -o "$T/resp" -w "%{http_code}" --unix-socket "$API_SOCK" -X "$1" "http://localhost$2")
	[ $# -ge 3 ] && args+=(-H "Content-Type: application/json" -d "$3")
	: > "$T/resp"
	local got
	got=$(timeout 10 curl "${args[@]}")
	[ $? -eq 124 ] && got=hang
	echo "$got"
}

expect_api_t() { # STATUS METHOD PATH [BODY]
	local want=$1
	shift
	local got
	got=$(api_t "$@")
	[ "$got" = hang ] && API_HUNG=1
	[ "$got" = "$want" ] || fail "$1 $2: $got, expected $want ($(cat "$T/resp"))"
}

# expect_refused KIND FILE METHOD PATH BODY: 400 naming FILE and saying
# it "is KIND" (e.g. "a FIFO"), and ember still answers GET /.
expect_refused() {
	local kind=$1 file=$2
	shift 2
	local got
	got=$(api_t "$@")
	[ "$got" = hang ] && API_HUNG=1
	if [ "$got" != 400 ]; then
		fail "$1 $2 with $file: $got, expected 400 ($(cat "$T/resp"))"
	else
		grep -qF -- "$file: is $kind" "$T/resp" || fail "$1 $2: the fault does not say $file is $kind: $(cat "$T/resp")"
	fi
	got=$(api_t GET /)
	[ "$got" = hang ] && API_HUNG=1
	[ "$got" = 200 ] || fail "GET / after $1 $2 with $file: $got"
}

# SIGTERM stops ember (exit 143) within 10 s; otherwise it is killed.
expect_sigterm_stops() {
	kill -TERM "$API_PID" 2>/dev/null
	local i
	for i in $(seq 100); do
		kill -0 "$API_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$API_PID" 2>/dev/null; then
		fail "SIGTERM did not stop ember within 10 s"
		kill -KILL "$API_PID"
	fi
	wait "$API_PID"
	STATUS=$?
	expect_status 143
}

# Before boot: every path field of the API, given a FIFO (and for the
# drives and the sinks, other kinds they do not take).
test_paths_api_refuses_fifos_before_boot() {
	need_kvm || return
	local API_HUNG=
	local kernel
	kernel=$(realpath "$BUILD/testvm.elf")
	mkfifo "$T/fifo"
	mkdir "$T/dir"
	make_testdisk "$T/disk.img"
	start_api paths || return
	expect_refused "a FIFO" "$T/fifo" PUT /boot-source "{\"kernel_image_path\": \"$T/fifo\"}"
	expect_refused "a FIFO" "$T/fifo" PUT /boot-source \
		"{\"kernel_image_path\": \"$kernel\", \"initrd_path\": \"$T/fifo\"}"
	expect_refused "a FIFO" "$T/fifo" PUT /drives/ro \
		"{\"drive_id\": \"ro\", \"path_on_host\": \"$T/fifo\", \"is_root_device\": false, \"is_read_only\": true}"
	expect_refused "a FIFO" "$T/fifo" PUT /drives/rw \
		"{\"drive_id\": \"rw\", \"path_on_host\": \"$T/fifo\", \"is_root_device\": false, \"is_read_only\": false}"
	expect_refused "a character device" /dev/zero PUT /drives/rw \
		'{"drive_id": "rw", "path_on_host": "/dev/zero", "is_root_device": false}'
	expect_refused "a directory" "$T/dir" PUT /drives/rw \
		"{\"drive_id\": \"rw\", \"path_on_host\": \"$T/dir\", \"is_root_device\": false, \"is_read_only\": true}"
	expect_refused "a FIFO" "$T/fifo" PUT /serial "{\"serial_out_path\": \"$T/fifo\"}"
	# Logs and metrics take a FIFO, but no directory, socket or device.
	local kind file
	for kind in "a directory:$T/dir" "a socket:$API_SOCK" "a character device:/dev/null"; do
		file=${kind#*:}
		kind=${kind%%:*}
		expect_refused "$kind" "$file" PUT /logger "{\"log_path\": \"$file\"}"
		expect_refused "$kind" "$file" PUT /metrics "{\"metrics_path\": \"$file\"}"
	done
	# Nothing was half-applied: good paths still work.
	expect_api_t 204 PUT /boot-source "{\"kernel_image_path\": \"$kernel\"}"
	expect_api_t 204 PUT /drives/rw "{\"drive_id\": \"rw\", \"path_on_host\": \"$T/disk.img\", \"is_root_device\": false}"
	expect_api_t 204 PUT /serial "{\"serial_out_path\": \"$T/serial.out\"}"
	mkfifo "$T/log.fifo" "$T/metrics.fifo"
	expect_api_t 204 PUT /logger "{\"log_path\": \"$T/log.fifo\"}"
	expect_api_t 204 PUT /metrics "{\"metrics_path\": \"$T/metrics.fifo\"}"
	expect_sigterm_stops
}

# paths_guest NAME: ember serving $T/NAME.sock, configured to boot the test
# guest (which waits) from copies in $T: kernel, initrd, drives ro.img
# (read-only) and rw.img, serial output serial.out, vsock at v.sock.
paths_guest() {
	cp "$BUILD/testvm.elf" "$T/kernel"
	printf 'initrd\n' > "$T/initrd"
	make_testdisk "$T/ro.img"
	make_testdisk "$T/rw.img"
	start_api "$1" || return
	expect_api_t 204 PUT /boot-source \
		"{\"kernel_image_path\": \"$T/kernel\", \"initrd_path\": \"$T/initrd\", \"boot_args\": \"testvm.hang\"}"
	expect_api_t 204 PUT /drives/ro \
		"{\"drive_id\": \"ro\", \"path_on_host\": \"$T/ro.img\", \"is_root_device\": false, \"is_read_only\": true}"
	expect_api_t 204 PUT /drives/rw "{\"drive_id\": \"rw\", \"path_on_host\": \"$T/rw.img\", \"is_root_device\": false}"
	expect_api_t 204 PUT /serial "{\"serial_out_path\": \"$T/serial.out\"}"
	expect_api_t 204 PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$T/v.sock\"}"
}

expect_running() {
	expect_api_t 204 PUT /actions '{"action_type": "InstanceStart"}'
	api_t GET / > /dev/null
	grep -q '"state":"Running"' "$T/resp" || fail "GET / does not say Running: $(cat "$T/resp")"
}

# A path that was fine when PUT can be a FIFO by InstanceStart: the start
# is refused naming it, ember stays as it was, and a later start works.
test_paths_instance_start_refuses_fifos() {
	need_kvm || return
	local API_HUNG=
	paths_guest start || return
	local f
	for f in kernel initrd ro.img rw.img serial.out v.sock; do
		mv "$T/$f" "$T/$f.saved" 2>/dev/null
		mkfifo "$T/$f"
		expect_refused "a FIFO" "$T/$f" PUT /actions '{"action_type": "InstanceStart"}'
		rm "$T/$f"
		mv "$T/$f.saved" "$T/$f" 2>/dev/null
	done
	expect_running
	expect_sigterm_stops
}

# A refused InstanceStart leaves nothing behind: refused again and again
# (each answered, naming the file), then the start works.
test_paths_instance_start_retried_after_refusals() {
	need_kvm || return
	local API_HUNG=
	paths_guest retry || return
	mv "$T/kernel" "$T/kernel.saved"
	local i
	for i in 1 2 3; do
		expect_api_t 400 PUT /actions '{"action_type": "InstanceStart"}'
		grep -qF "$T/kernel: No such file" "$T/resp" || fail "refusal $i does not name the kernel: $(cat "$T/resp")"
	done
	mv "$T/kernel.saved" "$T/kernel"
	expect_running
	expect_sigterm_stops
}

# The vsock socket path held by a live listener that never accepts: the
# start is refused as in use (a blocking probe would wait there forever).
test_paths_busy_vsock_socket_is_in_use() {
	need_kvm || return
	local API_HUNG=
	paths_guest busyvsock || return
	busy_listener "$T/v.sock" || { expect_sigterm_stops; return; }
	local got
	got=$(api_t PUT /actions '{"action_type": "InstanceStart"}')
	[ "$got" = hang ] && API_HUNG=1
	[ "$got" = 400 ] && grep -qF "$T/v.sock is in use" "$T/resp" ||
		fail "InstanceStart with a busy vsock socket: $got ($(cat "$T/resp"))"
	kill "$BUSY_PID"
	wait "$BUSY_PID" 2>/dev/null
	# Its socket file is stale now, and replaced.
	expect_running
	expect_sigterm_stops
}

# Running: PATCH /drives refuses a FIFO for either kind of drive, and a
# character device; a regular file still swaps in.
test_paths_patch_drive_while_running_refuses_fifos() {
	need_kvm || return
	local API_HUNG=
	paths_guest patch || return
	expect_running
	mkfifo "$T/new.fifo"
	expect_refused "a FIFO" "$T/new.fifo" PATCH /drives/ro "{\"drive_id\": \"ro\", \"path_on_host\": \"$T/new.fifo\"}"
	expect_refused "a FIFO" "$T/new.fifo" PATCH /drives/rw "{\"drive_id\": \"rw\", \"path_on_host\": \"$T/new.fifo\"}"
	expect_refused "a character device" /dev/zero PATCH /drives/rw '{"drive_id": "rw", "path_on_host": "/dev/zero"}'
	make_testdisk "$T/new.img"
	expect_api_t 204 PATCH /drives/ro "{\"drive_id\": \"ro\", \"path_on_host\": \"$T/new.img\"}"
	api_t GET /vm/config > /dev/null
	grep -qF "$T/new.img" "$T/resp" || fail "GET /vm/config does not show the swapped drive"
	expect_sigterm_stops
}

# paths_config NAME EXPECTED FIELDS...: a config file booting the test
# guest with the extra JSON sections FIELDS is refused within the timeout,
# with exit status 1 and one error line that contains EXPECTED (at level
# Warning: the refusal comes at the start, after Info lines about the host).
paths_config() {
	local name=$1 want=$2
	shift 2
	local extra=""
	local s
	for s in "$@"; do extra+=", $s"; done
	cat > "$T/$name.json" <<JSON
{"boot-source": {"kernel_image_path": "${KERNEL_PATH:-$(realpath "$BUILD/testvm.elf")}"${INITRD_JSON:-}},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64}$extra}
JSON
	run_ember "$name" 20 --no-api --config-file "$T/$name.json" --level Warning
	[ "$STATUS" -ne 124 ] || fail "$name: ember hung (still running after 20 s)"
	expect_status 1
	expect_err "$name" "$want"
	expect_err_lines "$name" 1
}

test_paths_config_file_refuses_fifos() {
	need_kvm || return
	mkfifo "$T/fifo"
	mkdir "$T/dir"
	run_ember cfgfifo 20 --no-api --config-file "$T/fifo"
	[ "$STATUS" -ne 124 ] || fail "ember hung on a FIFO as its config file"
	expect_status 1
	expect_err cfgfifo "config file $T/fifo: is a FIFO, not a regular file"
	expect_err_lines cfgfifo 1

	KERNEL_PATH="$T/fifo" paths_config kernel "kernel $T/fifo: is a FIFO"
	INITRD_JSON=", \"initrd_path\": \"$T/fifo\"" paths_config initrd "initrd $T/fifo: is a FIFO"
	paths_config ro "drive ro: $T/fifo: is a FIFO" \
		"\"drives\": [{\"drive_id\": \"ro\", \"path_on_host\": \"$T/fifo\", \"is_root_device\": false, \"is_read_only\": true}]"
	paths_config rw "drive rw: $T/fifo: is a FIFO" \
		"\"drives\": [{\"drive_id\": \"rw\", \"path_on_host\": \"$T/fifo\", \"is_root_device\": false}]"
	paths_config serial "serial_out_path $T/fifo: is a FIFO" "\"serial\": {\"serial_out_path\": \"$T/fifo\"}"
	paths_config logdir "log_path $T/dir: is a directory" "\"logger\": {\"log_path\": \"$T/dir\"}"
	paths_config metricsdev "metrics_path /dev/null: is a character device" "\"metrics\": {\"metrics_path\": \"/dev/null\"}"
	paths_config vsock "vsock: $T/fifo: is a FIFO, not a socket" "\"vsock\": {\"guest_cid\": 3, \"uds_path\": \"$T/fifo\"}"
	[ -p "$T/fifo" ] || fail "the FIFO given as uds_path was removed"

	printf '{%s}\n' "\"boot-source\": {\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\"}" > "$T/ok.json"
	run_ember logflag 20 --log-path "$T/dir" --no-api --config-file "$T/ok.json"
	expect_status 1
	expect_err logflag "--log-path $T/dir: is a directory, not a regular file or a FIFO"
	expect_err_lines logflag 1
	run_ember metricsflag 20 --metrics-path "$T/dir" --no-api --config-file "$T/ok.json"
	expect_status 1
	expect_err metricsflag "$T/dir: is a directory, not a regular file or a FIFO"
	expect_err_lines metricsflag 1
}

# ember's own API socket path: a live listener whose backlog is full is
# "in use" (a blocking probe there would wait forever, deaf to SIGTERM).
test_paths_busy_api_socket_is_in_use() {
	need_kvm || return
	busy_listener "$T/api.sock" || return
	run_ember busy 20 --api-sock "$T/api.sock"
	kill "$BUSY_PID"
	wait "$BUSY_PID" 2>/dev/null
	[ "$STATUS" -ne 124 ] || fail "ember hung probing a busy API socket"
	expect_status 1
	expect_err busy "Failed to open the API socket at: $T/api.sock. Check that it is not already used."
	expect_err_lines busy 1
}

# A block device is a drive (here a loop device, when losetup works):
# the test guest reads and writes it. A character device is refused
# naming what it is.
test_paths_block_device_drive() {
	need_kvm || return
	paths_config chardrive "drive c: /dev/zero: is a character device, not a regular file or a block device" \
		'"drives": [{"drive_id": "c", "path_on_host": "/dev/zero", "is_root_device": false}]'
	if [ "$(id -u)" != 0 ] || ! command -v losetup > /dev/null; then
		skip "a loop device needs root and losetup"
		return
	fi
	make_testdisk "$T/disk.img"
	make_testdisk "$T/ro.img"
	local dev
	dev=$(losetup -f --show "$T/disk.img" 2>/dev/null) || { skip "losetup could not make a loop device"; return; }
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/testvm.elf")", "boot_args": "testvm.virtio"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
 "drives": [{"drive_id": "testdisk", "path_on_host": "$dev", "is_root_device": false},
            {"drive_id": "rodisk", "path_on_host": "$T/ro.img", "is_root_device": false, "is_read_only": true}]}
JSON
	run_ember blkdev 60 --no-api --config-file "$T/vm.json"
	local written
	written=$(dd if="$dev" bs=512 skip=8 count=1 2>/dev/null | head -c 2 | od -An -tx1 | tr -d ' ')
	losetup -d "$dev"
	expect_status 0
	expect_out blkdev "testvm: PASS virtio.blk.read"
	expect_out blkdev "testvm: PASS virtio.blk.write-read"
	[ "$written" = 0108 ] || fail "the guest's write is not on the block device (sector 8: $written)"
}

# The fault texts Firecracker's clients and tests match on, for paths and
# for what the VM's state allows (each still names the path where there is
# one).
test_paths_fault_texts_match_firecracker() {
	need_kvm || return
	local kernel
	kernel=$(realpath "$BUILD/testvm.elf")
	make_testdisk "$T/disk.img"
	start_api texts || return
	expect_api_t 400 PUT /boot-source '{"kernel_image_path": "foo.bar"}'
	grep -qF "The kernel file cannot be opened: No such file or directory (os error 2)" "$T/resp" &&
		grep -qF "foo.bar" "$T/resp" || fail "missing kernel: $(cat "$T/resp")"
	expect_api_t 400 PUT /boot-source "{\"kernel_image_path\": \"$kernel\", \"initrd_path\": \"$T/no-initrd\"}"
	grep -qF "The initrd file cannot be opened due to invalid path or invalid permissions. No such file or directory (os error 2)" "$T/resp" ||
		fail "missing initrd: $(cat "$T/resp")"
	expect_api_t 204 PUT /boot-source "{\"kernel_image_path\": \"$kernel\", \"boot_args\": \"testvm.hang\"}"
	expect_api_t 204 PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$T/disk.img\", \"is_root_device\": true}"
	expect_api_t 400 PUT /drives/scratch "{\"drive_id\": \"scratch\", \"path_on_host\": \"$T/disk.img\", \"is_root_device\": true}"
	grep -qF "A root block device already exists!" "$T/resp" || fail "second root drive: $(cat "$T/resp")"
	for req in "PATCH /drives/rootfs {\"drive_id\": \"rootfs\", \"path_on_host\": \"$T/disk.img\"}" \
		   "PUT /snapshot/create {\"snapshot_path\": \"$T/s\", \"mem_file_path\": \"$T/m\"}"; do
		read -r method path body <<< "$req"
		expect_api_t 400 "$method" "$path" "$body"
		grep -qF "The requested operation is not supported before starting the microVM." "$T/resp" ||
			fail "$method $path before boot: $(cat "$T/resp")"
	done
	# Firecracker takes any memory size and fails at the start.
	local host_mib=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 ))
	expect_api_t 204 PATCH /machine-config "{\"mem_size_mib\": $((host_mib * 2))}"
	expect_api_t 400 PUT /actions '{"action_type": "InstanceStart"}'
	grep -qF "Invalid Memory Configuration: Cannot create mmap region: Out of memory (os error 12)" "$T/resp" ||
		fail "guest memory beyond the host's: $(cat "$T/resp")"
	expect_api_t 204 PATCH /machine-config '{"mem_size_mib": 64}'
	expect_api_t 204 PUT /actions '{"action_type": "InstanceStart"}'
	expect_api_t 400 PATCH /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "foo.bar"}'
	grep -qF "Error manipulating the backing file: No such file or directory (os error 2) foo.bar" "$T/resp" ||
		fail "PATCH to a missing file: $(cat "$T/resp")"
	expect_api_t 400 PUT /snapshot/create "{\"snapshot_path\": \"$T/s\", \"mem_file_path\": \"$T/m\"}"
	grep -qF "save/restore unavailable while running" "$T/resp" || fail "snapshot of a running VM: $(cat "$T/resp")"
	for req in "PUT /boot-source {\"kernel_image_path\": \"$kernel\"}" \
		   'PUT /machine-config {"vcpu_count": 1, "mem_size_mib": 64}' \
		   'PATCH /machine-config {"vcpu_count": 1}' \
		   "PUT /logger {\"log_path\": \"$T/late.log\"}" \
		   "PUT /metrics {\"metrics_path\": \"$T/late.metrics\"}" \
		   'PUT /actions {"action_type": "InstanceStart"}' \
		   "PUT /snapshot/load {\"snapshot_path\": \"$T/s\", \"mem_file_path\": \"$T/m\"}"; do
		read -r method path body <<< "$req"
		expect_api_t 400 "$method" "$path" "$body"
		grep -qF "The requested operation is not supported after starting the microVM." "$T/resp" ||
			fail "$method $path after boot: $(cat "$T/resp")"
	done
	expect_sigterm_stops
}
