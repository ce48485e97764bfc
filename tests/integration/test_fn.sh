# ember-fn, the function runtime: a function registered (its template
# booted and snapshotted), invoked through clones restored per request.
LINUX_TIMEOUT=${LINUX_TIMEOUT:-900}
EMBER_FN=${EMBER_FN:-$BUILD/ember-fn}

# The handler: the body's first line picks what it does. The timeout is
# a minute: a loaded host's emulated guest can take 15 s for an answer.
FN_HANDLER='read -r op; case $op in up) tr a-z A-Z;; sleep) sleep 100000;; w) echo mark > /tmp/mark; cat /tmp/mark;; r) cat /tmp/mark 2>/dev/null || echo none;; esac'

# fn_call METHOD PATH [BODY]: curl to ember-fn's socket; the status in
# $T/code, the body in $T/body, the headers in $T/headers.
fn_call() {
	curl -s -m "$LINUX_TIMEOUT" --unix-socket "$T/fn.sock" -X "$1" "http://localhost$2" \
		${3+--data-binary "$3"} -D "$T/headers" -o "$T/body" -w '%{http_code}' > "$T/code"
}

# fn_start STATE_DIR: a fresh STATE_DIR, $T/root.ext4 a copy of the
# rootfs, and ember-fn serving on $T/fn.sock with them (its pid in FN_PID,
# the directory in FN_STATE). Shared by the test_fn_*.sh files.
fn_start() {
	FN_STATE=$1
	rm -rf "$FN_STATE"
	cp --sparse=always "$BUILD/rootfs.ext4" "$T/root.ext4"
	"$EMBER_FN" --api-sock "$T/fn.sock" --state-dir "$FN_STATE" --ember "$EMBER" --jailer "$JAILER" \
		> "$T/fn.out" 2> "$T/fn.err" &
	FN_PID=$!
	local i
	for i in $(seq 50); do [ -S "$T/fn.sock" ] && return 0; sleep 0.1; done
	fail "ember-fn never listened on $T/fn.sock: $(cat "$T/fn.err")"
	kill "$FN_PID"
	wait "$FN_PID" 2>/dev/null
	return 1
}

# fn_keep_logs STATE_DIR: each function's template log into $T (as
# NAME-template.err), where a failed test's report shows it.
fn_keep_logs() {
	local l n
	for l in "$1"/*/template.log; do
		[ -f "$l" ] || continue
		n=${l%/template.log}
		cp "$l" "$T/${n##*/}-template.err"
	done
}

test_fn_register_invoke_isolate_fail() {
	need_kvm || return
	need_file "$EMBER_FN" || return
	fn_start /tmp/efn.$$ || return
	local state=$FN_STATE fn=$FN_PID i

	# Bad registrations answer 400 with a reason, and register nothing.
	fn_call PUT /functions/up '{"kernel_image_path": "/k", "rootfs_path": "/r"}'
	[ "$(cat "$T/code")" = 400 ] && grep -q 'handler: missing' "$T/body" || fail "no handler: $(cat "$T/code" "$T/body")"
	fn_call PUT /functions/up '{"kernel_image_path": "/k", "rootfs_path": "/r", "handler": "cat", "timeout_ms": 0}'
	[ "$(cat "$T/code")" = 400 ] && grep -q 'timeout_ms: must be an integer from 1' "$T/body" || fail "timeout 0: $(cat "$T/body")"
	fn_call PUT '/functions/a.b' '{"kernel_image_path": "/k", "rootfs_path": "/r", "handler": "cat"}'
	[ "$(cat "$T/code")" = 400 ] || fail "a bad name: $(cat "$T/code" "$T/body")"
	fn_call POST /functions/up/invoke 'x'
	[ "$(cat "$T/code")" = 404 ] || fail "invoking what is not there: $(cat "$T/code")"

	local sum_before
	sum_before=$(sha256sum < "$T/root.ext4")
	local reg
	reg=$(jq -nc --arg k "$(realpath "$BUILD/vmlinux")" --arg r "$T/root.ext4" --arg h "$FN_HANDLER" \
		'{kernel_image_path: $k, rootfs_path: $r, handler: $h, timeout_ms: 60000, max_concurrency: 4, max_queued: 0,
		  pool_size: 2}')
	fn_call PUT /functions/up "$reg"
	[ "$(cat "$T/code")" = 204 ] || { fail "register: $(cat "$T/code" "$T/body")"; kill $fn; return; }
	fn_call PUT /functions/up "$reg"
	[ "$(cat "$T/code")" = 409 ] || fail "registering twice: $(cat "$T/code")"
	local mem_before
	mem_before=$(sha256sum < "$state/up/template.mem")
	# The pool fills with paused clones; the first invocation takes one.
	fn_pool_full() {
		for i in $(seq 600); do
			[ "$(curl -s --unix-socket "$T/fn.sock" http://localhost/functions/up | jq .pool)" = 2 ] && return 0
			sleep 0.1
		done
		return 1
	}
	fn_pool_full || fail "the pool did not fill: $(curl -s --unix-socket "$T/fn.sock" http://localhost/functions/up)"
	fn_call POST /functions/up/invoke $'up\npooled'
	[ "$(cat "$T/body")" = POOLED ] && grep -qi '^X-Ember-Fn-Pooled: 1' "$T/headers" ||
		fail "from the pool: $(cat "$T/code" "$T/body" "$T/headers")"

	# 100 invocations, 4 at a time: every answer right.
	seq 100 | xargs -P 4 -I{} sh -c "curl -s -m 120 --unix-socket '$T/fn.sock' -X POST \
		http://localhost/functions/up/invoke --data-binary \"\$(printf 'up\nhello {}')\" -o '$T/inv.{}' -w '%{http_code}\n' \
		>> '$T/codes'"
	[ "$(grep -c '^200$' "$T/codes")" = 100 ] || fail "of 100 invocations: $(sort "$T/codes" | uniq -c | tr '\n' ' ')"
	local bad=0
	for i in $(seq 100); do [ "$(cat "$T/inv.$i" 2>/dev/null)" = "HELLO $i" ] || bad=$((bad + 1)); done
	[ $bad = 0 ] || fail "$bad of 100 answers were wrong (e.g. $(cat "$T/inv.1"))"

	# Clones never see each other's writes.
	fn_call POST /functions/up/invoke $'w\n'
	[ "$(cat "$T/body")" = mark ] || fail "write: $(cat "$T/code" "$T/body")"
	fn_call POST /functions/up/invoke $'r\n'
	[ "$(cat "$T/body")" = none ] || fail "a clone saw another's write: $(cat "$T/body")"

	# Past the timeout: 504, and the next invocation is served.
	fn_call POST /functions/up/invoke $'sleep\n'
	[ "$(cat "$T/code")" = 504 ] && grep -q 'past the timeout' "$T/body" || fail "timeout: $(cat "$T/code" "$T/body")"
	grep -qi '^X-Ember-Fn-Status: timeout' "$T/headers" || fail "timeout: $(cat "$T/headers")"
	# A clone that goes silent while its handler runs (its ember stopped,
	# as a stalled host stops it): still 504 once the timeout and the
	# slack after it have passed, not a failure of ember-fn's.
	fn_call POST /functions/up/invoke $'sleep\n' &
	local silent=$!
	for i in $(seq 600); do
		[ "$(curl -s --unix-socket "$T/fn.sock" http://localhost/functions/up | jq .running)" = 1 ] && break
		sleep 0.1
	done
	sleep 20 # the handler is running by now, well before its 60 s
	pkill -STOP -f -- "--api-sock $state/up/c"
	wait $silent
	pkill -CONT -f -- "--api-sock $state/up/c"
	[ "$(cat "$T/code")" = 504 ] && grep -q 'did not answer within' "$T/body" ||
		fail "a silent clone past the timeout: $(cat "$T/code" "$T/body")"

	# Beyond max_concurrency with max_queued 0: refused with 429.
	for i in 1 2 3 4; do
		curl -s -m 120 --unix-socket "$T/fn.sock" -X POST http://localhost/functions/up/invoke \
			--data-binary $'sleep\n' -o /dev/null -w '%{http_code}\n' >> "$T/busy" &
	done
	for i in $(seq 600); do
		[ "$(curl -s --unix-socket "$T/fn.sock" http://localhost/functions/up | jq .running)" = 4 ] && break
		sleep 0.1
	done
	fn_call POST /functions/up/invoke $'up\nx'
	[ "$(cat "$T/code")" = 429 ] || fail "a fifth at once: $(cat "$T/code" "$T/body")"
	# A clone's ember killed mid-invocation: 502 for that one.
	pkill -KILL -f -- "--api-sock $state/up/c" || fail "no clone to kill"
	wait $(jobs -p | grep -v "^$fn$") 2>/dev/null
	grep -q '^502$' "$T/busy" || fail "killed clones: $(tr '\n' ' ' < "$T/busy")"
	fn_call POST /functions/up/invoke $'up\nafter'
	[ "$(cat "$T/body")" = AFTER ] || fail "after the kill: $(cat "$T/code" "$T/body")"

	fn_pool_full || fail "the pool did not fill again"
	fn_call GET /functions/up
	jq -e '.invocations >= 106 and .refused == 1 and .timeouts == 2 and .running == 0 and (.latency_ms.p50 > 0)' \
		"$T/body" > /dev/null || fail "GET: $(cat "$T/body")"
	# The template's files are as they were.
	[ "$(sha256sum < "$T/root.ext4")" = "$sum_before" ] || fail "the rootfs image changed"
	[ "$(sha256sum < "$state/up/template.mem")" = "$mem_before" ] || fail "the template's memory changed"
	fn_call DELETE /functions/up
	[ "$(cat "$T/code")" = 204 ] || fail "delete: $(cat "$T/code")"
	[ ! -e "$state/up" ] || fail "delete left $(ls "$state/up")"
	pgrep -f -- "--api-sock $state/" > /dev/null && fail "delete left clones running: $(pgrep -af -- "--api-sock $state/")"
	kill $fn
	wait $fn 2>/dev/null
	rm -rf "$state"
}
