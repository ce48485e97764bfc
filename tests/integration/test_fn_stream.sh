# ember-fn with handler_mode "stream": the template snapshot holds the
# handler started and initialised, and every clone resumes that process.
LINUX_TIMEOUT=${LINUX_TIMEOUT:-900}
EMBER_FN=${EMBER_FN:-$BUILD/ember-fn}

# Answers "PID:N" (its $$, how many requests it has taken) and the body
# (one line) with shell builtins only; a body "exit" makes it exit 5.
FN_STREAM_FN_HANDLER='echo EFS1 ready; n=0; while read -r m len; do n=$((n+1)); read -r body; [ x$body = xexit ] && exit 5; id=$$:$n; echo EFS1 0 $((${#id} + 1 + len)); echo $id; echo $body; done'

# The handler us and total ms of the last answer.
stream_times() {
	echo "handler $(grep -i '^X-Ember-Fn-Handler-Us' "$T/headers" | tr -d '\r' | cut -d' ' -f2) us," \
		"total $(grep -i '^X-Ember-Fn-Total-Ms' "$T/headers" | tr -d '\r' | cut -d' ' -f2) ms"
}

test_fn_stream_clones_resume_the_template_handler() {
	need_kvm || return
	need_file "$EMBER_FN" || return
	fn_start /tmp/eft.$$ || return
	local state=$FN_STATE fn=$FN_PID i

	fn_call PUT /functions/s '{"kernel_image_path": "/k", "rootfs_path": "/r", "handler": "cat", "handler_mode": "forked"}'
	[ "$(cat "$T/code")" = 400 ] && grep -q 'handler_mode: must be' "$T/body" ||
		fail "a bad handler_mode: $(cat "$T/code" "$T/body")"
	fn_call PUT /functions/s "$(jq -nc --arg k "$(realpath "$BUILD/vmlinux")" --arg r "$T/root.ext4" \
		--arg h "$FN_STREAM_FN_HANDLER" '{kernel_image_path: $k, rootfs_path: $r, handler: $h, handler_mode: "stream",
		timeout_ms: 60000}')"
	[ "$(cat "$T/code")" = 204 ] || { fail "register: $(cat "$T/code" "$T/body")"; kill $fn; wait $fn; rm -rf "$state"; return; }
	fn_call GET /functions/s
	[ "$(jq -r .handler_mode "$T/body")" = stream ] || fail "GET: $(cat "$T/body")"

	# Each invocation a new clone, each answered by the template's handler
	# process on its first request: the same PID, counting 1.
	local first=
	for i in 1 2 3; do
		fn_call POST /functions/s/invoke "hello $i"$'\n'
		[ "$(cat "$T/code")" = 200 ] || { fail "invoke $i: $(cat "$T/code" "$T/body")"; continue; }
		[ -n "$first" ] || first=$(head -1 "$T/body" | cut -d: -f1)
		[ "$(cat "$T/body")" = "$first:1"$'\n'"hello $i" ] || fail "invoke $i: $(cat "$T/body")"
		echo "    stream invoke $i: $(stream_times)"
	done
	# A handler that ends: 502 saying so, not a hang.
	fn_call POST /functions/s/invoke exit$'\n'
	[ "$(cat "$T/code")" = 502 ] && grep -q 'the stream handler ended (status 5)' "$T/body" &&
		grep -qi '^X-Ember-Fn-Status: died' "$T/headers" || fail "exit: $(cat "$T/code" "$T/body" "$T/headers")"
	fn_call POST /functions/s/invoke again$'\n'
	[ "$(cat "$T/body")" = "$first:1"$'\n'again ] || fail "after the exit: $(cat "$T/code" "$T/body")"
	fn_call DELETE /functions/s
	[ "$(cat "$T/code")" = 204 ] || fail "delete: $(cat "$T/code")"

	# The same answer from a process per request, for its handler time.
	fn_call PUT /functions/p "$(jq -nc --arg k "$(realpath "$BUILD/vmlinux")" --arg r "$T/root.ext4" \
		'{kernel_image_path: $k, rootfs_path: $r, handler: "read -r body; echo $$:1; echo $body", timeout_ms: 60000}')"
	[ "$(cat "$T/code")" = 204 ] || fail "register p: $(cat "$T/code" "$T/body")"
	for i in 1 2 3; do
		fn_call POST /functions/p/invoke "hello $i"$'\n'
		grep -qx "hello $i" "$T/body" || fail "process invoke $i: $(cat "$T/code" "$T/body")"
		echo "    process invoke $i: $(stream_times)"
	done
	kill $fn
	wait $fn 2>/dev/null
	rm -rf "$state"
}
