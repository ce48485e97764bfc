# ember-fn's clone lifecycle and admission: warm clone reuse
# (clone_policy "reuse") against destroy, the queue past max_concurrency
# (max_queued), an invocation waiting while its function is deleted, and
# GET /metrics. Two functions, registered at once in one ember-fn.
LINUX_TIMEOUT=${LINUX_TIMEOUT:-900}
EMBER_FN=${EMBER_FN:-$BUILD/ember-fn}

# The body's first line picks what the handler does.
POOL_HANDLER='read -r op; case $op in up) tr a-z A-Z;; w) echo mark > /tmp/mark; cat /tmp/mark;; r) cat /tmp/mark 2>/dev/null || echo none;; nap) sleep 8; echo napped;; long) sleep 20; echo long;; sleep) sleep 100000;; esac'

# pool_call NAME METHOD PATH [BODY]: curl to ember-fn's socket; the
# status in $T/NAME.code, the body in $T/NAME.body, the headers in
# $T/NAME.headers.
pool_call() {
	local n=$1
	curl -s -m "$LINUX_TIMEOUT" --unix-socket "$T/fn.sock" -X "$2" "http://localhost$3" \
		${4+--data-binary "$4"} -D "$T/$n.headers" -o "$T/$n.body" -w '%{http_code}' > "$T/$n.code"
}

# pool_get NAME JQ: the value of JQ in GET /functions/NAME.
pool_get() { curl -s -m 60 --unix-socket "$T/fn.sock" "http://localhost/functions/$1" | jq -c "$2"; }

# pool_wait NAME JQ: until JQ (a boolean) holds for GET /functions/NAME.
pool_wait() {
	local i
	for i in $(seq 1200); do
		[ "$(pool_get "$1" "$2")" = true ] && return 0
		sleep 0.1
	done
	return 1
}

# pool_expect NAME BODY REUSED POOLED: the answer saved as N was 200 with
# BODY, and said whether it came from a warm clone and from the pool.
pool_expect() {
	[ "$(cat "$T/$1.code")" = 200 ] && [ "$(cat "$T/$1.body")" = "$2" ] &&
		grep -qi "^X-Ember-Fn-Reused: $3" "$T/$1.headers" && grep -qi "^X-Ember-Fn-Pooled: $4" "$T/$1.headers" ||
		fail "$1: wanted 200 '$2' reused $3 pooled $4: $(cat "$T/$1.code" "$T/$1.body"; tr -d '\r' < "$T/$1.headers" | grep -i '^X-Ember')"
}

test_fn_pool_reuse_queue_metrics() {
	need_kvm || return
	need_file "$EMBER_FN" || return
	fn_start /tmp/efp.$$ || return
	local state=$FN_STATE fn=$FN_PID i

	# "plain" destroys its clones (the default) and queues two past one
	# running; "warm" keeps one clone that answered, and pools one.
	local base
	base=$(jq -nc --arg k "$(realpath "$BUILD/vmlinux")" --arg r "$T/root.ext4" --arg h "$POOL_HANDLER" \
		'{kernel_image_path: $k, rootfs_path: $r, handler: $h}')
	pool_call plain PUT /functions/plain "$(jq -c '. + {timeout_ms: 60000, max_concurrency: 1, max_queued: 2}' <<< "$base")" &
	local plain_put=$!
	pool_call warm PUT /functions/warm "$(jq -c '. + {timeout_ms: 45000, clone_policy: "reuse", max_warm: 1, pool_size: 1}' <<< "$base")"
	wait $plain_put
	[ "$(cat "$T/plain.code")" = 204 ] && [ "$(cat "$T/warm.code")" = 204 ] ||
		{ fail "register: plain $(cat "$T/plain.code" "$T/plain.body"), warm $(cat "$T/warm.code" "$T/warm.body")"; kill $fn; wait $fn; rm -rf "$state"; return; }
	[ "$(pool_get plain '[.clone_policy, .max_warm, .warm]')" = '["destroy",1,0]' ] ||
		fail "plain's policy: $(pool_get plain .)"

	# destroy: the next invocation does not see the last one's write.
	pool_call w POST /functions/plain/invoke $'w\n'
	pool_expect w mark 0 0
	pool_call r POST /functions/plain/invoke $'r\n'
	pool_expect r none 0 0
	[ "$(pool_get plain .warm)" = 0 ] || fail "plain kept a clone: $(pool_get plain .)"

	# max_concurrency 1, max_queued 2: three at once are served, the two
	# that waited included; a fourth while they are in is refused.
	for i in 1 2 3; do pool_call "q$i" POST /functions/plain/invoke $'nap\n' & done
	pool_wait plain '.running == 1 and .queued == 2' || fail "not 1 running and 2 queued: $(pool_get plain .)"
	pool_call q4 POST /functions/plain/invoke $'up\nx'
	[ "$(cat "$T/q4.code")" = 429 ] && grep -q '1 invocations running and 2 waiting' "$T/q4.body" ||
		fail "a fourth at once: $(cat "$T/q4.code" "$T/q4.body")"
	wait $(jobs -p | grep -v "^$fn$")
	for i in 1 2 3; do pool_expect "q$i" napped 0 0; done
	[ "$(pool_get plain '[.invocations, .refused, .running, .queued]')" = '[5,1,0,0]' ] ||
		fail "plain's counts after the queue: $(pool_get plain .)"

	# Deleted while two wait: they are told so at once; the DELETE
	# answers when the running one has.
	pool_call d1 POST /functions/plain/invoke $'long\n' &
	local d1=$!
	pool_wait plain '.running == 1' || fail "long did not start: $(pool_get plain .)"
	pool_call d2 POST /functions/plain/invoke $'up\nx' &
	local d2=$!
	pool_call d3 POST /functions/plain/invoke $'up\nx' &
	local d3=$!
	pool_wait plain '.queued == 2' || fail "not 2 queued: $(pool_get plain .)"
	pool_call del DELETE /functions/plain &
	local del=$!
	wait $d2 $d3
	for i in d2 d3; do
		[ "$(cat "$T/$i.code")" = 404 ] && grep -q 'function plain was deleted while this invocation waited' "$T/$i.body" ||
			fail "$i, queued while plain was deleted: $(cat "$T/$i.code" "$T/$i.body")"
	done
	kill -0 $d1 2> /dev/null || fail "the running invocation ended before the queued ones were told (test assumption)"
	wait $d1 $del
	pool_expect d1 long 0 0
	[ "$(cat "$T/del.code")" = 204 ] || fail "delete plain: $(cat "$T/del.code" "$T/del.body")"

	# reuse: the pooled clone that wrote is kept warm and serves the next
	# invocation before the pool (which stays full), and sees the write.
	pool_wait warm '.pool == 1' || fail "warm's pool did not fill: $(pool_get warm .)"
	pool_call w POST /functions/warm/invoke $'w\n'
	pool_expect w mark 0 1
	pool_wait warm '.warm == 1 and .pool == 1' || fail "warm did not keep the clone: $(pool_get warm .)"
	pool_call r POST /functions/warm/invoke $'r\n'
	pool_expect r mark 1 0
	[ "$(pool_get warm '[.warm, .pool, .reuses]')" = '[1,1,1]' ] || fail "after a reuse: $(pool_get warm .)"

	# A warm clone that times out is not kept: the next comes from the pool.
	pool_call t POST /functions/warm/invoke $'sleep\n'
	[ "$(cat "$T/t.code")" = 504 ] && grep -qi '^X-Ember-Fn-Reused: 1' "$T/t.headers" ||
		fail "timeout on the warm clone: $(cat "$T/t.code" "$T/t.body" "$T/t.headers")"
	[ "$(pool_get warm .warm)" = 0 ] || fail "a clone that timed out was kept: $(pool_get warm .)"
	pool_call r2 POST /functions/warm/invoke $'r\n'
	pool_expect r2 none 0 1

	# Two that answer at once: one served warm; max_warm 1 keeps one.
	pool_wait warm '.pool == 1 and .warm == 1' || fail "before two at once: $(pool_get warm .)"
	pool_call n1 POST /functions/warm/invoke $'nap\n' &
	local n1=$!
	pool_call n2 POST /functions/warm/invoke $'nap\n'
	wait $n1
	[ "$(cat "$T/n1.code" "$T/n2.code")" = 200200 ] || fail "two at once: $(cat "$T/n1.code" "$T/n1.body" "$T/n2.code" "$T/n2.body")"
	[ "$(cat "$T/n1.headers" "$T/n2.headers" | grep -ci '^X-Ember-Fn-Reused: 1')" = 1 ] ||
		fail "two at once, not one warm: $(cat "$T/n1.headers" "$T/n2.headers" | grep -i '^X-Ember-Fn-Re')"
	[ "$(pool_get warm .warm)" = 1 ] || fail "max_warm 1: $(pool_get warm .)"

	# A warm clone whose ember died is not used: a new one answers, and
	# (restored on that invocation's thread) outlives the thread as the
	# next warm one, without the mark.
	pool_wait warm '.pool == 1' || fail "the pool did not refill: $(pool_get warm .)"
	pkill -KILL -f -- "--api-sock $state/warm/c" || fail "no clone to kill"
	pool_call k POST /functions/warm/invoke $'up\nafter'
	pool_expect k AFTER 0 0
	pool_call k2 POST /functions/warm/invoke $'r\n'
	pool_expect k2 none 1 0

	# GET /metrics: warm's counts under GET /functions/warm's keys; the
	# total keeps deleted plain's 6 invocations and 1 refusal.
	local keys='[.invocations, .failures, .timeouts, .refused, .queued, .running, .pool, .warm, .restores, .reuses]'
	pool_call m GET /metrics
	[ "$(cat "$T/m.code")" = 200 ] || fail "GET /metrics: $(cat "$T/m.code" "$T/m.body")"
	[ "$(jq -c ".functions.warm | $keys" "$T/m.body")" = "$(pool_get warm "$keys")" ] ||
		fail "metrics and GET differ: $(cat "$T/m.body") vs $(pool_get warm .)"
	jq -e '.functions | keys == ["warm"]' "$T/m.body" > /dev/null || fail "metrics' functions: $(cat "$T/m.body")"
	jq -e '.functions.warm as $w | $w.invocations == 8 and $w.timeouts == 1 and $w.reuses == 4 and
		$w.restores >= 2 and .total.invocations == $w.invocations + 6 and .total.refused == 1 and
		.total.timeouts == 1 and .total.warm == 1 and .total.running == 0' "$T/m.body" > /dev/null ||
		fail "metrics: $(cat "$T/m.body")"
	pool_call m POST /metrics
	[ "$(cat "$T/m.code")" = 405 ] || fail "POST /metrics: $(cat "$T/m.code")"

	pool_call del DELETE /functions/warm
	[ "$(cat "$T/del.code")" = 204 ] || fail "delete warm: $(cat "$T/del.code")"
	pgrep -f -- "--api-sock $state/" > /dev/null && fail "delete left clones running: $(pgrep -af -- "--api-sock $state/")"
	[ -z "$(ls "$state")" ] || fail "delete left $(ls -R "$state")"
	kill $fn
	wait $fn 2>/dev/null
	rm -rf "$state"
}
