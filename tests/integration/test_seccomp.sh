# seccomp: each thread's filter must allow what the thread and the
# libraries under it really do (glibc's allocator, stdio, the time zone),
# on every path a client or a guest can drive. ember-test
# --test-seccomp-trace runs under seccomp-tracer, which records each call a
# filter would refuse and lets it go ahead, so one run finds every missing
# rule; the threads are then stressed and the record must stay empty. This
# runs the release build's code with only the filters' default action
# changed (the SAN build allows more, so it cannot show a missing rule).

SECCOMP_TRACER=${SECCOMP_TRACER:-$(dirname "$EMBER")/seccomp-tracer}
API_STRESS=${API_STRESS:-$(dirname "$EMBER")/api-stress}
UFFD=${UFFD:-$(dirname "$EMBER")/ember-uffd}

# LeakSanitizer stops the world with ptrace, which a traced process cannot:
# a SAN build's leak check would fail here for that reason alone.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0

need_tracer() {
	need_file "$SECCOMP_TRACER" && need_file "$EMBER_TEST" && need_file "$API_STRESS"
}

# start_traced NAME [PREFIX...] -- [EMBER ARGS...]: ember-test in trace mode
# under the tracer (run through PREFIX, e.g. ip netns exec), serving
# $T/NAME.sock; the record goes to $T/NAME.trace. Sets API_SOCK, API_PID
# (the tracer, whose status is ember's) and EMBER_PID.
start_traced() {
	local name=$1 prefix=()
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do prefix+=("$1"); shift; done
	[ "${1:-}" = -- ] && shift
	API_SOCK="$T/$name.sock"
	"${prefix[@]}" "$SECCOMP_TRACER" "$T/$name.trace" "$EMBER_TEST" --test-seccomp-trace \
		--api-sock "$API_SOCK" "$@" > "$T/$name.out" 2> "$T/$name.err" < /dev/null &
	API_PID=$!
	local i
	for i in $(seq 100); do
		if [ -S "$API_SOCK" ] && curl -s --unix-socket "$API_SOCK" http://localhost/ > /dev/null; then
			EMBER_PID=$(pgrep -P "$API_PID" | head -1)
			[ -n "$EMBER_PID" ] && return 0
		fi
		sleep 0.05
	done
	fail "$name: the traced ember's API socket never accepted"
	return 1
}

# stop_traced NAME: SIGTERM to ember; its status must be 143.
stop_traced() {
	kill -TERM "$EMBER_PID" 2>/dev/null
	wait "$API_PID"
	local status=$?
	[ "$status" -eq 143 ] || fail "$1: ember exited with $status after SIGTERM, expected 143"
}

# expect_clean_trace NAME THREAD...: nothing refused, nothing killed, and
# each named thread was there (so the run traced what it meant to).
expect_clean_trace() {
	local name=$1 th
	shift
	if grep -E '^(violation|killed)' "$T/$name.trace" > "$T/$name.refused"; then
		fail "$name: the filters refused $(wc -l < "$T/$name.refused") call(s):"
		sed 's/^/      /' "$T/$name.refused" >&2
	fi
	for th in "$@"; do
		grep -qx "thread $th" "$T/$name.trace" || fail "$name: no thread '$th' was traced"
	done
}

last_round() { grep -oE 'testvm: round [0-9]+' "$T/$1.out" | tail -1 | awk '{print $3}'; }

# The detector itself: a call no filter allows, made on purpose from each
# thread, is recorded with that thread's role (and ember goes on).
test_seccomp_trace_mode_records_each_role() {
	need_kvm || return
	need_tracer || return
	need_file "$BUILD/testvm.elf" || return
	write_config "$T/vm.json" "$BUILD/testvm.elf" "" "" 1 32
	local role
	for role in vmm api vcpu; do
		"$SECCOMP_TRACER" "$T/$role.trace" "$EMBER_TEST" --test-seccomp-trace --test-forbidden-syscall $role \
			--api-sock "$T/$role.sock" --config-file "$T/vm.json" > "$T/$role.out" 2> "$T/$role.err" < /dev/null
		local status=$?
		grep -qE "^violation .* role=$role syscall=[0-9]+\(personality\)" "$T/$role.trace" ||
			fail "$role: the forbidden call was not recorded: $(cat "$T/$role.trace")"
		[ "$status" -eq 3 ] || fail "$role: exited with $status, expected 3 (the hook's exit after the call)"
		grep -q "personality() returned" "$T/$role.err" || fail "$role: the call did not go ahead"
	done
	# Without the tracer, the same filters still hold: the release action kills.
	# (bash reports the killed child on the stderr of the group around it)
	{ ("$EMBER_TEST" --test-forbidden-syscall api --api-sock "$T/kill.sock" > "$T/kill.out" 2> "$T/kill.err" < /dev/null); } 2> /dev/null
	local status=$?
	[ "$status" -eq 159 ] || fail "without trace mode the forbidden call did not kill ember (status $status)"
}

# Many API clients connecting and leaving at once: glibc trimmed the API
# thread's own heap and opened /proc/sys/vm/overcommit_memory, which the
# API filter forbids (SIGSYS). Checked with the release binary itself too.
test_seccomp_concurrent_clients_leave() {
	need_tracer || return
	start_traced clients || return
	"$API_STRESS" "$API_SOCK" 16 20 > "$T/stress.out" 2> "$T/stress.err" || fail "api-stress: $(cat "$T/stress.out")"
	sleep 0.5
	kill -0 "$EMBER_PID" 2>/dev/null || fail "ember died under the stress"
	stop_traced clients
	expect_clean_trace clients ember-api

	start_api release || return
	"$API_STRESS" "$API_SOCK" 16 20 > "$T/stress2.out" 2> "$T/stress2.err" || fail "api-stress (release): $(cat "$T/stress2.out")"
	sleep 0.5
	if kill -0 "$API_PID" 2>/dev/null; then
		stop_api
	else
		{ wait "$API_PID"; } 2> /dev/null
		fail "the release ember died under concurrent clients (status $?)"
	fi
}

# Every thread at once: the test guest running its device and emulation
# checks in a loop on two vCPUs (block reads and writes, a read-only drive,
# entropy, network frames into a tap, vsock, malformed chains that reset
# devices and log), the API under 16 clients with every kind of connection
# and a drive swapped back and forth, logs and metrics to files, pauses,
# Full and Diff snapshots; then the snapshot restored from its memory file
# and through ember-uffd, each stressed again.
test_seccomp_stress_every_thread() {
	need_kvm || return
	need_tracer || return
	need_file "$BUILD/testvm.elf" || return
	need_file "$UFFD" || return
	if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || [ ! -c /dev/net/tun ]; then
		skip "needs root, iproute2 and /dev/net/tun for a network namespace and tap"
		return
	fi
	local ns=ember-sc-$$
	ip netns add $ns || { fail "ip netns add"; return; }
	ip netns exec $ns ip tuntap add dev tap0 mode tap &&
	ip netns exec $ns ip addr add 172.31.0.1/24 dev tap0 &&
	ip netns exec $ns ip link set tap0 up || { fail "tap setup"; ip netns del $ns; return; }
	seccomp_stress_in $ns
	ip netns del $ns
}

seccomp_stress_in() {
	local ns=$1 i
	local in_ns=(ip netns exec "$ns")
	printf 'ember-testdisk\n' > "$T/disk.img"; truncate -s 1M "$T/disk.img"
	printf 'ember-testdisk\n' > "$T/ro-a.img"; truncate -s 1M "$T/ro-a.img"
	cp "$T/ro-a.img" "$T/ro-b.img"
	local limiter='{"bandwidth": {"size": 10000000, "refill_time": 100}, "ops": {"size": 10000, "refill_time": 100}}'

	start_traced run "${in_ns[@]}" -- || return
	expect_api 204 PUT /logger "{\"log_path\": \"$T/run.log\", \"level\": \"Debug\", \"show_level\": true, \"show_log_origin\": true}"
	expect_api 204 PUT /metrics "{\"metrics_path\": \"$T/run.metrics\"}"
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.virtio testvm.emulate testvm.rounds=0\"}"
	expect_api 204 PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 64, "track_dirty_pages": true}'
	expect_api 204 PUT /drives/testdisk "{\"drive_id\": \"testdisk\", \"path_on_host\": \"$T/disk.img\", \"is_root_device\": false, \"rate_limiter\": $limiter}"
	expect_api 204 PUT /drives/rodisk "{\"drive_id\": \"rodisk\", \"path_on_host\": \"$T/ro-a.img\", \"is_root_device\": false, \"is_read_only\": true, \"io_engine\": \"Sync\"}"
	expect_api 204 PUT /network-interfaces/eth0 "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"tx_rate_limiter\": $limiter}"
	expect_api 204 PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$T/v.sock\"}"
	expect_api 204 PUT /entropy "{\"rate_limiter\": $limiter}"
	expect_api 204 PUT /serial '{"rate_limiter": {"size": 100000000, "refill_time": 100}}'
	expect_api 204 PATCH /machine-config '{"smt": false}'
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out run 'testvm: round 3' 60 || { stop_traced run; return; }

	seccomp_stress_round run "$ns" "$T/state" "$T/mem"
	stop_traced run
	expect_clean_trace run ember-test ember-api ember-vcpu0 ember-vcpu1
	grep -q 'FAIL' "$T/run.out" && fail "run: the guest's checks failed: $(grep FAIL "$T/run.out" | sort | uniq -c | head -5)"
	[ -s "$T/run.metrics" ] || fail "run: no metrics were written"

	# Restored from the memory file, stressed again, snapshotted again.
	start_traced file "${in_ns[@]}" -- --level Debug --metrics-path "$T/file.metrics" || return
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}, \"track_dirty_pages\": true, \"resume_vm\": true}"
	local from
	from=$(last_round run)
	wait_out file "testvm: round $((from + 3))" 60 || { stop_traced file; return; }
	seccomp_stress_round file "$ns" "$T/state2" "$T/mem2"
	stop_traced file
	expect_clean_trace file ember-test ember-api ember-vcpu0 ember-vcpu1

	# Through the page-fault handler.
	"$UFFD" --socket "$T/handler.sock" --mem-file "$T/mem" --working-set "$T/mem.ws" 2> "$T/handler.err" &
	local handler=$!
	for i in $(seq 50); do [ -S "$T/handler.sock" ] && break; sleep 0.1; done
	start_traced uffd "${in_ns[@]}" -- --level Debug --metrics-path "$T/uffd.metrics" || { kill $handler; return; }
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"Uffd\", \"backend_path\": \"$T/handler.sock\"}, \"resume_vm\": true}"
	wait_out uffd "testvm: round $((from + 3))" 60
	"$API_STRESS" "$API_SOCK" 8 10 rodisk "$T/ro-a.img" "$T/ro-b.img" > "$T/uffd-stress.out" 2> "$T/uffd-stress.err" ||
		fail "uffd: api-stress: $(cat "$T/uffd-stress.out")"
	stop_traced uffd
	kill $handler 2>/dev/null
	wait $handler 2>/dev/null
	expect_clean_trace uffd ember-test ember-api ember-vcpu0 ember-vcpu1
}

# seccomp_stress_round NAME NS STATE MEM: the API stress in the
# background while pausing, snapshotting (Full, then Diff), resuming,
# changing rate limiters, sending keys, connecting to vsock and sending
# frames into the tap; ends with a Full snapshot to STATE + MEM, resumed.
seccomp_stress_round() {
	local name=$1 ns=$2 state=$3 mem=$4 k
	"$API_STRESS" "$API_SOCK" 16 100 rodisk "$T/ro-a.img" "$T/ro-b.img" > "$T/$name-stress.out" 2> "$T/$name-stress.err" &
	local stress=$!
	ip netns exec "$ns" ping -c 20 -i 0.05 -W 1 172.31.0.2 > /dev/null 2>&1 &
	local ping=$!
	for k in 1 2 3; do
		expect_api 204 PATCH /vm '{"state": "Paused"}'
		if [ "$k" = 1 ]; then
			expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/$name-full\", \"mem_file_path\": \"$T/$name-full.mem\"}"
		else
			expect_api 204 PUT /snapshot/create "{\"snapshot_type\": \"Diff\", \"snapshot_path\": \"$T/$name-diff$k\", \"mem_file_path\": \"$T/$name-diff$k.mem\"}"
		fi
		expect_api 204 PATCH /vm '{"state": "Resumed"}'
		expect_api 204 PATCH /network-interfaces/eth0 "{\"iface_id\": \"eth0\", \"tx_rate_limiter\": {\"bandwidth\": {\"size\": $((k * 1000000)), \"refill_time\": 100}}}"
		expect_api 204 PATCH /drives/testdisk "{\"drive_id\": \"testdisk\", \"rate_limiter\": {\"ops\": {\"size\": $((k * 1000)), \"refill_time\": 100}}}"
		api PUT /actions '{"action_type": "SendCtrlAltDel"}' > /dev/null
		expect_api 204 PUT /actions '{"action_type": "FlushMetrics"}'
		printf 'CONNECT 52\n' | timeout 5 socat -t 1 - UNIX-CONNECT:"$T/v.sock" > /dev/null 2>&1
		sleep 0.2
	done
	wait $stress || fail "$name: api-stress: $(cat "$T/$name-stress.out") $(head -3 "$T/$name-stress.err")"
	wait $ping
	kill -0 "$EMBER_PID" 2>/dev/null || { fail "$name: ember died under the stress"; return 1; }
	local before
	before=$(last_round "$name")
	wait_out "$name" "testvm: round $((before + 2))" 60 || return 1
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$state\", \"mem_file_path\": \"$mem\"}"
	expect_api 204 PATCH /vm '{"state": "Resumed"}'
}

# Inside ember-jailer's jail: the jail's filter (the union of the roles'
# and the start-up rules, with the kill action) stays under ember's own, so
# a call outside the union still kills ember, and the tracer records that.
test_seccomp_stress_in_a_jail() {
	need_kvm || return
	need_tracer || return
	need_file "$BUILD/testvm.elf" || return
	if [ "$(id -u)" != 0 ] || [ ! -x "$JAILER" ]; then
		skip "ember-jailer needs root"
		return
	fi
	local id=seccomp-$$ exe
	exe=$(basename "$EMBER_TEST")
	local root=$T/jails/$exe/$id/root
	"$SECCOMP_TRACER" "$T/jail.trace" "$JAILER" --id $id --exec-file "$EMBER_TEST" --uid 12345 --gid 23456 \
		--chroot-base-dir "$T/jails" -- --test-seccomp-trace --api-sock /run/api.sock --level Debug \
		> "$T/jail.out" 2> "$T/jail.err" < /dev/null &
	API_PID=$!
	API_SOCK=$root/run/api.sock
	local i
	for i in $(seq 100); do
		[ -S "$API_SOCK" ] && curl -s --unix-socket "$API_SOCK" http://localhost/ > /dev/null && break
		sleep 0.05
	done
	EMBER_PID=$(pgrep -P "$API_PID" | head -1)
	[ -S "$API_SOCK" ] && [ -n "$EMBER_PID" ] || { fail "the jailed ember never answered"; kill "$API_PID"; return; }
	cp "$BUILD/testvm.elf" "$root/testvm.elf"
	printf 'ember-testdisk\n' > "$root/disk.img"; truncate -s 1M "$root/disk.img"
	printf 'ember-testdisk\n' > "$root/ro-a.img"; truncate -s 1M "$root/ro-a.img"
	cp "$root/ro-a.img" "$root/ro-b.img"
	chown 12345:23456 "$root"/*.img
	expect_api 204 PUT /metrics '{"metrics_path": "/metrics"}'
	expect_api 204 PUT /boot-source '{"kernel_image_path": "/testvm.elf", "boot_args": "testvm.virtio testvm.emulate testvm.rounds=0"}'
	expect_api 204 PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 64}'
	expect_api 204 PUT /drives/testdisk '{"drive_id": "testdisk", "path_on_host": "/disk.img", "is_root_device": false}'
	expect_api 204 PUT /drives/rodisk '{"drive_id": "rodisk", "path_on_host": "/ro-a.img", "is_root_device": false, "is_read_only": true}'
	expect_api 204 PUT /vsock '{"guest_cid": 3, "uds_path": "/run/v.sock"}'
	expect_api 204 PUT /entropy '{}'
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out jail 'testvm: round 3' 60
	"$API_STRESS" "$API_SOCK" 16 100 rodisk /ro-a.img /ro-b.img > "$T/jail-stress.out" 2> "$T/jail-stress.err" &
	local stress=$!
	for i in 1 2 3; do
		expect_api 204 PATCH /vm '{"state": "Paused"}'
		expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"/state$i\", \"mem_file_path\": \"/mem$i\"}"
		expect_api 204 PATCH /vm '{"state": "Resumed"}'
		expect_api 204 PUT /actions '{"action_type": "FlushMetrics"}'
		sleep 0.2
	done
	wait $stress || fail "api-stress: $(cat "$T/jail-stress.out")"
	if ldd "$EMBER_TEST" | grep -q libasan; then
		# The jail clears the environment, so LeakSanitizer runs at exit
		# and cannot under a tracer: that alone may make the status 1.
		kill -TERM "$EMBER_PID"
		wait "$API_PID"
		local status=$?
		grep -E 'ERROR: AddressSanitizer|runtime error' "$T/jail.err" && fail "jail: a sanitizer report"
		[ "$status" -eq 143 ] || grep -q 'LeakSanitizer does not work under ptrace' "$T/jail.err" ||
			fail "jail: ember exited with $status after SIGTERM, expected 143"
	else
		stop_traced jail
	fi
	expect_clean_trace jail "$exe" ember-api ember-vcpu0 ember-vcpu1
	"$JAILER" --cleanup --id $id --exec-file "$EMBER_TEST" --chroot-base-dir "$T/jails" > /dev/null 2>&1
}
