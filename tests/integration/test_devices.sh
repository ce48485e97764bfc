# virtio devices: the test guest drives each one directly (good requests
# and malformed chains); Linux uses them for real.

# A 1 MiB disk whose first sector starts with "ember-testdisk".
make_testdisk() {
	printf 'ember-testdisk\n' > "$1"
	truncate -s 1M "$1"
}

# Allocated size of a file in KiB (sparse files count only what is there).
allocated_kib() {
	du -k "$1" | cut -f1
}

need_netns() {
	if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || [ ! -c /dev/net/tun ]; then
		skip "needs root, iproute2 and /dev/net/tun for a network namespace and tap"
		return 1
	fi
}

# tap_netns NAME: NS, a network namespace NAME-$$ with tap0 up (the host
# at 10.0.0.1/24), for an ember to run in.
tap_netns() {
	NS=$1-$$
	ip netns add "$NS" || { fail "ip netns add $NS"; return 1; }
	ip netns exec "$NS" ip tuntap add dev tap0 mode tap &&
		ip netns exec "$NS" ip addr add 10.0.0.1/24 dev tap0 &&
		ip netns exec "$NS" ip link set tap0 up ||
		{ fail "tap setup in $NS"; ip netns del "$NS"; return 1; }
}

test_testvm_virtio_devices() {
	need_kvm || return
	make_testdisk "$T/disk.img"
	make_testdisk "$T/ro.img"
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/testvm.elf")", "boot_args": "testvm.virtio"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
 "drives": [{"drive_id": "testdisk", "path_on_host": "$T/disk.img", "is_root_device": false},
            {"drive_id": "rodisk", "path_on_host": "$T/ro.img", "is_root_device": false, "is_read_only": true}],
 "vsock": {"guest_cid": 3, "uds_path": "$T/v.sock"},
 "entropy": {}}
JSON
	run_ember virtio 60 --no-api --config-file "$T/vm.json" --level Debug
	expect_status 0
	for check in blk.read blk.write-read blk.get-id blk.beyond-capacity blk.read-only-refuses-write \
		     blk.malformed-loop blk.malformed-address blk.malformed-zero-length \
		     blk.malformed-huge-length blk.malformed-avail-index blk.malformed-head \
		     blk.malformed-next blk.works-after-reset rng.read rng.malformed-zero-length \
		     vsock.malformed-short-header; do
		expect_out virtio "testvm: PASS virtio.$check"
	done
	expect_out virtio "testvm: done 17 passed 0 failed"
	expect_err virtio "virtio block@0xc0001000: malformed request chain; device needs reset"
	# The write went to the host file, at sector 8.
	[ "$(dd if="$T/disk.img" bs=512 skip=8 count=1 2>/dev/null | head -c 2 | od -An -tx1 | tr -d ' ')" = "0108" ] ||
		fail "the guest's write is not in the host file"
	make_testdisk "$T/reference.img"
	cmp -s "$T/ro.img" "$T/reference.img" || fail "the read-only drive's file changed"
}

# Bytes read through a drive limited to 1 MiB/s, in a window timed on the
# host, cannot exceed the bucket plus what refills in that window (an
# upper bound only: a slow machine moves fewer bytes, never more).
test_testvm_blk_rate_limit() {
	need_kvm || return
	truncate -s 64M "$T/big.img"
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/testvm.elf")", "boot_args": "testvm.blkbench"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
 "drives": [{"drive_id": "slow", "path_on_host": "$T/big.img", "is_root_device": false,
             "rate_limiter": {"bandwidth": {"size": 1048576, "refill_time": 1000}}}]}
JSON
	"$EMBER" --no-api --config-file "$T/vm.json" --level Debug > "$T/rl.out" 2> "$T/rl.err" < /dev/null &
	local pid=$! i
	for i in $(seq 300); do
		grep -q "blkbench start" "$T/rl.out" && break
		sleep 0.1
	done
	local start=$(date +%s%N)
	sleep 3
	kill -TERM $pid
	wait $pid
	local window_ms=$(( ($(date +%s%N) - start) / 1000000 ))
	local bytes=$(grep -o "block slow: .*" "$T/rl.err" | grep -o "read_bytes=[0-9]*" | cut -d= -f2)
	[ -n "$bytes" ] || { fail "no block counters at exit"; return; }
	# 1 MiB in the full bucket, plus 1 MiB per second of the window (+1 s for
	# the time before the window started).
	local allowed=$(( 1048576 + 1048576 * (window_ms + 1000) / 1000 ))
	[ "$bytes" -le "$allowed" ] || fail "read $bytes bytes in ${window_ms} ms; the limiter allows $allowed"
	[ "$bytes" -gt 0 ] || fail "nothing was read"
	grep -q "throttled=[1-9]" "$T/rl.err" || fail "the limiter never held a request back"
	grep -q "blkbench done" "$T/rl.out" && fail "the whole 64 MiB went through: not limited"
}

# Two boots of Linux with an ext4 root on virtio-blk: a file from the
# image is there, a write survives the reboot, a read-only drive refuses
# writes, and fstrim gives freed blocks back to the (sparse) host file.
test_linux_blk_root_persist_readonly_discard() {
	need_kvm || return
	need_file "$BUILD/rootfs.ext4" || return
	cp --sparse=always "$BUILD/rootfs.ext4" "$T/root.ext4"
	cp --sparse=always "$BUILD/rootfs.ext4" "$T/ro.ext4"
	cat > "$T/a.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/vmlinux")",
  "boot_args": "console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"cat /etc/ember-release; echo note-1729 > /root/note; dd if=/dev/zero of=/root/fill bs=1M count=8 2>/dev/null; sync; mount -o ro /dev/vdb /mnt && cat /mnt/etc/ember-release; if touch /mnt/x 2>/dev/null || dd if=/dev/zero of=/dev/vdb bs=4k count=1 2>/dev/null; then echo ro-write-allowed; else echo ro-write-refused; fi\""},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
 "drives": [{"drive_id": "rootfs", "path_on_host": "$T/root.ext4", "is_root_device": true, "io_engine": "Async"},
            {"drive_id": "ro", "path_on_host": "$T/ro.ext4", "is_root_device": false, "is_read_only": true}]}
JSON
	run_ember a $LINUX_TIMEOUT --no-api --config-file "$T/a.json"
	expect_status 0
	expect_out a "ember rootfs"
	expect_out a "ro-write-refused"
	expect_out a "ember-init: command exited with status 0"
	local full=$(allocated_kib "$T/root.ext4")

	cat > "$T/b.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/vmlinux")",
  "boot_args": "console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"cat /root/note; rm /root/fill; sync; fstrim -v /\""},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
 "drives": [{"drive_id": "rootfs", "path_on_host": "$T/root.ext4", "is_root_device": true, "io_engine": "Sync"}]}
JSON
	run_ember b $LINUX_TIMEOUT --no-api --config-file "$T/b.json"
	expect_status 0
	expect_out b "note-1729"
	expect_out b "bytes trimmed"
	local trimmed=$(allocated_kib "$T/root.ext4")
	[ "$trimmed" -le $((full - 6000)) ] ||
		fail "host file still holds ${trimmed} KiB after fstrim (${full} KiB before; 8 MiB freed)"
	cmp -s "$T/ro.ext4" "$BUILD/rootfs.ext4" || fail "the read-only image changed"
}

# A network namespace with a tap of its own: the test guest sends a frame
# and breaks a transmit chain; Linux pings the host and the host pings it.
test_linux_net_ping_both_ways() {
	need_kvm || return
	need_netns || return
	local ns=ember-it-$$
	ip netns add $ns || { fail "ip netns add"; return; }
	ip netns exec $ns ip tuntap add dev tap0 mode tap &&
	ip netns exec $ns ip addr add 172.30.0.1/24 dev tap0 &&
	ip netns exec $ns ip link set tap0 up &&
	ip netns exec $ns ip link set lo up || { fail "tap setup"; ip netns del $ns; return; }

	cat > "$T/tv.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/testvm.elf")", "boot_args": "testvm.virtio"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
 "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:1e:00:02"}]}
JSON
	ip netns exec $ns "$EMBER" --no-api --config-file "$T/tv.json" > "$T/tv.out" 2> "$T/tv.err" < /dev/null
	grep -qF "testvm: PASS virtio.net.transmit" "$T/tv.out" || fail "test guest could not transmit"
	grep -qF "testvm: PASS virtio.net.malformed-writable-tx" "$T/tv.out" || fail "malformed tx not caught"

	cp --sparse=always "$BUILD/rootfs.ext4" "$T/root.ext4"
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/vmlinux")",
  "boot_args": "console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"ip addr add 172.30.0.2/24 dev eth0; ip link set eth0 up; ping -c 3 -W 5 172.30.0.1 && echo guest-ping-ok; echo guest-net-up; sleep 15\""},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
 "drives": [{"drive_id": "rootfs", "path_on_host": "$T/root.ext4", "is_root_device": true}],
 "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:1e:00:02"}]}
JSON
	ip netns exec $ns "$EMBER" --no-api --config-file "$T/vm.json" > "$T/net.out" 2> "$T/net.err" < /dev/null &
	local pid=$! i
	for i in $(seq $((LINUX_TIMEOUT * 10))); do
		grep -q "guest-net-up" "$T/net.out" && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	ip netns exec $ns busybox ping -c 3 -W 5 172.30.0.2 > "$T/hostping.out" 2>&1 ||
		fail "the host could not ping the guest"
	wait $pid
	STATUS=$?
	ip netns del $ns
	expect_status 0
	expect_out net "guest-ping-ok"
}

# vsock both ways through the Unix socket, and the entropy device.
test_linux_vsock_echo_and_hwrng() {
	need_kvm || return
	command -v socat >/dev/null || { fail "socat is missing (make deps)"; return; }
	cp --sparse=always "$BUILD/rootfs.ext4" "$T/root.ext4"
	local uds="$T/v.sock"
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/vmlinux")",
  "boot_args": "console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"cat /sys/class/misc/hw_random/rng_current; dd if=/dev/hwrng bs=64 count=1 2>/dev/null | od -An -tx1 | head -1; ember-vsock listen 5000 & sleep 1; echo guest-listening; ember-vsock send 2 6000 hello-from-guest; wait\""},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
 "drives": [{"drive_id": "rootfs", "path_on_host": "$T/root.ext4", "is_root_device": true}],
 "vsock": {"guest_cid": 3, "uds_path": "$uds"},
 "entropy": {}}
JSON
	socat UNIX-LISTEN:"${uds}_6000",fork EXEC:cat &
	local echo_pid=$!
	"$EMBER" --no-api --config-file "$T/vm.json" --level Debug > "$T/vs.out" 2> "$T/vs.err" < /dev/null &
	local pid=$! i
	for i in $(seq $((LINUX_TIMEOUT * 10))); do
		grep -q "guest-listening" "$T/vs.out" && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	(printf 'CONNECT 5000\nhello-from-host\n'; sleep 3) | socat -t 10 - UNIX-CONNECT:"$uds" > "$T/host.out" 2>&1
	wait $pid
	STATUS=$?
	kill $echo_pid 2>/dev/null
	wait $echo_pid 2>/dev/null
	expect_status 0
	grep -q "^OK [0-9]*$" "$T/host.out" || fail "host did not get OK <port>"
	grep -q "^hello-from-host$" "$T/host.out" || fail "host->guest echo missing"
	expect_out vs "hello-from-guest"
	expect_out vs "virtio_rng.0"
	# (the guest's console ends lines with CR LF)
	tr -d '\r' < "$T/vs.out" | grep -qE "^ ([0-9a-f]{2} ){15}[0-9a-f]{2}$" || fail "no bytes from /dev/hwrng"
	grep -o "rng entropy: .*" "$T/vs.err" | grep -q "bytes=[1-9]" || fail "the entropy device served nothing"
	[ ! -e "$uds" ] || fail "ember left its vsock socket behind"
}

# ---- network interfaces: Firecracker's limits and rules ----

# netns_with_taps NS N [OPTIONS]: a network namespace NS holding taps
# tap0..tap<N-1> (ip tuntap OPTIONS, such as multi_queue).
netns_with_taps() {
	local ns=$1 n=$2 i
	shift 2
	ip netns add "$ns" || { fail "ip netns add $ns"; return 1; }
	for i in $(seq 0 $((n - 1))); do
		ip netns exec "$ns" ip tuntap add dev "tap$i" mode tap "$@" ||
			{ fail "ip tuntap add tap$i"; ip netns del "$ns"; return 1; }
	done
}

# start_api_in NS NAME [ARGS...]: start_api inside the network namespace NS.
start_api_in() {
	local ns=$1
	shift
	API_PREFIX="ip netns exec $ns" start_api "$@"
}

# expect_fault TEXT: the last answer's fault_message holds TEXT.
expect_fault() {
	grep -qF -- "$1" "$T/resp" || fail "the answer lacks '$1': $(cat "$T/resp")"
}

# As many devices as Firecracker takes on x86 (17, one GSI each): a drive
# and 16 network interfaces on 16 taps boot, and the test guest finds and
# uses them; one interface more is accepted by PUT and refused at
# InstanceStart with Firecracker's message.
test_testvm_max_network_interfaces() {
	need_kvm || return
	need_netns || return
	local ns=ember-it-max-$$ i nets="" sep=""
	netns_with_taps $ns 17 || return
	make_testdisk "$T/disk.img"
	for i in $(seq 0 15); do
		nets+="$sep{\"iface_id\": \"eth$i\", \"host_dev_name\": \"tap$i\", \"guest_mac\": \"06:00:00:00:00:$(printf %02x $i)\"}"
		sep=", "
	done
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/testvm.elf")", "boot_args": "testvm.virtio"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
 "drives": [{"drive_id": "rootfs", "path_on_host": "$T/disk.img", "is_root_device": true}],
 "network-interfaces": [$nets]}
JSON
	ip netns exec $ns timeout 120 "$EMBER" --no-api --config-file "$T/vm.json" > "$T/max.out" 2> "$T/max.err" < /dev/null
	STATUS=$?
	expect_status 0
	expect_out max "testvm: virtio devices 17"
	expect_out max "testvm: PASS virtio.blk.read"
	expect_out max "testvm: PASS virtio.net.transmit"

	start_api_in $ns over || { ip netns del $ns; return; }
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.hang\"}"
	expect_api 204 PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$T/disk.img\", \"is_root_device\": true}"
	for i in $(seq 0 16); do
		expect_api 204 PUT /network-interfaces/eth$i "{\"iface_id\": \"eth$i\", \"host_dev_name\": \"tap$i\"}"
	done
	expect_api 400 PUT /actions '{"action_type": "InstanceStart"}'
	expect_fault "Could not allocate GSI: The requested resource is not available."
	stop_api
	ip netns del $ns
}

# Firecracker takes a multicast guest MAC as given (the guest decides what
# to make of it), advertises an "mtu" to the guest (VIRTIO_NET_F_MTU) and
# returns it in GET /vm/config; an MTU below 68 is refused.
test_testvm_net_multicast_mac_and_mtu() {
	need_kvm || return
	need_netns || return
	local ns=ember-it-mtu-$$
	netns_with_taps $ns 2 || return
	start_api_in $ns mtu || { ip netns del $ns; return; }
	expect_api 400 PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "tap0", "mtu": 67}'
	expect_fault "Could not create the network device: MTU 67 is out of range [68, 65535]"
	expect_api 204 PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "07:00:00:00:00:01", "mtu": 9000}'
	expect_api 200 GET /vm/config
	grep -qF '"guest_mac":"07:00:00:00:00:01"' "$T/resp" && grep -qF '"mtu":9000' "$T/resp" ||
		fail "GET /vm/config: $(cat "$T/resp")"
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.virtio\"}"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out mtu "testvm: done" 60
	expect_out mtu "testvm: virtio.net.mtu 9000"
	expect_out mtu "testvm: PASS virtio.net.transmit"
	wait "$API_PID" 2>/dev/null

	# Without an "mtu", no VIRTIO_NET_F_MTU.
	start_api_in $ns nomtu || { ip netns del $ns; return; }
	expect_api 204 PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "tap1"}'
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.virtio\"}"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out nomtu "testvm: done" 60
	expect_out nomtu "testvm: virtio.net.mtu none"
	wait "$API_PID" 2>/dev/null
	ip netns del $ns
}

# A network interface is checked when it is configured, as Firecracker
# creates the device then: a multi-queue tap, a tap another interface
# holds and a MAC another interface has are refused with Firecracker's
# messages; a replacement refused for its tap drops the interface it
# replaced, as Firecracker's does.
test_net_put_refusals_match_firecracker() {
	need_netns || return
	local ns=ember-it-mq-$$
	netns_with_taps $ns 2 || return
	ip netns exec $ns ip tuntap add dev mq0 mode tap multi_queue || { fail "multi_queue tap"; ip netns del $ns; return; }
	start_api_in $ns refuse || { ip netns del $ns; return; }
	expect_api 400 PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "mq0", "guest_mac": "AA:FC:00:00:00:01"}'
	expect_fault "Could not create the network device: Open tap device failed: Error while creating ifreq structure: Invalid argument (os error 22). Invalid TUN/TAP Backend provided by mq0. Check our documentation on setting up the network devices."
	expect_api 204 PUT /network-interfaces/1 '{"iface_id": "1", "host_dev_name": "tap0", "guest_mac": "06:00:00:00:00:01"}'
	expect_api 204 PUT /network-interfaces/2 '{"iface_id": "2", "host_dev_name": "tap1", "guest_mac": "07:00:00:00:00:01"}'
	expect_api 400 PUT /network-interfaces/2 '{"iface_id": "2", "host_dev_name": "tap1", "guest_mac": "06:00:00:00:00:01"}'
	expect_fault "The MAC address is already in use: 06:00:00:00:00:01"
	expect_api 400 PUT /network-interfaces/1 '{"iface_id": "1", "host_dev_name": "tap1", "guest_mac": "06:00:00:00:00:01"}'
	expect_fault "Could not create the network device"
	expect_api 204 PUT /network-interfaces/2 '{"iface_id": "2", "host_dev_name": "tap1", "guest_mac": "08:00:00:00:00:01"}'
	# As in Firecracker, the failed replacement of "1" (its tap was taken)
	# dropped "1": its MAC is free for another interface.
	expect_api 204 PUT /network-interfaces/3 '{"iface_id": "3", "host_dev_name": "tap0", "guest_mac": "06:00:00:00:00:01"}'
	expect_api 200 GET /vm/config
	local ids
	ids=$(python3 -c 'import json,sys; print(",".join(n["iface_id"] for n in json.load(open(sys.argv[1]))["network-interfaces"]))' "$T/resp")
	[ "$ids" = 2,3 ] || fail "interfaces after the failed replacement: $ids"
	stop_api
	ip netns del $ns
}

# ---- the serial console and snapshot loads ----

# Firecracker loads a snapshot after PUT /serial (like the logger and
# metrics, the console is not part of what a boot configures): the
# restored guest writes to the serial_out_path given. Anything a boot uses
# (here a boot source) refuses a later load with Firecracker's message,
# even when that PUT failed. --describe-snapshot
# prints the version --snapshot-version does for a state file ember wrote.
test_snapshot_load_after_serial() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	testvm_snapshot || return
	local n=$COUNT want state backend
	start_api serial || return
	expect_api 204 PUT /serial "{\"serial_out_path\": \"$T/console.out\"}"
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}, \"resume_vm\": true}"
	local i
	for i in $(seq 600); do
		grep -q "testvm: count $((n + 2))" "$T/console.out" 2>/dev/null && break
		sleep 0.1
	done
	grep -q "testvm: count $((n + 2))" "$T/console.out" 2>/dev/null ||
		fail "the restored guest's console did not reach $T/console.out"
	stop_api

	start_api used || return
	expect_api 400 PUT /boot-source "{\"kernel_image_path\": \"$T/no-kernel\"}"
	expect_api 400 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}}"
	expect_fault "Loading a microVM snapshot not allowed after configuring boot-specific resources."
	stop_api

	# Firecracker's fault texts for state and memory files that do not
	# load (ember exits after each, as Firecracker).
	: > "$T/empty.state"
	local mem="{\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}" c k=0
	for c in "$T/empty.state|$mem|Load snapshot error: Failed to restore from snapshot: Failed to get snapshot state from file: IO Error: File too short to contain CRC" \
		 "$T/missing.state|$mem|Load snapshot error: Failed to restore from snapshot: Failed to get snapshot state from file: Failed to open snapshot file: No such file or directory (os error 2)" \
		 "$T/state|{\"backend_type\": \"File\", \"backend_path\": \"$T/missing.mem\"}|Load snapshot error: Failed to restore from snapshot: Failed to load guest memory: Error creating guest memory from file: Failed to load guest memory: No such file or directory (os error 2)"; do
		IFS='|' read -r state backend want <<< "$c"
		load_fails bad$((k++)) "{\"snapshot_path\": \"$state\", \"mem_backend\": $backend}" "$want"
	done

	want=$("$EMBER" --snapshot-version)
	[ "$("$EMBER" --describe-snapshot "$T/state")" = "$want" ] ||
		fail "--describe-snapshot $T/state does not print $want"
}
