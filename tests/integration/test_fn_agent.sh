# The function agent (rootfs/agent.c) in a Linux guest, driven from the
# host through the vsock socket by agent-client (api/fn/agent_conn.c):
# results, exit codes, signals, timeouts, output bounds, the process
# group cleaned up after each invocation, refused frames.
LINUX_TIMEOUT=${LINUX_TIMEOUT:-900}
AGENT_CLIENT=${AGENT_CLIENT:-$(dirname "$EMBER")/agent-client}

# The handler: the body's first line picks what it does.
FN_AGENT_HANDLER='read -r op; case $op in upper) tr a-z A-Z;; init) cat /tmp/init-done;; fail) echo partial; exit 3;; sleep) sleep 60;; big) dd if=/dev/zero bs=1M count=7 2>/dev/null;; crash) kill -SEGV $$;; orphan) sleep 600 & echo left;; count) pidof sleep | wc -w;; esac'

test_fn_agent_invocations() {
	need_kvm || return
	need_file "$AGENT_CLIENT" || return
	cp --sparse=always "$BUILD/rootfs.ext4" "$T/root.ext4"
	local uds="$T/v.sock"
	local cmd="ember-agent --init 'echo initialised > /tmp/init-done' 1024 '$FN_AGENT_HANDLER'"
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/vmlinux")",
  "boot_args": "console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"$cmd\""},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
 "drives": [{"drive_id": "rootfs", "path_on_host": "$T/root.ext4", "is_root_device": true}],
 "vsock": {"guest_cid": 3, "uds_path": "$uds"}}
JSON
	"$EMBER" --no-api --config-file "$T/vm.json" > "$T/vm.out" 2> "$T/vm.err" < /dev/null &
	local pid=$!
	wait_out vm "ember-agent: ready" "$LINUX_TIMEOUT" || { kill $pid; wait $pid; return; }
	invoke() { # NAME TIMEOUT_MS BODY [COUNT]
		printf '%b' "$3" | "$AGENT_CLIENT" "$uds" 1024 "$2" ${4:-} > "$T/$1.got" 2> "$T/$1.meta" ||
			fail "$1: $(cat "$T/$1.meta")"
	}

	# Every timeout but the one under test is far above what a handler
	# needs: a loaded host can stall the guest for seconds.
	invoke upper 60000 'upper\nhello from the host\n' 20
	[ "$(grep -c '^status=ok code=0 bytes=20 ' "$T/upper.meta")" = 20 ] ||
		fail "upper: $(wc -l < "$T/upper.meta") answers, unexpected: $(grep -v '^status=ok code=0 bytes=20 ' "$T/upper.meta" | head -3)"
	[ "$(grep -c '^HELLO FROM THE HOST$' "$T/upper.got")" = 20 ] ||
		fail "upper: $(grep -vc '^HELLO FROM THE HOST$' "$T/upper.got") unexpected output lines: $(grep -v '^HELLO FROM THE HOST$' "$T/upper.got" | head -3 | od -c | head -5)"
	invoke init 60000 'init\n'
	grep -qx initialised "$T/init.got" || fail "the --init command did not run before ready"
	invoke fail 60000 'fail\n'
	grep -q '^status=exit code=3 bytes=8 ' "$T/fail.meta" || fail "fail: $(cat "$T/fail.meta")"
	grep -qx partial "$T/fail.got" || fail "fail: the output before the exit is lost"
	invoke crash 60000 'crash\n'
	grep -q '^status=signal code=11 ' "$T/crash.meta" || fail "crash: $(cat "$T/crash.meta")"
	invoke big 120000 'big\n'
	grep -q '^status=too_large code=0 bytes=0 ' "$T/big.meta" || fail "big: $(cat "$T/big.meta")"
	# Killed at its timeout, its sleep too (count: no sleep left behind).
	invoke sleep 1000 'sleep\n'
	grep -qE '^status=timeout code=0 bytes=0 duration_us=[0-9]{7,}$' "$T/sleep.meta" || fail "sleep: $(cat "$T/sleep.meta")"
	invoke count1 60000 'count\n'
	grep -qx 0 "$T/count1.got" || fail "a timed-out handler's sleep survived: $(cat "$T/count1.meta" "$T/count1.got")"
	# The answer comes when the handler exits, not when what it left
	# behind closes stdout (that would be a timeout); and what it left is
	# gone before the next invocation.
	invoke orphan 60000 'orphan\n'
	grep -q '^status=ok ' "$T/orphan.meta" && grep -qx left "$T/orphan.got" || fail "orphan: $(cat "$T/orphan.meta")"
	invoke count2 60000 'count\n'
	grep -qx 0 "$T/count2.got" || fail "an invocation's background process survived it: $(cat "$T/count2.meta" "$T/count2.got")"

	# Bytes that are not a frame: an ERROR, then the next connection works.
	printf 'GET / HTTP/1.1\r\n\r\n' | "$AGENT_CLIENT" --raw "$uds" 1024 > /dev/null 2> "$T/raw.meta" || fail "raw: $(cat "$T/raw.meta")"
	grep -qx 'error=not an agent frame (bad magic)' "$T/raw.meta" || fail "raw: $(cat "$T/raw.meta")"
	# A header announcing more than the protocol allows is refused from the header.
	printf 'EFN1\002\0\0\0\001\0\0\0\377\377\377\377' | "$AGENT_CLIENT" --raw "$uds" 1024 > /dev/null 2> "$T/huge.meta" ||
		fail "huge: $(cat "$T/huge.meta")"
	grep -qx 'error=frame payload too large' "$T/huge.meta" || fail "huge: $(cat "$T/huge.meta")"
	invoke after 60000 'upper\nstill here\n'
	grep -qx 'STILL HERE' "$T/after.got" || fail "the agent stopped serving after a refused frame"
	kill $pid
	wait $pid 2>/dev/null
	if grep 'ember-agent:' "$T/vm.out" | grep -qv ready; then
		fail "the agent complained: $(grep 'ember-agent:' "$T/vm.out")"
	fi
}
