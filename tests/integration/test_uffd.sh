# ember-uffd, the page-fault handler for uffd snapshot restores, against
# uffd-client: a stand-in for a restoring ember that maps "guest memory",
# hands it over with ember's own uffd_backend_connect() and checks every
# page it gets back. No VM involved, so no /dev/kvm needed.

UFFD=${UFFD:-$(dirname "$EMBER")/ember-uffd}
UFFD_CLIENT=${UFFD_CLIENT:-$(dirname "$EMBER")/uffd-client}
UFFD_MIB=8
UFFD_PAGES=2048     # UFFD_MIB in pages
UFFD_WS_PAGES=99    # the working set uffd-client make writes

need_uffd() {
	need_file "$UFFD" || return 1
	need_file "$UFFD_CLIENT" || return 1
	if [ "$(id -u)" != 0 ] && [ ! -w /dev/userfaultfd ]; then
		skip "userfaultfd needs root or access to /dev/userfaultfd"
		return 1
	fi
	"$UFFD_CLIENT" make "$T/mem" $UFFD_MIB "$T/ws" > "$T/make.out" 2> "$T/make.err" ||
		{ fail "uffd-client make failed"; return 1; }
}

# uffd_until COND_CMD SECONDS: poll every 50 ms until the command succeeds.
uffd_until() {
	local i
	for i in $(seq $(($2 * 20))); do
		eval "$1" && return 0
		sleep 0.05
	done
	return 1
}

# start_uffd NAME ARGS...: ember-uffd in the background on $T/uffd.sock
# (output in $T/NAME.err), UFFD_PID set once the socket is there.
start_uffd() {
	local name=$1
	shift
	"$UFFD" --socket "$T/uffd.sock" --mem-file "$T/mem" "$@" > "$T/$name.out" 2> "$T/$name.err" < /dev/null &
	UFFD_PID=$!
	uffd_until "grep -qs listening '$T/$name.err'" 5 || { fail "ember-uffd did not start"; return 1; }
}

# stop_uffd: SIGTERM, which must end it with status 0 and no socket left.
stop_uffd() {
	kill -TERM "$UFFD_PID" 2>/dev/null
	local st
	wait "$UFFD_PID"
	st=$?
	[ "$st" -eq 0 ] || fail "ember-uffd exited with $st on SIGTERM"
	[ ! -e "$T/uffd.sock" ] || fail "ember-uffd left its socket behind"
}

# wait_uffd SECONDS: for ember-uffd --once to exit; sets STATUS.
wait_uffd() {
	if ! uffd_until "! kill -0 $UFFD_PID 2>/dev/null" "$1"; then
		fail "ember-uffd --once did not exit"
		kill -KILL "$UFFD_PID" 2>/dev/null
	fi
	wait "$UFFD_PID"
	STATUS=$?
}

# run_client NAME ARGS...: uffd-client with a time limit; sets STATUS.
run_client() {
	local name=$1
	shift
	timeout --kill-after=5 30 "$UFFD_CLIENT" "$@" > "$T/$name.out" 2> "$T/$name.err" < /dev/null
	STATUS=$?
}

expect_client_ok() {
	[ "$STATUS" -eq 0 ] || fail "$1: uffd-client exited with $STATUS"
	grep -qF "checked $UFFD_PAGES pages: 0 bad" "$T/$1.out" || fail "$1: pages came back wrong"
}

test_uffd_serves_every_page() {
	need_uffd || return
	start_uffd uffd --once || return
	run_client client run "$T/uffd.sock" $UFFD_MIB
	expect_client_ok client
	wait_uffd 5
	[ "$STATUS" -eq 0 ] || fail "ember-uffd --once exited with $STATUS"
	# Every page came from a fault; a summary line for the connection.
	grep -qF "$UFFD_PAGES pages served by fault" "$T/uffd.err" || fail "fault count is not $UFFD_PAGES"
	grep -qF "2 regions, $UFFD_MIB MiB" "$T/uffd.err" || fail "the summary lacks the regions"
	grep -qF "1 remove events" "$T/uffd.err" || fail "the client's MADV_DONTNEED did not reach the handler"
	[ ! -e "$T/uffd.sock" ] || fail "ember-uffd left its socket behind"
}

test_uffd_working_set_is_prefetched() {
	need_uffd || return
	start_uffd uffd --once --working-set "$T/ws" || return
	run_client client run "$T/uffd.sock" $UFFD_MIB --ws "$T/ws"
	expect_client_ok client
	# Resident before the client touched anything, and nothing else was.
	grep -qF "prefetched $UFFD_WS_PAGES of $UFFD_WS_PAGES working-set pages before first touch; 0 other" \
		"$T/client.out" || fail "the working set was not resident before first touch"
	wait_uffd 5
	[ "$STATUS" -eq 0 ] || fail "ember-uffd --once exited with $STATUS"
	grep -qF "$((UFFD_PAGES - UFFD_WS_PAGES)) pages served by fault" "$T/uffd.err" ||
		fail "faults should have served only the pages outside the working set"
	grep -qE "$UFFD_WS_PAGES pages prefetched \([0-9]+ zero\) in [0-9.]+ ms" "$T/uffd.err" ||
		fail "no prefetch summary"
}

test_uffd_three_clients_at_once() {
	need_uffd || return
	start_uffd uffd --working-set "$T/ws" || return
	local pids=() i
	for i in 1 2 3; do
		timeout --kill-after=5 30 "$UFFD_CLIENT" run "$T/uffd.sock" $UFFD_MIB --ws "$T/ws" \
			> "$T/client$i.out" 2> "$T/client$i.err" < /dev/null &
		pids+=($!)
	done
	for i in 1 2 3; do
		wait "${pids[$((i - 1))]}"
		STATUS=$?
		expect_client_ok "client$i"
	done
	uffd_until "[ \$(grep -c 'pages served by fault' '$T/uffd.err') -eq 3 ]" 5 ||
		fail "expected three connection summaries"
	stop_uffd
}

test_uffd_faults_race_the_prefetch() {
	need_uffd || return
	# The working set is all of memory and the clients touch every page
	# at once: each page must be filled exactly once, by one or the other.
	start_uffd uffd --working-set "$T/ws.all" || return
	local pids=() i
	for i in 1 2 3; do
		timeout --kill-after=5 30 "$UFFD_CLIENT" run "$T/uffd.sock" $UFFD_MIB \
			> "$T/client$i.out" 2> "$T/client$i.err" < /dev/null &
		pids+=($!)
	done
	for i in 1 2 3; do
		wait "${pids[$((i - 1))]}"
		STATUS=$?
		expect_client_ok "client$i"
	done
	uffd_until "[ \$(grep -c 'pages served by fault' '$T/uffd.err') -eq 3 ]" 5 ||
		fail "expected three connection summaries"
	local sums
	sums=$(sed -nE 's/.* ([0-9]+) pages served by fault.* ([0-9]+) pages prefetched.*/\1 \2/p' "$T/uffd.err" |
		awk '{print $1 + $2}' | sort -u | tr '\n' ' ')
	[ "$sums" = "$UFFD_PAGES " ] || fail "pages filled per VM: '$sums', expected $UFFD_PAGES each"
	stop_uffd
}

test_uffd_handler_killed_client_sees_hup() {
	need_uffd || return
	start_uffd uffd || return
	timeout 30 "$UFFD_CLIENT" hup "$T/uffd.sock" $UFFD_MIB > "$T/hup.out" 2> "$T/hup.err" < /dev/null &
	local cpid=$!
	uffd_until "grep -qs connected '$T/hup.out'" 5 || { fail "the client did not connect"; kill "$cpid"; return; }
	kill -KILL "$UFFD_PID"
	wait "$UFFD_PID" 2>/dev/null
	# What ember relies on to report a dead handler: EOF within a second.
	uffd_until "! kill -0 $cpid 2>/dev/null" 1 || fail "no POLLHUP/EOF within a second of the handler's death"
	wait "$cpid"
	STATUS=$?
	[ "$STATUS" -eq 0 ] || fail "hup client exited with $STATUS"
	grep -qF "handler gone" "$T/hup.out" || fail "the client did not see the handler go"

	# Its socket file is left behind, stale: a new handler takes it over ...
	[ -S "$T/uffd.sock" ] || fail "expected a stale socket after SIGKILL"
	start_uffd uffd2 || return
	run_client client run "$T/uffd.sock" $UFFD_MIB
	expect_client_ok client
	# ... but a live one is refused, in one line.
	"$UFFD" --socket "$T/uffd.sock" --mem-file "$T/mem" > "$T/live.out" 2> "$T/live.err" < /dev/null
	STATUS=$?
	[ "$STATUS" -ne 0 ] || fail "a second handler on a live socket did not fail"
	grep -qF "is in use" "$T/live.err" || fail "no clear error for a live socket"
	[ "$(wc -l < "$T/live.err")" -eq 1 ] || fail "expected one error line for a live socket"
	stop_uffd
}

test_uffd_bad_input() {
	need_uffd || return
	local n
	"$UFFD" --socket "$T/x.sock" --mem-file "$T/nonexistent" > "$T/nomem.out" 2> "$T/nomem.err" < /dev/null
	STATUS=$?
	[ "$STATUS" -ne 0 ] || fail "a missing memory file did not fail"
	grep -qF "$T/nonexistent: No such file or directory" "$T/nomem.err" || fail "unclear missing-file error"
	n=$(wc -l < "$T/nomem.err"); [ "$n" -eq 1 ] || fail "missing memory file: $n error lines"
	[ ! -e "$T/x.sock" ] || fail "a socket was created anyway"

	"$UFFD" --mem-file "$T/mem" > "$T/noargs.out" 2> "$T/noargs.err" < /dev/null
	STATUS=$?
	[ "$STATUS" -ne 0 ] || fail "a missing --socket did not fail"
	n=$(wc -l < "$T/noargs.err"); [ "$n" -eq 1 ] || fail "missing --socket: $n error lines"

	printf 'EMBERWS1\002\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0' > "$T/badws"
	"$UFFD" --socket "$T/x.sock" --mem-file "$T/mem" --working-set "$T/badws" > "$T/badws.out" 2> "$T/badws.err" < /dev/null
	STATUS=$?
	[ "$STATUS" -ne 0 ] || fail "a bad working set did not fail"
	grep -qF "unsupported version 2" "$T/badws.err" || fail "unclear working-set error"
	n=$(wc -l < "$T/badws.err"); [ "$n" -eq 1 ] || fail "bad working set: $n error lines"

	run_client nosock run "$T/missing.sock" $UFFD_MIB
	[ "$STATUS" -eq 1 ] || fail "connecting to a missing socket exited with $STATUS"
	grep -qF "cannot connect to the page-fault handler at $T/missing.sock: No such file or directory" \
		"$T/nosock.err" || fail "unclear missing-socket error"
	n=$(wc -l < "$T/nosock.err"); [ "$n" -eq 1 ] || fail "missing socket: $n error lines"
}

test_uffd_hostile_handshakes_are_dropped() {
	need_uffd || return
	start_uffd uffd || return
	local kinds="garbage nofd notuffd twofds outside misaligned pagesize overlap notinteger empty toomany wrongregion"
	local k count=0
	for k in $kinds; do
		run_client "hostile-$k" hostile "$T/uffd.sock" "$k"
		[ "$STATUS" -eq 0 ] || fail "hostile $k: the handler did not drop the connection"
		count=$((count + 1))
	done
	# A client that says nothing at all, then one that behaves.
	run_client hostile-silent hostile "$T/uffd.sock" silent
	count=$((count + 1))
	run_client client run "$T/uffd.sock" $UFFD_MIB
	expect_client_ok client
	# One line per dropped connection, each saying why; the good one served.
	local dropped="^ember-uffd: connection [0-9]+ \(pid [0-9]+\) dropped"
	uffd_until "[ \$(grep -cE '$dropped' '$T/uffd.err') -eq $count ]" 5 ||
		fail "expected $count 'dropped' lines, got $(grep -cE "$dropped" "$T/uffd.err")"
	grep -qF "not JSON" "$T/uffd.err" || fail "garbage: no reason logged"
	grep -qF "not a userfaultfd" "$T/uffd.err" || fail "notuffd: no reason logged"
	grep -qF "beyond the memory file" "$T/uffd.err" || fail "outside: no reason logged"
	grep -qF "outside every region" "$T/uffd.err" || fail "wrongregion: no reason logged"
	uffd_until "grep -qF '$UFFD_PAGES pages served by fault' '$T/uffd.err'" 5 ||
		fail "the good client after the hostile ones was not served"
	kill -0 "$UFFD_PID" 2>/dev/null || fail "ember-uffd died"
	stop_uffd
}
