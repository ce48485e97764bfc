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
