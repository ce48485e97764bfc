# ember-fn's scratch drives: the function's definition (handler, init, env)
# travels on the template's scratch image, and each clone runs it in an
# overlay of the shared read-only root and its own copy of that image.
# Uses fn_call, EMBER_FN and LINUX_TIMEOUT from test_fn.sh.

# The handler: the body's first line picks what it does. Quotes, a
# backslash and newlines: it never goes on a command line.
FN_SCRATCH_HANDLER='read -r op
case "$op" in
rw) echo "$GREETING" > /etc/mark; mkdir -p /var/lib/fn && printf '"'"'%s\n'"'"' "$QUOTED" > /var/lib/fn/note
    cat /etc/from-init /etc/mark /var/lib/fn/note;;
r) cat /etc/mark /var/lib/fn/note 2>/dev/null || echo none;;
hold) echo held > /etc/mark; sync; sleep 600;;
esac'

test_fn_scratch_overlay_per_clone() {
	need_kvm || return
	need_file "$EMBER_FN" || return
	command -v debugfs > /dev/null || { skip "no debugfs (e2fsprogs)"; return; }
	fn_start /tmp/efs.$$ || return
	local state=$FN_STATE fn=$FN_PID i

	fn_call PUT /functions/fs '{"kernel_image_path": "/k", "rootfs_path": "/r", "handler": "a", "env": {"1X": "y"}}'
	[ "$(cat "$T/code")" = 400 ] && grep -q 'env: a name must be' "$T/body" || fail "a bad env name: $(cat "$T/code" "$T/body")"

	local reg
	reg=$(jq -nc --arg k "$(realpath "$BUILD/vmlinux")" --arg r "$T/root.ext4" --arg h "$FN_SCRATCH_HANDLER" \
		'{kernel_image_path: $k, rootfs_path: $r, handler: $h, init: "echo \"init: $GREETING\" > /etc/from-init",
		  env: {GREETING: "hello world", QUOTED: "it'"'"'s \"q\" \\ too"}, timeout_ms: 120000, max_concurrency: 2}')
	fn_call PUT /functions/fs "$reg"
	[ "$(cat "$T/code")" = 204 ] || { fail "register: $(cat "$T/code" "$T/body")"; kill $fn; wait $fn; return; }
	local dir=$state/fs sums
	[ -f "$dir/scratch.ext4" ] || fail "no template scratch image in $(ls "$dir")"
	sums=$(cd "$dir" && sha256sum "$T/root.ext4" scratch.ext4 template.mem template.state)

	# Writes into the merged root work and read back; init ran there too,
	# both with the env.
	fn_call POST /functions/fs/invoke $'rw\n'
	[ "$(cat "$T/code")" = 200 ] && [ "$(cat "$T/body")" = "$(printf '%s\n' 'init: hello world' 'hello world' "it's \"q\" \\ too")" ] ||
		fail "rw: $(cat "$T/code" "$T/body")"
	# The next clone does not see them.
	fn_call POST /functions/fs/invoke $'r\n'
	[ "$(cat "$T/code")" = 200 ] && [ "$(cat "$T/body")" = none ] || fail "a clone saw another's writes: $(cat "$T/body")"
	# Every finished clone took its scratch copy with it.
	ls "$dir"/c*/scratch.ext4 > /dev/null 2>&1 && fail "scratch copies left: $(ls "$dir"/c*)"

	# A write reaches the clone's own copy (read while the clone lives,
	# with the handler asleep after its sync), and only that copy.
	curl -s -m "$LINUX_TIMEOUT" --unix-socket "$T/fn.sock" -X POST http://localhost/functions/fs/invoke \
		--data-binary $'hold\n' -o /dev/null -w '%{http_code}' > "$T/hold.code" &
	local hold=$! copy=
	for i in $(seq 1200); do
		for copy in "$dir"/c*/scratch.ext4; do
			[ -f "$copy" ] && [ "$(debugfs -R 'cat /upper/etc/mark' "$copy" 2> /dev/null)" = held ] && break 2
		done
		copy=
		sleep 0.1
	done
	[ -n "$copy" ] || fail "the write did not reach a clone's scratch copy: $(ls "$dir"/c* 2>&1)"
	[ -z "$(debugfs -R 'cat /upper/etc/mark' "$dir/scratch.ext4" 2> /dev/null)" ] || fail "the write reached the template's image"
	# Its ember killed: the invocation fails, and the copy goes with the clone.
	pkill -KILL -f -- "--api-sock ${copy%/scratch.ext4}/api" || fail "no clone to kill for $copy"
	wait $hold
	[ "$(cat "$T/hold.code")" = 502 ] || fail "hold: $(cat "$T/hold.code")"
	[ ! -e "$copy" ] || fail "$copy outlived its clone"
	fn_call POST /functions/fs/invoke $'r\n'
	[ "$(cat "$T/body")" = none ] || fail "after the hold: $(cat "$T/code" "$T/body")"

	# The template's images and memory are as they were.
	[ "$(cd "$dir" && sha256sum "$T/root.ext4" scratch.ext4 template.mem template.state)" = "$sums" ] ||
		fail "the template's files changed: $(cd "$dir" && sha256sum "$T/root.ext4" scratch.ext4 template.mem template.state | diff - <(echo "$sums"))"
	fn_call DELETE /functions/fs
	[ "$(cat "$T/code")" = 204 ] || fail "delete: $(cat "$T/code")"
	[ ! -e "$dir" ] || fail "delete left $(ls -R "$dir")"
	kill $fn
	wait $fn 2>/dev/null
	rm -rf "$state"
}
