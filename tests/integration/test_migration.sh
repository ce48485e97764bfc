# Live migration between two embers (vmm/migration/): the counting test
# guest, writing pages as it counts (testvm.dirty: a lost page says "FAIL
# dirty memory"), moves to an ember started with --migration-listen and
# counts on from where it stopped. Peers that break the stream or the
# conversation on purpose (migration/peer.py) show what each side does
# then: the source's VM runs on as it was until its state is sent, and a
# destination refuses a bad stream with its reason and exits.

MIG_PEER="$(dirname "${BASH_SOURCE[0]}")/migration/peer.py"

# mig_source NAME BOOT_ARGS [MACHINE_JSON]: SRC_SOCK, an ember running
# the counting test guest (dirty tracking on unless MACHINE_JSON says),
# once it has counted to 3.
mig_source() {
	local machine=${3:-'{"vcpu_count": 1, "mem_size_mib": 64, "track_dirty_pages": true}'}
	start_api "$1" || return 1
	SRC_SOCK=$API_SOCK SRC_PID=$API_PID
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.counter=1000 $2\"}"
	expect_api 204 PUT /machine-config "$machine"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out "$1" 'testvm: count 3([^0-9]|$)' 60
}

# mig_dest NAME: DST_SOCK, an ember waiting for a VM on $T/NAME.mig.
mig_dest() {
	start_api "$1" --migration-listen "unix:$T/$1.mig" || return 1
	DST_SOCK=$API_SOCK DST_PID=$API_PID
}

# mig_field SOCK KEY: a field of GET /ember/migration there.
mig_field() {
	API_SOCK=$1 api GET /ember/migration > /dev/null
	python3 -c "import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ''))" "$T/resp" "$2"
}

# mig_wait SOCK STATE SECONDS: until the migration there is in STATE.
mig_wait() {
	local i
	for i in $(seq $(($3 * 10))); do
		[ "$(mig_field "$1" state)" = "$2" ] && return 0
		sleep 0.1
	done
	fail "the migration is '$(mig_field "$1" state)' after $3 s, not '$2' ($(cat "$T/resp"))"
	return 1
}

# counts_on NAME: the guest of NAME counts past where it is now.
counts_on() {
	local from
	from=$(last_count "$1")
	wait_out "$1" "testvm: count $((from + 2))([^0-9]|\$)" 30
}

# counted_on_at DST SRC: the guest now at DST counts on from the last
# number it printed at SRC, every page of its memory right.
counted_on_at() {
	wait_out "$1" 'testvm: count [0-9]+' 30 || return
	[ "$(first_count "$1")" = $(($(last_count "$2") + 1)) ] ||
		fail "the source counted to $(last_count "$2"), the destination went on from $(first_count "$1")"
	counts_on "$1"
	grep -q FAIL "$T/$1.out" && fail "destination: $(grep FAIL "$T/$1.out")"
}

# exits_with PID STATUS SECONDS
exits_with() {
	local i
	for i in $(seq $(($3 * 10))); do
		[ -d "/proc/$1" ] && ! grep -qs '^State:.*Z' "/proc/$1/status" || break
		sleep 0.1
	done
	if [ -d "/proc/$1" ] && ! grep -qs '^State:.*Z' "/proc/$1/status"; then
		fail "ember $1 still runs $3 s later"
		kill -9 "$1" 2>/dev/null
		return 1
	fi
	wait "$1"
	local st=$?
	[ "$st" -eq "$2" ] || fail "ember exited with $st, expected $2"
}

test_migration_testvm_counts_on_at_the_destination() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	mig_source src 'testvm.fill=8 testvm.dirty=4' || return
	mig_dest dst || return
	API_SOCK=$SRC_SOCK expect_api 204 PUT /ember/migration "{\"destination\": \"unix:$T/dst.mig\"}"
	mig_wait "$SRC_SOCK" completed 60 || return
	# The destination runs the guest, which counts on from the source's
	# last number, its memory (the pattern, the pages it wrote) intact.
	API_SOCK=$DST_SOCK expect_api 200 GET /
	grep -q '"state":"Running"' "$T/resp" || fail "destination: $(cat "$T/resp")"
	counted_on_at dst src
	local last
	last=$(last_count src)
	for k in rounds bytes_sent pages_sent zero_pages; do
		[ "$(mig_field "$SRC_SOCK" $k)" -gt 0 ] 2>/dev/null || fail "GET /ember/migration: $k is not counted: $(cat "$T/resp")"
	done
	grep -q 'migration: vCPUs paused at' "$T/src.err" || fail "the source did not log its pause"
	grep -q 'migration: resumed at' "$T/dst.err" || fail "the destination did not log its resume"
	# The source keeps its VM paused: it runs elsewhere now.
	sleep 1
	[ "$(last_count src)" = "$last" ] || fail "the source's guest counted on after the migration"
	API_SOCK=$SRC_SOCK expect_api 400 PATCH /vm '{"state": "Resumed"}'
	grep -q 'has migrated to' "$T/resp" || fail "resume: $(cat "$T/resp")"
	API_SOCK=$SRC_SOCK expect_api 400 PUT /ember/migration "{\"destination\": \"unix:$T/dst.mig\"}"
	API_SOCK=$SRC_SOCK expect_api 400 DELETE /ember/migration
	kill "$SRC_PID" "$DST_PID" 2>/dev/null
	wait "$SRC_PID" "$DST_PID" 2>/dev/null
}

# A VM booted without track_dirty_pages: the migration turns tracking on
# (every page dirty to begin with) and the guest's pages all arrive.
test_migration_untracked_vm_starts_tracking() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	mig_source src 'testvm.fill=8 testvm.dirty=4' '{"vcpu_count": 1, "mem_size_mib": 64}' || return
	mig_dest dst || return
	API_SOCK=$SRC_SOCK expect_api 204 PUT /ember/migration "{\"destination\": \"unix:$T/dst.mig\"}"
	mig_wait "$SRC_SOCK" completed 60 || return
	grep -q 'migration: dirty page tracking started' "$T/src.err" || fail "the source did not say it started tracking"
	counted_on_at dst src
	kill "$SRC_PID" "$DST_PID" 2>/dev/null
	wait "$SRC_PID" "$DST_PID" 2>/dev/null
}

# mig_peer MODE [ARG]: migration/peer.py as a destination on
# $T/peer.sock, in MODE (its pid in peer, its output in $T/peer.out), once
# it listens.
mig_peer() {
	rm -f "$T/peer.sock"
	python3 "$MIG_PEER" listen "$T/peer.sock" "$@" > "$T/peer.out" 2>&1 &
	peer=$!
	wait_out peer '^ready' 10
}

# mig_slow_link NAME: $T/NAME.link, a relay to the destination's socket
# at 8 MiB/s (LINK_PID): slower than the guest writes with testvm.dirty=16.
mig_slow_link() {
	python3 "$MIG_PEER" relay "$T/$1.link" "$T/dst.mig" $((8 << 20)) > "$T/$1.out" 2>&1 &
	LINK_PID=$!
	wait_out "$1" '^ready' 10
}

test_migration_dirtying_faster_than_the_link_fails_and_runs_on() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	mig_source src 'testvm.dirty=16' || return
	mig_dest dst || return
	mig_slow_link link || return
	API_SOCK=$SRC_SOCK expect_api 204 PUT /ember/migration "{\"destination\": \"unix:$T/link.link\", \"timeout_s\": 8}"
	mig_wait "$SRC_SOCK" failed 60 || return
	grep -q 'did not converge in timeout_s (8 s)' "$T/resp" || fail "GET: $(cat "$T/resp")"
	[ "$(mig_field "$SRC_SOCK" rounds)" -gt 1 ] 2>/dev/null || fail "one round only: $(cat "$T/resp")"
	API_SOCK=$SRC_SOCK expect_api 200 GET /
	grep -q '"state":"Running"' "$T/resp" || fail "source: $(cat "$T/resp")"
	counts_on src
	grep -q FAIL "$T/src.out" && fail "source: $(grep FAIL "$T/src.out")"
	# The destination saw the source go before the end, and says so.
	exits_with "$DST_PID" 1 30
	grep -q 'migration from the source failed: the source closed the connection' "$T/dst.err" ||
		fail "destination: $(tail -3 "$T/dst.err")"
	stop_api_pid "$SRC_PID"
}

stop_api_pid() {
	kill "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

test_migration_gone_or_refusing_destination_leaves_the_vm_running() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	mig_source src 'testvm.fill=8 testvm.dirty=4' || return
	# A destination that goes after 100 KB, then one that reads it all
	# and refuses the VM: the guest counts on here, each time.
	local mode
	for mode in "close-after 100000" refuse; do
		# shellcheck disable=SC2086 # mode is the peer's mode and argument
		mig_peer $mode
		API_SOCK=$SRC_SOCK expect_api 204 PUT /ember/migration "{\"destination\": \"unix:$T/peer.sock\"}"
		mig_wait "$SRC_SOCK" failed 60
		case $mode in
		close-after*) grep -q 'sending to the destination' "$T/resp" || fail "$mode: $(cat "$T/resp")" ;;
		refuse) grep -q 'refused the VM: refused by the test' "$T/resp" || fail "$mode: $(cat "$T/resp")" ;;
		esac
		API_SOCK=$SRC_SOCK expect_api 200 GET /
		grep -q '"state":"Running"' "$T/resp" || fail "$mode: source $(cat "$T/resp")"
		counts_on src
		wait "$peer" 2>/dev/null
	done
	# Then a real destination takes it, every page right.
	mig_dest dst || return
	API_SOCK=$SRC_SOCK expect_api 204 PUT /ember/migration "{\"destination\": \"unix:$T/dst.mig\"}"
	mig_wait "$SRC_SOCK" completed 60 || return
	counted_on_at dst src
	stop_api_pid "$SRC_PID"
	stop_api_pid "$DST_PID"
}

test_migration_silent_destination_keeps_the_vm_paused() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	mig_source src '' || return
	mig_peer silent
	API_SOCK=$SRC_SOCK expect_api 204 PUT /ember/migration "{\"destination\": \"unix:$T/peer.sock\", \"timeout_s\": 1}"
	wait_out peer '^messages' 30
	grep -q '^messages 1 2.* 3 4$' "$T/peer.out" || fail "the peer read: $(cat "$T/peer.out")"
	# The state is out and no answer comes: the destination may run the
	# VM, so it stays paused here, and too late to cancel.
	API_SOCK=$SRC_SOCK expect_api 400 DELETE /ember/migration
	grep -q 'too late to cancel' "$T/resp" || fail "cancel: $(cat "$T/resp")"
	mig_wait "$SRC_SOCK" failed 60 || return
	grep -q 'stays paused here' "$T/resp" || fail "GET: $(cat "$T/resp")"
	API_SOCK=$SRC_SOCK expect_api 200 GET /
	grep -q '"state":"Paused"' "$T/resp" || fail "source: $(cat "$T/resp")"
	local last
	last=$(last_count src)
	sleep 1
	[ "$(last_count src)" = "$last" ] || fail "the paused guest counted on"
	# Its operator decides: resumed, it counts on here.
	API_SOCK=$SRC_SOCK expect_api 204 PATCH /vm '{"state": "Resumed"}'
	counts_on src
	kill "$peer" 2>/dev/null
	stop_api_pid "$SRC_PID"
}

test_migration_cancel_while_sending() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	mig_source src 'testvm.fill=8' || return
	mig_peer slow
	API_SOCK=$SRC_SOCK expect_api 204 PUT /ember/migration "{\"destination\": \"unix:$T/peer.sock\"}"
	[ "$(mig_field "$SRC_SOCK" state)" = precopy ] || fail "GET: $(cat "$T/resp")"
	API_SOCK=$SRC_SOCK expect_api 400 PATCH /vm '{"state": "Paused"}'
	grep -q 'is under way' "$T/resp" || fail "pause: $(cat "$T/resp")"
	API_SOCK=$SRC_SOCK expect_api 204 DELETE /ember/migration
	[ "$(mig_field "$SRC_SOCK" state)" = cancelled ] || fail "GET: $(cat "$T/resp")"
	API_SOCK=$SRC_SOCK expect_api 200 GET /
	grep -q '"state":"Running"' "$T/resp" || fail "source: $(cat "$T/resp")"
	counts_on src
	wait "$peer" 2>/dev/null
	stop_api_pid "$SRC_PID"
}

test_migration_killed_source_stops_the_destination() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	mig_source src 'testvm.dirty=16' || return
	mig_dest dst || return
	mig_slow_link link || return
	API_SOCK=$SRC_SOCK expect_api 204 PUT /ember/migration "{\"destination\": \"unix:$T/link.link\"}"
	local i
	for i in $(seq 300); do
		[ "$(mig_field "$SRC_SOCK" rounds)" -ge 1 ] 2>/dev/null && break
		sleep 0.1
	done
	[ "$(mig_field "$SRC_SOCK" state)" = precopy ] || fail "not in pre-copy: $(cat "$T/resp")"
	kill -9 "$SRC_PID"
	wait "$SRC_PID" 2>/dev/null
	exits_with "$DST_PID" 1 30
	grep -qE 'migration from the source failed: (the source closed the connection|reading from the source: Connection reset)' "$T/dst.err" ||
		fail "destination: $(tail -3 "$T/dst.err")"
}

test_migration_bad_streams_are_refused_with_reasons() {
	need_kvm || return
	local mode want
	while IFS='|' read -r mode want; do
		mig_dest "d-$mode" || return
		python3 "$MIG_PEER" send "$T/d-$mode.mig" "$mode" > "$T/peer.out" 2>&1
		grep -qF -- "$want" "$T/peer.out" || fail "$mode: the source was answered: $(cat "$T/peer.out")"
		exits_with "$DST_PID" 1 30
		grep -qF -- "migration from the source failed: ${want#result * }" "$T/d-$mode.err" ||
			fail "$mode: destination: $(tail -2 "$T/d-$mode.err")"
	done <<'EOF'
garbage|result 22 not an ember migration stream (no EMBERMIG hello)
bad-crc|result 22 migration BEGIN message fails its CRC: the stream is corrupted
eof-in-begin|result 32 the source closed the connection after 56 bytes
wrong-size|result 22 the source sends 16777216 bytes of RAM for a configuration of 33554432
bad-config|result 22 the source's configuration: machine-config.vcpu_count
EOF
	# An ember a client already configured is no destination.
	mig_dest busy || return
	API_SOCK=$DST_SOCK expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 32}'
	python3 "$MIG_PEER" send "$T/busy.mig" wrong-size > "$T/peer.out" 2>&1
	grep -q 'result 16 this ember already has a VM' "$T/peer.out" || fail "busy: $(cat "$T/peer.out")"
	exits_with "$DST_PID" 1 30
}

test_migration_api_values() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	start_api fresh || return
	expect_api 200 GET /ember/migration
	[ "$(cat "$T/resp")" = '{"state":"none"}' ] || fail "GET before any: $(cat "$T/resp")"
	expect_api 400 PUT /ember/migration "{\"destination\": \"unix:$T/x.mig\"}"
	grep -q 'no VM to migrate' "$T/resp" || fail "before start: $(cat "$T/resp")"
	expect_api 400 DELETE /ember/migration
	grep -q 'no migration is under way' "$T/resp" || fail "DELETE: $(cat "$T/resp")"
	stop_api
	mig_source src '' || return
	local body want
	while IFS='|' read -r body want; do
		expect_api 400 PUT /ember/migration "$body"
		grep -qF -- "$want" "$T/resp" || fail "$body: $(cat "$T/resp")"
	done <<EOF
{}|destination
{"destination": ""}|must be a non-empty string
{"destination": "ftp:host"}|neither unix:PATH nor tcp:HOST:PORT
{"destination": "tcp:example.com:80"}|addresses as numbers
{"destination": "unix:$T/x.mig", "mode": "postcopy"}|mode \"postcopy\" is not supported by ember yet
{"destination": "unix:$T/x.mig", "mode": "fast"}|unknown variant `fast`
{"destination": "unix:$T/x.mig", "downtime_ms": 0}|downtime_ms: must be a whole number from 1 to 60000
{"destination": "unix:$T/x.mig", "timeout_s": 1.5}|timeout_s: must be a whole number from 1 to 86400
{"destination": "unix:$T/x.mig", "speed": 1}|speed
{"destination": "unix:$T/nobody-listens.mig"}|cannot connect to unix:$T/nobody-listens.mig
EOF
	API_SOCK=$SRC_SOCK expect_api 200 GET /
	grep -q '"state":"Running"' "$T/resp" || fail "after the refusals: $(cat "$T/resp")"
	counts_on src
	stop_api
}

# Over TCP on the loopback: the destination listens on tcp:, the source
# connects there (both through ember's seccomp filters).
test_migration_over_tcp() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	mig_source src 'testvm.fill=8 testvm.dirty=4' || return
	local port=$((20000 + $$ % 20000))
	start_api dst --migration-listen "tcp:127.0.0.1:$port" || return
	DST_SOCK=$API_SOCK DST_PID=$API_PID
	API_SOCK=$SRC_SOCK expect_api 204 PUT /ember/migration "{\"destination\": \"tcp:127.0.0.1:$port\"}"
	mig_wait "$SRC_SOCK" completed 60 || return
	counted_on_at dst src
	stop_api_pid "$SRC_PID"
	stop_api_pid "$DST_PID"
}

# A Linux guest counting on its console and into a file on its root drive
# (synced each step), pinging the host through its tap each step, moves
# from an ember in one network namespace to one in another, whose tap has
# the same name: it counts on from the source's last number, reaches the
# host through the new tap, and the file holds every number once, in order.
test_migration_linux_console_drive_and_tap() {
	need_kvm || return
	need_file "$BUILD/vmlinux" && need_file "$BUILD/rootfs.ext4" || return
	need_netns || return
	tap_netns mig-src || return
	local ns_src=$NS
	tap_netns mig-dst || { ip netns del "$ns_src"; return; }
	local ns_dst=$NS
	cp --sparse=always "$BUILD/rootfs.ext4" "$T/root.ext4"
	local script='ip addr add 10.0.0.2/24 dev eth0; ip link set eth0 up; i=0; while :; do echo step $i; echo $i >> /root/counts; sync; ping -c 1 -W 2 10.0.0.1 > /dev/null 2>&1 && echo ping ok $i; i=$((i + 1)); sleep 0.3; done'
	API_PREFIX="ip netns exec $ns_src" start_api src || { ip netns del "$ns_src"; ip netns del "$ns_dst"; return; }
	SRC_SOCK=$API_SOCK SRC_PID=$API_PID
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/vmlinux")\", \"boot_args\": \"console=ttyS0 reboot=k panic=1 quiet ember.cmd=\\\"$script\\\"\"}"
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 128, "track_dirty_pages": true}'
	expect_api 204 PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$T/root.ext4\", \"is_root_device\": true, \"is_read_only\": false}"
	expect_api 204 PUT /network-interfaces/eth0 '{"iface_id": "eth0", "guest_mac": "06:00:0a:00:00:02", "host_dev_name": "tap0"}'
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	if wait_out src '^ping ok 2' "${LINUX_TIMEOUT:-900}"; then
		API_PREFIX="ip netns exec $ns_dst" start_api dst --migration-listen "unix:$T/dst.mig"
		DST_SOCK=$API_SOCK DST_PID=$API_PID
		API_SOCK=$SRC_SOCK expect_api 204 PUT /ember/migration "{\"destination\": \"unix:$T/dst.mig\"}"
		if mig_wait "$SRC_SOCK" completed 120; then
			local last first
			last=$(grep -oE '^step [0-9]+' "$T/src.out" | tail -1 | awk '{print $2}')
			wait_out dst '^ping ok [0-9]+' 120
			first=$(grep -oE '^step [0-9]+' "$T/dst.out" | head -1 | awk '{print $2}')
			[ -z "$first" ] && first=$(grep -oE '^ping ok [0-9]+' "$T/dst.out" | head -1 | awk '{print $3}')
			# The step the source was in finishes at the destination: its
			# ping line there, or the next step.
			[ -n "$first" ] && [ "$first" -ge "$last" ] && [ "$first" -le $((last + 1)) ] ||
				fail "the source stepped to $last, the destination went on at '$first'"
			wait_out dst "^step $((last + 3))" 60
			echo "    paused for $(mig_field "$SRC_SOCK" paused_ms) ms, $(mig_field "$SRC_SOCK" rounds) rounds, $(($(mig_field "$SRC_SOCK" bytes_sent) >> 20)) MiB"
		fi
		stop_api_pid "$DST_PID"
	fi
	stop_api_pid "$SRC_PID"
	ip netns del "$ns_src"
	ip netns del "$ns_dst"
	# Every number once, in order, from 0 on (the last may not be synced),
	# read after e2fsck replayed the journal the killed guest left.
	local counts
	cp --sparse=always "$T/root.ext4" "$T/check.ext4"
	e2fsck -fy "$T/check.ext4" > "$T/fsck.log" 2>&1
	counts=$(debugfs -R "cat /root/counts" "$T/check.ext4" 2>/dev/null)
	python3 - "$counts" <<'PY' || fail "/root/counts on the drive: $(echo "$counts" | tr '\n' ' ' | tail -c 300)"
import sys
n = [int(x) for x in sys.argv[1].split()]
sys.exit(0 if n and n == list(range(len(n))) and len(n) >= 5 else 1)
PY
}
