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

# hold_connections N PREFIX: N connections that send nothing and read until
# ember closes them; their pids in HOLDERS. Returns once all are connected.
hold_connections() {
	local n=$1 prefix=$2 i k
	HOLDERS=()
	for i in $(seq "$n"); do
		socat -d -d -u UNIX-CONNECT:"$API_SOCK" /dev/null 2> "$T/$prefix$i.log" &
		HOLDERS+=($!)
	done
	for k in $(seq 200); do
		[ "$(grep -l "starting data transfer loop" "$T/$prefix"*.log 2>/dev/null | wc -l)" -ge "$n" ] && return 0
		sleep 0.05
	done
	fail "$n connections could not all connect"
	return 1
}

release_connections() {
	kill "${HOLDERS[@]}" 2>/dev/null
	wait "${HOLDERS[@]}" 2>/dev/null
	HOLDERS=()
}

# curl_status PATH: the status of a GET on a new connection, 000 if none
# came in 10 s.
curl_status() {
	curl -s -m 10 -o "$T/resp" -w "%{http_code}" --unix-socket "$API_SOCK" "http://localhost$1"
}

# More idle connections than ember serves at once: a new client is still
# answered (the longest idle connection makes room for it).
test_api_idle_connections_do_not_lock_out_clients() {
	need_kvm || return
	command -v socat >/dev/null || { fail "socat is missing (make deps)"; return; }
	start_api idle || return
	hold_connections 40 hold || { release_connections; stop_api; return; }
	local got
	got=$(curl_status /)
	[ "$got" = 200 ] || fail "with 40 idle connections open, a new client got status '$got'"
	release_connections
	stop_api
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# A client that pipelines requests and never reads the answers: ember stops
# reading from it, so its memory stays bounded, and it goes on serving others.
test_api_client_that_never_reads_is_bounded() {
	need_kvm || return
	command -v socat >/dev/null || { fail "socat is missing (make deps)"; return; }
	# A SAN build holds freed memory in quarantine (256 MiB): keep it small
	# so RSS measures what ember keeps, not what ASan delays reusing.
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4 start_api noread || return
	local base rss peak=0 i bound=$((32 * 1024)) # KiB
	base=$(rss_kib "$API_PID")
	yes $'GET /version HTTP/1.1\r\n\r' | socat -u - UNIX-CONNECT:"$API_SOCK" 2>/dev/null &
	local writer=$!
	# Unbounded, ember grew by tens of MiB a second here.
	for i in $(seq 12); do
		sleep 0.5
		rss=$(rss_kib "$API_PID") || break
		[ "$rss" -gt "$peak" ] && peak=$rss
		[ $((peak - base)) -gt "$bound" ] && break
	done
	local got
	got=$(curl_status /version)
	[ "$got" = 200 ] || fail "beside a client that does not read, another got status '$got'"
	kill "$writer" 2>/dev/null
	wait "$writer" 2>/dev/null
	[ $((peak - base)) -le "$bound" ] ||
		fail "ember's RSS grew from $base to $peak KiB under a client that does not read"
	kill -0 "$API_PID" 2>/dev/null || fail "ember died"
	stop_api
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# At the open-file limit accept fails (EMFILE): ember must not spin on the
# listener, and must serve again once connections close.
test_api_fd_limit_does_not_spin() {
	need_kvm || return
	command -v socat >/dev/null || { fail "socat is missing (make deps)"; return; }
	command -v prlimit >/dev/null || { fail "prlimit is missing (util-linux)"; return; }
	API_SOCK="$T/fd.sock"
	prlimit --nofile=40:40 "$EMBER" --api-sock "$API_SOCK" > "$T/fd.out" 2> "$T/fd.err" < /dev/null &
	API_PID=$!
	local i
	for i in $(seq 100); do
		[ -S "$API_SOCK" ] && [ "$(curl_status /version)" = 200 ] && break
		sleep 0.05
	done
	# Past the fd limit (ember holds ~15 fds of its own); the rest queue.
	hold_connections 40 hold || { release_connections; stop_api; return; }
	for i in $(seq 100); do
		[ "$(ls "/proc/$API_PID/fd" | wc -l)" -ge 40 ] && break
		sleep 0.05
	done
	[ "$(ls "/proc/$API_PID/fd" | wc -l)" -ge 40 ] || fail "ember never reached its fd limit"
	local hz before after
	hz=$(getconf CLK_TCK)
	before=$(cpu_ticks "$API_PID")
	sleep 3
	after=$(cpu_ticks "$API_PID")
	# Generous: spinning costs a whole core (3 s of CPU); resting, almost nothing.
	[ $((after - before)) -lt $((hz / 2)) ] ||
		fail "at its fd limit ember used $(((after - before) * 1000 / hz)) ms of CPU in 3 s"
	release_connections
	local got
	got=$(curl_status /version)
	[ "$got" = 200 ] || fail "after the connections closed, a new client got status '$got'"
	expect_err fd "cannot accept a connection: Too many open files"
	stop_api
}

# A connection idle too long is closed, and so is one whose request does
# not arrive whole in time (even if it trickles in); a client that keeps
# asking is not. Short test timeouts: ember-test --test-api-timeout-ms.
test_api_idle_and_slow_connections_time_out() {
	need_kvm || return
	command -v socat >/dev/null || { fail "socat is missing (make deps)"; return; }
	need_file "$EMBER_TEST" || return
	EMBER=$EMBER_TEST start_api to --test-api-timeout-ms 2000 || return
	local st
	timeout 30 socat -u UNIX-CONNECT:"$API_SOCK" /dev/null
	st=$?
	[ "$st" -ne 124 ] || fail "an idle connection was not closed"

	mkfifo "$T/slow.in"
	exec 3<> "$T/slow.in"
	( printf 'GET / HTTP/1.1\r\n'; for i in $(seq 60); do printf 'X-Slow: 1\r\n'; sleep 0.5; done ) >&3 &
	local dribble=$!
	timeout 30 socat - UNIX-CONNECT:"$API_SOCK" < "$T/slow.in" > "$T/slow.log" 2>/dev/null
	st=$?
	kill "$dribble" 2>/dev/null
	wait "$dribble" 2>/dev/null
	exec 3>&-
	# socat ends when ember closes (1 if ember closed before it was done writing).
	[ "$st" -ne 124 ] || fail "a request trickling in was not cut off"

	# Twice as long as the timeout, with a request every 0.2 s.
	local busy
	busy=$(for i in $(seq 20); do printf 'GET /version HTTP/1.1\r\n\r\n'; sleep 0.2; done |
		socat -t 5 - UNIX-CONNECT:"$API_SOCK" | grep -o "HTTP/1.1 200" | wc -l)
	[ "$busy" -eq 20 ] || fail "a busy keep-alive connection got $busy of 20 answers"
	kill -0 "$API_PID" 2>/dev/null || fail "ember died"
	stop_api
}
