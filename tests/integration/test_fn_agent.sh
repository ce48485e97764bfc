# The function agent (rootfs/agent.c) in a Linux guest, driven from the
# host through the vsock socket by agent-client (api/fn/agent_conn.c):
# results, exit codes, signals, timeouts, output bounds, the process
# group cleaned up after each invocation, refused frames.
LINUX_TIMEOUT=${LINUX_TIMEOUT:-900}
AGENT_CLIENT=${AGENT_CLIENT:-$(dirname "$EMBER")/agent-client}

# The handler: the body's first line picks what it does.
FN_AGENT_HANDLER='read -r op; case $op in upper) tr a-z A-Z;; init) cat /tmp/init-done;; fail) echo partial; exit 3;; sleep) sleep 60;; big) dd if=/dev/zero bs=64k count=112 2>/dev/null;; crash) kill -SEGV $$;; orphan) sleep 600 & echo left;; count) pidof sleep | wc -w;; esac'

# agent_vm CMD: a Linux guest (a copy of the rootfs) running CMD as
# ember.cmd, its vsock at $T/v.sock, its console in $T/vm.out; ember runs
# in the background ($! is its pid).
agent_vm() {
	cp --sparse=always "$BUILD/rootfs.ext4" "$T/root.ext4"
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/vmlinux")",
  "boot_args": "console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"$1\""},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
 "drives": [{"drive_id": "rootfs", "path_on_host": "$T/root.ext4", "is_root_device": true}],
 "vsock": {"guest_cid": 3, "uds_path": "$T/v.sock"}}
JSON
	"$EMBER" --no-api --config-file "$T/vm.json" > "$T/vm.out" 2> "$T/vm.err" < /dev/null &
}

test_fn_agent_invocations() {
	need_kvm || return
	need_file "$AGENT_CLIENT" || return
	local uds="$T/v.sock"
	local cmd="ember-agent --init 'echo initialised > /tmp/init-done' 1024 '$FN_AGENT_HANDLER'"
	agent_vm "$cmd"
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
	# 7 MiB through a pipe and the agent: minutes on a host whose guests
	# copy memory slowly (a CI run's took over 120 s).
	invoke big 600000 'big\n'
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

# The --stream handler: a shell loop in the stream framing. The body's
# first line picks what it does; "pid" and "upper" answer "PID:N" (its $$
# and how many requests it has taken), "upper" then the body's rest
# upper-cased. "pid" runs shell builtins only: no process per request.
# After "slow" the next handler takes 5 s to get ready (and says "slow"
# for "init").
FN_STREAM_HANDLER='x=initialised; [ -e /tmp/slow ] && rm /tmp/slow && x=slow && sleep 5; n=0; echo $x $$ > /tmp/stream-init; echo EFS1 ready; while read -r magic len; do n=$((n+1)); op=; [ $len = 0 ] || read -r op; rest=$((len - ${#op} - 1)); [ $rest -ge 0 ] || rest=0; id=$$:$n; case $op in pid) echo EFS1 0 $((${#id} + 1)); echo $id;; upper) echo EFS1 0 $((${#id} + 1 + rest)); echo $id; head -c $rest | tr a-z A-Z;; init) read -r x < /tmp/stream-init; echo EFS1 0 $((${#x} + 1)); echo $x;; slow) echo > /tmp/slow; exit 1;; fail) echo EFS1 3 8; echo partial;; sleep) sleep 60;; exit) exit 7;; garbage) echo not a header;; big) echo EFS1 0 7340032;; esac; done'
# The same two requests for a per-request agent, to compare.
FN_PROCESS_HANDLER='read -r op; case $op in pid) echo $$;; upper) tr a-z A-Z;; esac'

# The median of the duration_us fields in a meta file.
median_us() { grep -oE 'duration_us=[0-9]+' "$1" | cut -d= -f2 | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

test_fn_agent_stream() {
	need_kvm || return
	need_file "$AGENT_CLIENT" || return
	local uds="$T/v.sock"
	# The stream agent on 1024, and a per-request one on 1025.
	local cmd="ember-agent 1025 '$FN_PROCESS_HANDLER' & exec ember-agent --stream 1024 '$FN_STREAM_HANDLER'"
	agent_vm "$cmd"
	local pid=$! i
	readies() { grep -c 'ember-agent: ready' "$T/vm.out" 2>/dev/null; }
	for i in $(seq "$LINUX_TIMEOUT"); do
		[ "$(readies)" = 2 ] || ! kill -0 $pid 2>/dev/null && break
		sleep 1
	done
	[ "$(readies)" = 2 ] || { fail "the two agents did not get ready"; kill $pid 2>/dev/null; wait $pid; return; }
	invoke() { # NAME PORT TIMEOUT_MS BODY [COUNT]
		printf '%b' "$4" | "$AGENT_CLIENT" "$uds" "$2" "$3" ${5:-} > "$T/$1.got" 2> "$T/$1.meta" ||
			fail "$1: $(cat "$T/$1.meta")"
	}
	# The handler process of an answer "PID:N...": its PID.
	handler_pid() { head -1 "$T/$1.got" | cut -d: -f1; }

	# The handler's initialisation ran before the agent said ready.
	invoke init 1024 60000 'init\n'
	grep -qE '^initialised [0-9]+$' "$T/init.got" || fail "init: $(cat "$T/init.meta" "$T/init.got")"
	# Twenty requests on one connection, one on another, and five that
	# run commands: one process, its counter going 2..27.
	invoke pid 1024 60000 'pid\n' 20
	invoke pid2 1024 60000 'pid\n'
	invoke upper 1024 60000 'upper\nhello from the host\n' 5
	local first
	first=$(handler_pid pid)
	[ "$(grep -c '^status=ok code=0 ' "$T/pid.meta")" = 20 ] || fail "pid: $(sort "$T/pid.meta" | uniq -c | head -3)"
	[ "$(tr '\n' ' ' < "$T/pid.got")" = "$(seq 2 21 | sed "s/^/$first:/" | tr '\n' ' ')" ] ||
		fail "pid: not one process counting 2..21: $(tr '\n' ' ' < "$T/pid.got")"
	grep -qx "$first:22" "$T/pid2.got" || fail "pid2: $(cat "$T/pid2.meta" "$T/pid2.got")"
	[ "$(grep -c '^HELLO FROM THE HOST$' "$T/upper.got")" = 5 ] || fail "upper: $(head -4 "$T/upper.meta" "$T/upper.got")"
	[ "$(grep -vx 'HELLO FROM THE HOST' "$T/upper.got" | tr '\n' ' ')" = "$(seq 23 27 | sed "s/^/$first:/" | tr '\n' ' ')" ] ||
		fail "upper: not the same process counting 23..27: $(grep -vx 'HELLO FROM THE HOST' "$T/upper.got" | tr '\n' ' ')"
	# A response's code is the answer's exit code, with its output.
	invoke fail 1024 60000 'fail\n'
	grep -q '^status=exit code=3 bytes=8 ' "$T/fail.meta" && grep -qx partial "$T/fail.got" ||
		fail "fail: $(cat "$T/fail.meta" "$T/fail.got")"

	# Past the timeout: killed, answered timeout; the next request goes to
	# a new handler (restarted, counting from 1).
	invoke sleep 1024 1000 'sleep\n'
	grep -qE '^status=timeout code=0 bytes=0 duration_us=[0-9]{7,}$' "$T/sleep.meta" || fail "sleep: $(cat "$T/sleep.meta")"
	invoke after-sleep 1024 60000 'pid\n'
	grep -q '^status=ok ' "$T/after-sleep.meta" && grep -qE '^[0-9]+:1$' "$T/after-sleep.got" &&
		[ "$(handler_pid after-sleep)" != "$first" ] || fail "after a timeout: $(cat "$T/after-sleep.meta" "$T/after-sleep.got")"
	# A handler that exits: "died" with its exit status, then a new one.
	invoke exit 1024 60000 'exit\n'
	grep -q '^status=died code=7 bytes=0 ' "$T/exit.meta" || fail "exit: $(cat "$T/exit.meta")"
	invoke after-exit 1024 60000 'pid\n'
	grep -qE '^[0-9]+:1$' "$T/after-exit.got" || fail "after an exit: $(cat "$T/after-exit.meta" "$T/after-exit.got")"
	# Bytes that are not a response header, and a length past 6 MiB.
	invoke garbage 1024 60000 'garbage\n'
	grep -q '^status=died code=-1 bytes=0 ' "$T/garbage.meta" || fail "garbage: $(cat "$T/garbage.meta")"
	invoke big 1024 60000 'big\n'
	grep -q '^status=too_large code=0 bytes=0 ' "$T/big.meta" || fail "big: $(cat "$T/big.meta")"
	invoke after-big 1024 60000 'pid\n'
	grep -qE '^[0-9]+:1$' "$T/after-big.got" || fail "after too_large: $(cat "$T/after-big.meta" "$T/after-big.got")"
	# A request timing out while the new handler gets ready leaves it to
	# finish: the next one is served by that same process.
	invoke slow 1024 60000 'slow\n'
	grep -q '^status=died code=1 ' "$T/slow.meta" || fail "slow: $(cat "$T/slow.meta")"
	invoke starting 1024 1000 'pid\n'
	grep -q '^status=timeout ' "$T/starting.meta" || fail "starting: $(cat "$T/starting.meta")"
	invoke started 1024 60000 'pid\n'
	invoke init2 1024 60000 'init\n'
	[ "$(cat "$T/started.got")" = "$(sed -n 's/^slow //p' "$T/init2.got"):1" ] ||
		fail "the handler getting ready was not left to finish: $(cat "$T/started.got" "$T/init2.got")"

	# The handler time of the same requests with a process per request.
	invoke process-pid 1025 60000 'pid\n' 10
	invoke process-upper 1025 60000 'upper\nhello from the host\n' 5
	[ "$(grep -c '^status=ok ' "$T/process-pid.meta")" = 10 ] || fail "process-pid: $(head -3 "$T/process-pid.meta")"
	[ "$(grep -c '^HELLO FROM THE HOST$' "$T/process-upper.got")" = 5 ] || fail "process-upper: $(head -3 "$T/process-upper.meta")"
	echo "    handler us per request (median): builtins only: stream $(median_us "$T/pid.meta"), process $(median_us "$T/process-pid.meta");" \
		"head|tr: stream $(median_us "$T/upper.meta"), process $(median_us "$T/process-upper.meta")"
	kill $pid
	wait $pid 2>/dev/null
	if grep 'ember-agent:' "$T/vm.out" | grep -qv ready; then
		fail "the agent complained: $(grep 'ember-agent:' "$T/vm.out" | grep -v ready)"
	fi
}
