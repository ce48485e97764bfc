# The API under load and abuse: ember exits when its VM does, whatever its
# clients are doing, and no client can take the API away from the others.

# hammer_requests: an endless stream of pipelined requests, as a busy
# client sends them (answers are read by whoever runs it).
hammer_requests() {
	local paused='{"state":"Paused"}' resumed='{"state":"Resumed"}'
	while :; do
		printf 'GET /vm/config HTTP/1.1\r\n\r\n'
		printf 'PATCH /vm HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s' ${#paused} "$paused"
		printf 'PATCH /vm HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s' ${#resumed} "$resumed"
	done 2>/dev/null
}

# reset_trial N HOW: a busy client keeps requests in flight while the VM
# ends, by the guest's reset (HOW=reset: the test guest resets at once) or
# by SIGTERM (HOW=term, the guest hangs). Counts trials where ember did
# not exit in HUNG.
reset_trial() {
	local trial=$1 how=$2 args="" i
	[ "$how" = term ] && args=', "boot_args": "testvm.hang"'
	start_api "$how$trial" || return
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\"$args}"
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
	hammer_requests | socat - UNIX-CONNECT:"$API_SOCK" > "$T/hammer$how$trial.log" 2>/dev/null &
	local hammer=$!
	for i in $(seq 200); do [ -s "$T/hammer$how$trial.log" ] && break; sleep 0.05; done
	[ -s "$T/hammer$how$trial.log" ] || fail "trial $trial: the busy client got no answer"
	api PUT /actions '{"action_type": "InstanceStart"}' > /dev/null
	[ "$how" = term ] && kill -TERM "$API_PID"
	# Generous: the VM ends within a second of starting.
	for i in $(seq 200); do kill -0 "$API_PID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$API_PID" 2>/dev/null; then
		HUNG=$((HUNG + 1))
		kill -9 "$API_PID"
	fi
	wait "$API_PID" 2>/dev/null
	kill "$hammer" 2>/dev/null
	wait "$hammer" 2>/dev/null
}

# Whatever ends the VM while requests are in flight, ember answers or
# refuses them and exits, every time.
test_api_exits_when_vm_ends_under_requests() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	command -v socat >/dev/null || { fail "socat is missing (make deps)"; return; }
	local trial trials=${API_RESET_TRIALS:-12}
	HUNG=0
	for trial in $(seq "$trials"); do reset_trial "$trial" reset; done
	[ "$HUNG" -eq 0 ] || fail "ember did not exit after the guest reset in $HUNG of $trials trials"
	grep -q "guest reset" "$T"/reset*.err || fail "no trial logged the guest reset"
	HUNG=0
	for trial in $(seq 4); do reset_trial "$trial" term; done
	[ "$HUNG" -eq 0 ] || fail "ember did not exit on SIGTERM in $HUNG of 4 trials"
	grep -q "signal Terminated" "$T"/term*.err || fail "no trial logged SIGTERM"
}
