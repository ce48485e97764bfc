# virtio-pmem: a host file mapped into guest memory. The test guest reads
# and writes the regions and sends flushes; the API's rules and messages
# are Firecracker's; a Linux guest boots with its root on a read-only pmem
# device (DAX), and three clones restored at once from its snapshot share
# that one file.

# make_pmem FILE SIZE: the test guest's pattern at offset 0, SIZE long.
make_pmem() {
	printf 'ember-testpmem' > "$1"
	truncate -s "$2" "$1"
}

test_pmem_testvm_regions_and_flushes() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	printf 'ember-testdisk\n' > "$T/disk.img"
	truncate -s 1M "$T/disk.img"
	make_pmem "$T/rw.img" 3M   # not 2 MiB-aligned: a 4 MiB region
	make_pmem "$T/ro.img" 2M
	cp "$T/ro.img" "$T/ro.orig"
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/testvm.elf")", "boot_args": "testvm.virtio"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
 "drives": [{"drive_id": "testdisk", "path_on_host": "$T/disk.img", "is_root_device": false}],
 "pmem": [{"id": "rw", "path_on_host": "$T/rw.img"},
          {"id": "ro", "path_on_host": "$T/ro.img", "read_only": true}]}
JSON
	run_ember virtio 60 --no-api --config-file "$T/vm.json" --level Debug
	expect_status 0
	for check in setup read write flush unknown-type malformed-no-answer flush-after-reset \
		     read-only-drops-write read-only-flush; do
		expect_out virtio "testvm: PASS virtio.pmem.$check"
	done
	! grep -q 'testvm: FAIL' "$T/virtio.out" || fail "a check failed: $(grep 'testvm: FAIL' "$T/virtio.out")"
	# Above RAM at 4 GiB, one after the other, 2 MiB-aligned sizes.
	expect_out virtio "testvm: virtio.pmem.region 0x0000000100000000 0x0000000000400000"
	expect_out virtio "testvm: virtio.pmem.region 0x0000000100400000 0x0000000000200000"
	expect_err virtio "pmem ro is read-only: guest write of"
	# The guest's bytes are in the writable file, and two flushes went to
	# the file (the third request answered had an unknown type).
	[ "$(dd if="$T/rw.img" bs=1 skip=4096 count=16 2>/dev/null)" = "written-by-guest" ] ||
		fail "the guest's write is not in the host file"
	expect_err virtio "pmem rw: notifies="
	# The malformed chain set NEEDS_RESET once (its log line may be rate
	# limited after the block device's).
	grep -q "pmem rw: .*failures=1 flush_count=2 fsync_count=2 io_errors=0 invalid=1" "$T/virtio.err" ||
		fail "rw counters: $(grep 'pmem rw:' "$T/virtio.err")"
	grep -q "pmem ro: .*fsync_count=0 .*ro_writes=17" "$T/virtio.err" ||
		fail "ro counters: $(grep 'pmem ro:' "$T/virtio.err")"
	cmp -s "$T/ro.img" "$T/ro.orig" || fail "the read-only file changed"
	[ "$(stat -c %s "$T/rw.img")" -eq $((3 << 20)) ] || fail "the writable file changed size"
}

# Firecracker's rules and messages (test_api.py's test_pmem_api and
# test_pmem_rate_limiter_api, and the pre-boot PATCH of
# test_api_patch_pre_boot), and GET /vm/config's pmem section.
test_pmem_api() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	make_pmem "$T/p.img" 2M
	: > "$T/zero.img"
	start_api papi || return
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.counter=1000\"}"
	expect_api 400 PUT /pmem/pmem '{"id": "pmem"}'
	grep -qF 'An error occurred when deserializing the json body of a request: missing field `path_on_host`' "$T/resp" ||
		fail "missing path_on_host: $(cat "$T/resp")"
	expect_api 400 PUT /pmem/other "{\"id\": \"pmem\", \"path_on_host\": \"$T/p.img\"}"
	grep -qF 'The id from the path does not match the id from the body!' "$T/resp" || fail "ids: $(cat "$T/resp")"
	expect_api 204 PUT /drives/drive "{\"drive_id\": \"drive\", \"path_on_host\": \"$T/p.img\", \"is_root_device\": true}"
	expect_api 400 PUT /pmem/pmem "{\"id\": \"pmem\", \"path_on_host\": \"$T/p.img\", \"root_device\": true}"
	grep -qF 'Attempt to add pmem as a root device while the root device defined as a block device' "$T/resp" ||
		fail "pmem root with a root drive: $(cat "$T/resp")"
	expect_api 204 PUT /drives/drive "{\"drive_id\": \"drive\", \"path_on_host\": \"$T/p.img\", \"is_root_device\": false}"
	expect_api 204 PUT /pmem/pmem "{\"id\": \"pmem\", \"path_on_host\": \"$T/p.img\", \"root_device\": true}"
	expect_api 400 PUT /pmem/pmem2 "{\"id\": \"pmem2\", \"path_on_host\": \"$T/p.img\", \"root_device\": true}"
	grep -qF 'A root pmem device already exist' "$T/resp" || fail "second root pmem: $(cat "$T/resp")"
	expect_api 400 PUT /drives/drive "{\"drive_id\": \"drive\", \"path_on_host\": \"$T/p.img\", \"is_root_device\": true}"
	grep -qF 'Attempt to add block as a root device while the root device defined as a pmem device' "$T/resp" ||
		fail "root drive with a root pmem: $(cat "$T/resp")"
	expect_api 204 PUT /pmem/pmem "{\"id\": \"pmem\", \"path_on_host\": \"$T/p.img\", \"root_device\": false, \"rate_limiter\": {\"bandwidth\": {\"size\": 1000000, \"refill_time\": 100}, \"ops\": {\"size\": 10, \"refill_time\": 1000}}}"
	expect_api 200 GET /vm/config
	grep -qF '"pmem":[{"id":"pmem","path_on_host":"'"$T"'/p.img","root_device":false,"read_only":false,"rate_limiter":{"bandwidth":{"size":1000000,"one_time_burst":null,"refill_time":100},"ops":{"size":10,"one_time_burst":null,"refill_time":1000}}}]' "$T/resp" ||
		fail "GET /vm/config: $(cat "$T/resp")"
	expect_api 204 PUT /pmem/pmem "{\"id\": \"pmem\", \"path_on_host\": \"$T/p.img\"}"
	expect_api 200 GET /vm/config
	grep -qF '"rate_limiter":null}]' "$T/resp" || fail "the rate limiter was not replaced: $(cat "$T/resp")"
	expect_api 400 PATCH /pmem/nonexistent '{"id": "nonexistent", "rate_limiter": {"ops": {"size": 1, "refill_time": 100}}}'
	grep -qF 'The requested operation is not supported before starting the microVM.' "$T/resp" ||
		fail "pre-boot PATCH: $(cat "$T/resp")"
	# A zero-sized file is refused when the VM starts, not before.
	expect_api 204 PUT /pmem/zero "{\"id\": \"zero\", \"path_on_host\": \"$T/zero.img\"}"
	expect_api 400 PUT /actions '{"action_type": "InstanceStart"}'
	grep -qF 'Error backing file size is 0' "$T/resp" || fail "zero-sized file: $(cat "$T/resp")"
	stop_api

	start_api papi2 || return
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.counter=1000\"}"
	expect_api 204 PUT /pmem/pmem0 "{\"id\": \"pmem0\", \"path_on_host\": \"$T/p.img\", \"read_only\": true}"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out papi2 'testvm: count 2' 60
	expect_api 204 PATCH /pmem/pmem0 '{"id": "pmem0", "rate_limiter": {"bandwidth": {"size": 5000, "refill_time": 100}, "ops": {"size": 500, "refill_time": 100}}}'
	expect_api 204 PATCH /pmem/pmem0 '{"id": "pmem0", "rate_limiter": {"ops": {"size": 100, "refill_time": 500}}}'
	expect_api 200 GET /vm/config
	grep -qF '"rate_limiter":{"bandwidth":null,"ops":{"size":100,"one_time_burst":null,"refill_time":500}}' "$T/resp" ||
		fail "GET /vm/config after PATCH: $(cat "$T/resp")"
	expect_api 204 PATCH /pmem/pmem0 '{"id": "pmem0"}'
	expect_api 400 PATCH /pmem/pmem0 '{"id": "pmem0", "path_on_host": "foo", "rate_limiter": {"ops": {"size": 1, "refill_time": 100}}}'
	grep -qF 'unknown field' "$T/resp" || fail "PATCH with path_on_host: $(cat "$T/resp")"
	expect_api 400 PATCH /pmem/nonexistent '{"id": "nonexistent", "rate_limiter": {"ops": {"size": 1, "refill_time": 100}}}'
	grep -qF 'not found' "$T/resp" || fail "PATCH of an unknown device: $(cat "$T/resp")"
	expect_api 400 PUT /pmem/pmem '{"id": "pmem"}'
	expect_api 400 PUT /pmem/late "{\"id\": \"late\", \"path_on_host\": \"$T/p.img\"}"
	grep -qF 'The requested operation is not supported after starting the microVM.' "$T/resp" ||
		fail "post-boot PUT: $(cat "$T/resp")"
	stop_api
}

# A snapshot keeps the region's place and size, and the file is mapped
# again (it is not in the memory file): a file whose size changed since
# is refused with Firecracker's message.
test_pmem_testvm_snapshot_restore() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	make_pmem "$T/p.img" 1M
	start_api psrc || return
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.counter=1000\"}"
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
	expect_api 204 PUT /pmem/p0 "{\"id\": \"p0\", \"path_on_host\": \"$T/p.img\", \"read_only\": true}"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out psrc 'testvm: count 2' 60 || { stop_api; return; }
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/state\", \"mem_file_path\": \"$T/mem\"}"
	stop_api
	[ "$(stat -c %s "$T/mem")" -eq $(((64 << 20) + 4096)) ] || fail "the memory file holds more than RAM"
	local n
	n=$(last_count psrc)
	start_api pdst || return
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}, \"resume_vm\": true}"
	wait_out pdst "testvm: count $((n + 2))" 60
	expect_api 200 GET /vm/config
	grep -qF '"pmem":[{"id":"p0","path_on_host":"'"$T"'/p.img","root_device":false,"read_only":true' "$T/resp" ||
		fail "GET /vm/config after the restore: $(cat "$T/resp")"
	stop_api
	truncate -s 3M "$T/p.img"
	load_fails pbad "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}}" \
		"Restored pmem size 2097152 does not match backing file mapping size 4194304"
}

# The Linux guest's root on a read-only pmem device, mounted with DAX;
# its snapshot restored into three clones at once, all mapping the one
# file, each reading a file of the root as it counts.
test_pmem_linux_root_three_clones() {
	need_kvm || return
	need_file "$BUILD/vmlinux" || return
	need_file "$BUILD/rootfs.ext4" || return
	cp "$BUILD/rootfs.ext4" "$T/root.img"
	cp "$T/root.img" "$T/root.orig"
	start_api lsrc || return
	cat > "$T/boot.json" <<JSON
{"kernel_image_path": "$(realpath "$BUILD/vmlinux")",
 "boot_args": "console=ttyS0 reboot=k panic=1 rootflags=dax ember.cmd=\"grep ' / ' /proc/mounts; i=0; while true; do i=\$((i+1)); echo alive-\$i \$(cat /etc/ember-release); sleep 0.2; done\""}
JSON
	expect_api 204 PUT /boot-source "$(cat "$T/boot.json")"
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 128}'
	expect_api 204 PUT /pmem/rootfs "{\"id\": \"rootfs\", \"path_on_host\": \"$T/root.img\", \"root_device\": true, \"read_only\": true}"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out lsrc 'alive-3 ember rootfs' "$LINUX_TIMEOUT" || { stop_api; return; }
	grep -q 'root=/dev/pmem0 ro' "$T/lsrc.out" || fail "the kernel was not given root=/dev/pmem0 ro"
	grep -qE '^/dev/root / ext4 ro,.*dax' "$T/lsrc.out" ||
		fail "the root is not a read-only DAX mount: $(grep ' / ' "$T/lsrc.out")"
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/state\", \"mem_file_path\": \"$T/mem\"}"
	local n
	n=$(grep -oE 'alive-[0-9]+' "$T/lsrc.out" | tail -1 | cut -d- -f2)
	stop_api
	[ "$(stat -c %s "$T/mem")" -eq $(((128 << 20) + 4096)) ] || fail "the memory file holds more than RAM"

	local k pids=() loads=()
	for k in 1 2 3; do
		"$EMBER" --api-sock "$T/c$k.sock" > "$T/c$k.out" 2> "$T/c$k.err" < /dev/null &
		pids+=($!)
	done
	for k in 1 2 3; do
		local i
		for i in $(seq 100); do [ -S "$T/c$k.sock" ] && break; sleep 0.05; done
	done
	for k in 1 2 3; do
		API_SOCK="$T/c$k.sock" api PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}, \"resume_vm\": true}" > "$T/c$k.status" &
		loads+=($!)
	done
	wait "${loads[@]}"
	for k in 1 2 3; do
		[ "$(cat "$T/c$k.status")" = 204 ] || fail "clone $k: load answered $(cat "$T/c$k.status")"
	done
	for k in 1 2 3; do
		wait_out "c$k" "alive-$((n + 3)) ember rootfs" 120
		local first
		first=$(grep -oE 'alive-[0-9]+' "$T/c$k.out" | head -1 | cut -d- -f2)
		[ "$first" = $((n + 1)) ] || fail "clone $k resumed at $first, expected $((n + 1))"
		# All three map the one file.
		grep -q "$T/root.img" "/proc/${pids[$((k - 1))]}/maps" || fail "clone $k does not map the root file"
	done
	kill "${pids[@]}" 2>/dev/null
	wait "${pids[@]}" 2>/dev/null
	cmp -s "$T/root.img" "$T/root.orig" || fail "the read-only root file changed"
}

# A writable pmem root: the guest's writes (which Linux's pmem driver
# follows with clwb, emulated by ember on kvm_pvm) and its sync (flush
# requests) end in the host file.
test_pmem_linux_rw_root_writes_reach_the_file() {
	need_kvm || return
	need_file "$BUILD/vmlinux" || return
	need_file "$BUILD/rootfs.ext4" || return
	command -v debugfs > /dev/null || { skip "needs debugfs (e2fsprogs)"; return; }
	cp "$BUILD/rootfs.ext4" "$T/root.img"
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/vmlinux")",
  "boot_args": "console=ttyS0 reboot=k panic=1 quiet rootflags=dax ember.cmd=\"grep ' / ' /proc/mounts; echo written-in-guest > /root/x; sync; echo guest-synced\""},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
 "pmem": [{"id": "rootfs", "path_on_host": "$T/root.img", "root_device": true}]}
JSON
	run_ember rw "$LINUX_TIMEOUT" --no-api --config-file "$T/vm.json" --level Debug
	expect_status 0
	expect_out rw "guest-synced"
	grep -qE '^/dev/root / ext4 rw,.*dax' "$T/rw.out" || fail "the root is not a writable DAX mount: $(grep ' / ' "$T/rw.out")"
	grep -q "pmem rootfs: .*fsync_count=[1-9]" "$T/rw.err" || fail "no flush reached the file: $(grep 'pmem rootfs' "$T/rw.err")"
	[ "$(debugfs -R 'cat /root/x' "$T/root.img" 2>/dev/null)" = written-in-guest ] ||
		fail "the guest's file is not in the host file"
}
