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

# The guest resets (at once, the test guest's default) while a client keeps
# requests in flight: ember must answer or refuse them and exit, every time.
test_api_exits_when_guest_resets_under_requests() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	command -v socat >/dev/null || { fail "socat is missing (make deps)"; return; }
	local trial trials=${API_RESET_TRIALS:-12} hung=0 i
	for trial in $(seq "$trials"); do
		start_api "r$trial" || return
		expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\"}"
		expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
		hammer_requests | socat - UNIX-CONNECT:"$API_SOCK" > "$T/hammer$trial.log" 2>/dev/null &
		local hammer=$!
		for i in $(seq 200); do [ -s "$T/hammer$trial.log" ] && break; sleep 0.05; done
		[ -s "$T/hammer$trial.log" ] || fail "trial $trial: the busy client got no answer"
		api PUT /actions '{"action_type": "InstanceStart"}' > /dev/null
		# Generous: the guest resets within a second of starting.
		for i in $(seq 200); do kill -0 "$API_PID" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$API_PID" 2>/dev/null; then
			hung=$((hung + 1))
			kill -9 "$API_PID"
		fi
		wait "$API_PID" 2>/dev/null
		kill "$hammer" 2>/dev/null
		wait "$hammer" 2>/dev/null
	done
	[ "$hung" -eq 0 ] || fail "ember did not exit after the guest reset in $hung of $trials trials"
	grep -q "guest reset" "$T"/r*.err || fail "no trial logged the guest reset"
}
