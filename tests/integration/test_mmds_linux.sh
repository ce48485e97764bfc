# MMDS from the guest's side: a Linux guest reaches the metadata service
# over its virtio-net interface and fetches it with busybox wget
# (mmds/guest.sh prints one "mmds: name=value" line per check). One boot
# for V2 (tokens, expiry, refusals, plain text and JSON, data set before
# boot and patched after), whose snapshot is restored for the check after
# a restore; one boot for V1, which also floods the responder while it
# pings the host through the tap. The interface's tap lives in a network
# namespace of its own; MMDS traffic never reaches it.

LINUX_TIMEOUT=${LINUX_TIMEOUT:-900}

MMDS_DATA='{"latest": {"meta-data": {"ami-id": "ami-12345678", "reservation-id": "r-fea54097", "local-hostname": "ip-10-0-0-2"}}}'

# The value of the guest's "mmds: NAME=" line in $T/NAME.out.
mmds_value() {
	tr -d '\r' < "$T/$1.out" | sed -n "s/^mmds: $2=//p" | tail -1
}

# expect_mmds OUT NAME VALUE: the guest printed exactly that.
expect_mmds() {
	local got
	got=$(mmds_value "$1" "$2")
	[ "$got" = "$3" ] || fail "$1: guest's $2 is '$got', expected '$3'"
}

# expect_mmds_match OUT NAME REGEX
expect_mmds_match() {
	local got
	got=$(mmds_value "$1" "$2")
	echo "$got" | grep -qE -- "$3" || fail "$1: guest's $2 is '$got', expected to match '$3'"
}

# mmds_rootfs VERSION: $T/root.ext4, the root image with guest.sh as
# /mmds.sh, and $T/boot.json booting it to run "sh /mmds.sh VERSION".
mmds_rootfs() {
	need_file "$BUILD/vmlinux" && need_file "$BUILD/rootfs.ext4" || return 1
	command -v debugfs > /dev/null || { fail "debugfs is missing (e2fsprogs)"; return 1; }
	cp --sparse=always "$BUILD/rootfs.ext4" "$T/root.ext4"
	debugfs -w -R "write $(dirname "${BASH_SOURCE[0]}")/mmds/guest.sh mmds.sh" "$T/root.ext4" > /dev/null 2>&1 &&
		debugfs -R "stat mmds.sh" "$T/root.ext4" 2>/dev/null | grep -q 'Size: [1-9]' ||
		{ fail "cannot put the guest script into the root image"; return 1; }
	cat > "$T/boot.json" <<JSON
{"kernel_image_path": "$(realpath "$BUILD/vmlinux")",
 "boot_args": "console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"sh /mmds.sh $1\""}
JSON
}

# mmds_configure VERSION: the VM of $API_SOCK, with eth0 on tap0 answering MMDS.
mmds_configure() {
	expect_api 204 PUT /boot-source "$(cat "$T/boot.json")"
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 128}'
	expect_api 204 PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$T/root.ext4\", \"is_root_device\": true, \"is_read_only\": false}"
	expect_api 204 PUT /network-interfaces/eth0 '{"iface_id": "eth0", "guest_mac": "06:00:0a:00:00:02", "host_dev_name": "tap0"}'
	expect_api 204 PUT /mmds/config "{\"version\": \"$1\", \"network_interfaces\": [\"eth0\"]}"
	expect_api 204 PUT /mmds "$MMDS_DATA"
}

# metric FILE GROUP KEY: the total of a count over all metrics lines
# (each line holds what happened since the one before).
metric() {
	python3 -c "import json, sys; print(sum(json.loads(l)['$2']['$3'] for l in open(sys.argv[1])))" "$1"
}

test_mmds_linux_v2_tokens_patch_and_restore() {
	need_kvm || return
	mmds_rootfs V2 || return
	need_netns && tap_netns ember-mmds || return
	API_PREFIX="ip netns exec $NS"
	start_api mmds2 || { ip netns del "$NS"; return; }
	mmds_configure V2
	expect_api 204 PUT /metrics "{\"metrics_path\": \"$T/mmds2.metrics\"}"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	if wait_out mmds2 '^mmds: phase1-done' "$LINUX_TIMEOUT"; then
		expect_api 204 PATCH /mmds '{"patched": "after-boot"}'
		wait_out mmds2 '^mmds: ready-for-snapshot' 300
	fi
	# What the guest saw on the first boot.
	local retries
	retries=$(grep -c '^mmds: token retry' "$T/mmds2.out")
	[ "$retries" = 0 ] || echo "    the guest's nc asked $retries more times for a token (see mmds/guest.sh)"
	expect_mmds mmds2 version V2
	expect_mmds_match mmds2 token-length '^[1-9][0-9]+$'
	expect_mmds mmds2 ami ami-12345678
	expect_mmds mmds2 list 'ami-id,local-hostname,reservation-id'
	expect_mmds mmds2 json '{"ami-id":"ami-12345678","local-hostname":"ip-10-0-0-2","reservation-id":"r-fea54097"}'
	expect_mmds_match mmds2 no-token '401'
	expect_mmds_match mmds2 wrong-token '401'
	expect_mmds_match mmds2 ttl-0 '^HTTP/1.1 400'
	expect_mmds mmds2 short-lived ami-12345678
	expect_mmds_match mmds2 expired '401'
	expect_mmds mmds2 patched after-boot
	# The responder's counters and the interface's: MMDS traffic went
	# through eth0's receive queue, none of it to the tap.
	expect_api 204 PUT /actions '{"action_type": "FlushMetrics"}'
	local k
	for k in rx_accepted rx_count tx_frames connections_created connections_destroyed; do
		[ "$(metric "$T/mmds2.metrics" mmds $k)" -gt 0 ] 2>/dev/null || fail "mmds.$k is not counted"
	done
	[ "$(metric "$T/mmds2.metrics" net_eth0 rx_packets_count)" -gt 0 ] 2>/dev/null ||
		fail "the answers did not count as eth0's receive traffic"
	[ "$(metric "$T/mmds2.metrics" mmds rx_accepted_err)" -eq 0 ] 2>/dev/null ||
		fail "the guest's frames were dropped as malformed"

	expect_api 204 PATCH /vm '{"state": "Paused"}'
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/mstate\", \"mem_file_path\": \"$T/mmem\"}"
	kill -9 "$API_PID"
	wait "$API_PID" 2>/dev/null

	start_api mmdsr || { ip netns del "$NS"; return; }
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/mstate\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mmem\"}, \"resume_vm\": true}"
	expect_api 204 PATCH /mmds '{"restored": "yes"}'
	wait_out mmdsr '^mmds: done' 300
	expect_mmds mmdsr restored yes
	expect_mmds mmdsr after-restore 'ami-12345678 after-boot'
	expect_mmds_match mmdsr after-restore-no-token '401'
	expect_mmds_match mmdsr after-restore-old-token '401'
	stop_api
	unset API_PREFIX
	ip netns del "$NS"
}

test_mmds_linux_v1() {
	need_kvm || return
	mmds_rootfs V1 || return
	need_netns && tap_netns ember-mmds || return
	API_PREFIX="ip netns exec $NS"
	start_api mmds1 || { ip netns del "$NS"; return; }
	mmds_configure V1
	expect_api 204 PUT /metrics "{\"metrics_path\": \"$T/mmds1.metrics\"}"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	# While the flood holds its connections, the table is full and no
	# fuller (the guest says "flooding" once it sees 30 of its clients
	# established and has started 5 more).
	if wait_out mmds1 '^mmds: flooding' "$LINUX_TIMEOUT"; then
		local live=0 i
		for i in $(seq 60); do
			expect_api 204 PUT /actions '{"action_type": "FlushMetrics"}'
			live=$(( $(metric "$T/mmds1.metrics" mmds connections_created) - $(metric "$T/mmds1.metrics" mmds connections_destroyed) ))
			[ "$live" -le 30 ] || break
			[ "$live" -eq 30 ] && break
			sleep 0.5
		done
		[ "$live" -eq 30 ] || fail "$live MMDS connections live during the flood, expected the table's 30"
	fi
	wait_out mmds1 '^mmds: done' 300
	expect_mmds mmds1 version V1
	expect_mmds mmds1 v1-plain ami-12345678
	expect_mmds mmds1 v1-no-token served
	expect_mmds mmds1 v1-wrong-token served
	expect_mmds mmds1 v1-with-token ami-12345678
	expect_mmds mmds1 v1-json '{"ami-id":"ami-12345678","local-hostname":"ip-10-0-0-2","reservation-id":"r-fea54097"}'
	expect_mmds mmds1 flood-ping ok
	expect_mmds mmds1 after-flood ami-12345678
	# The guest reboots when done: ember exits, writing its last metrics.
	local i
	for i in $(seq 600); do kill -0 "$API_PID" 2>/dev/null || break; sleep 0.1; done
	stop_api
	[ "$(metric "$T/mmds1.metrics" mmds rx_no_token)" -gt 0 ] 2>/dev/null || fail "mmds.rx_no_token is not counted"
	[ "$(metric "$T/mmds1.metrics" net_eth0 tx_packets_count)" -gt 0 ] 2>/dev/null ||
		fail "the pings did not reach the tap"
	unset API_PREFIX
	ip netns del "$NS"
}
