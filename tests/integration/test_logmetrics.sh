# Logs and metrics as Firecracker's clients read them: the line format,
# the lines they wait for, and the metrics schema with its per-flush counts.

# <local time with ns> [<id>:<thread>:<LEVEL>:<dir/file>:<line>] <message>
LM_STAMP='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9} '

# lm_boot NAME BOOT_ARGS [ARGS...]: ember with ARGS serving the API, the
# test guest configured with BOOT_ARGS and started.
lm_boot() {
	local name=$1 args=$2
	shift 2
	start_api "$name" "$@" || return 1
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"$args\"}"
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
}

# wait_log FILE TEXT SECONDS
wait_log() {
	local i
	for i in $(seq $(($3 * 10))); do
		grep -qF -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	fail "no '$2' in $1 within $3 s"
	return 1
}

test_logmetrics_log_lines_and_format() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	lm_boot lm "" --id lm-1 --log-path "$T/lm.log" --level Info --show-level --show-log-origin || return
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	# The test guest runs its checks and resets: ember ends on its own.
	local i
	for i in $(seq 600); do kill -0 "$API_PID" 2>/dev/null || break; sleep 0.1; done
	wait "$API_PID"
	STATUS=$?
	expect_status 0
	head -n 1 "$T/lm.log" | grep -qE "${LM_STAMP}\[lm-1:main:INFO:vmm/[a-z_]+\.c:[0-9]+\] Running Firecracker v[0-9]+\.[0-9]+\.[0-9]+" ||
		fail "the first line is not the start line: $(head -n 1 "$T/lm.log")"
	grep -qE "\[lm-1:fc_api:INFO:api/server\.c:[0-9]+\] API server started\.$" "$T/lm.log" ||
		fail "no 'API server started.' line from the API thread"
	grep -qE "\[lm-1:fc_vcpu 0:INFO:" "$T/lm.log" || fail "no line names the vCPU thread 'fc_vcpu 0'"
	tail -n 1 "$T/lm.log" | grep -qE "\[lm-1:main:INFO:[^]]+\] Firecracker exiting successfully\. exit_code=0$" ||
		fail "the last line is not the exit line: $(tail -n 1 "$T/lm.log")"
	local bad
	bad=$(grep -cvE "${LM_STAMP}\[lm-1:[^]:]+:(ERROR|WARN|INFO):[^]:]+/[^]:]+:[0-9]+\] " "$T/lm.log")
	[ "$bad" = 0 ] || fail "$bad lines not in Firecracker's format: $(grep -vE "${LM_STAMP}\[lm-1:" "$T/lm.log" | head -n 2)"
}

# Without show_level/show_log_origin the tag is [id:thread]; at Warning,
# no Info line is written (not even the start line).
test_logmetrics_level_filter_and_plain_tags() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	lm_boot plain "testvm.counter=1000" --log-path "$T/plain.log" || return
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out plain 'testvm: count 2' 60
	stop_api
	head -n 1 "$T/plain.log" | grep -qE "${LM_STAMP}\[anonymous-instance:main\] Running Firecracker" ||
		fail "plain start line: $(head -n 1 "$T/plain.log")"
	grep -qE "\[anonymous-instance:fc_api\] API server started\.$" "$T/plain.log" || fail "no plain 'API server started.'"
	! grep -qE "\[[^]]*:(INFO|WARN|ERROR)[]:]" "$T/plain.log" || fail "a level shown without show_level"

	lm_boot warn "testvm.counter=1000" --log-path "$T/warn.log" --level Warning --id lm-3 || return
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out warn 'testvm: count 2' 60
	# As Firecracker: the logger is configured before the start only.
	expect_api 400 PUT /logger '{"level": "Info"}'
	stop_api
	! grep -qE "Running Firecracker|API server started|booting" "$T/warn.log" ||
		fail "Info lines written at level Warning: $(head -n 3 "$T/warn.log")"
	grep -vqE "${LM_STAMP}\[lm-3:[^]:]+\] " "$T/warn.log" 2>/dev/null &&
		fail "a line not tagged [lm-3:thread]: $(grep -vE "${LM_STAMP}\[lm-3:" "$T/warn.log" | head -n 1)"
	return 0
}

# field FILE LINE GROUP KEY: one number of the metrics file.
field() {
	python3 -c 'import json, sys; l = open(sys.argv[1]).read().splitlines()[int(sys.argv[2]) - 1]; print(json.loads(l)[sys.argv[3]][sys.argv[4]])' "$@"
}

test_logmetrics_metrics_schema_deltas_and_devices() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	truncate -s 1M "$T/a.img" "$T/b.img"
	: > "$T/m.json"
	lm_boot met "testvm.counter=1000" --id lm-4 --log-path "$T/met.log" || return
	expect_api 204 PUT /metrics "{\"metrics_path\": \"$T/m.json\", \"emit_id\": true, \"properties\": {\"customer_id\": \"1234\", \"bundle_id\": \"fn-abc\"}}"
	expect_api 204 PUT /drives/a "{\"drive_id\": \"a\", \"path_on_host\": \"$T/a.img\", \"is_root_device\": false, \"is_read_only\": false}"
	expect_api 204 PUT /drives/b "{\"drive_id\": \"b\", \"path_on_host\": \"$T/b.img\", \"is_root_device\": false, \"is_read_only\": true}"
	expect_api 400 PUT /drives/c '{"drive_id": "c"}'
	[ ! -s "$T/m.json" ] || fail "metrics were written before the start"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	# As Firecracker: a first line at InstanceStart.
	[ "$(wc -l < "$T/m.json")" = 1 ] || fail "InstanceStart wrote $(wc -l < "$T/m.json") metrics lines, expected 1"
	wait_out met 'testvm: count 2' 60
	expect_api 200 GET /
	expect_api 200 GET /
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	expect_api 204 PATCH /vm '{"state": "Resumed"}'
	expect_api 400 PUT /metrics "{\"metrics_path\": \"$T/other.json\"}"
	expect_api 204 PUT /actions '{"action_type": "FlushMetrics"}'
	expect_api 204 PUT /actions '{"action_type": "FlushMetrics"}'
	stop_api
	python3 tests/integration/metrics_check.py "$T/m.json" --id lm-4 --devices block=2 \
		--properties '{"customer_id": "1234", "bundle_id": "fn-abc"}' > "$T/check.out" ||
		fail "not Firecracker's metrics: $(head -n 5 "$T/check.out")"
	# line 1: InstanceStart, 2 and 3: the flushes, 4: at exit.
	[ "$(wc -l < "$T/m.json")" = 4 ] || fail "$(wc -l < "$T/m.json") metrics lines, expected 4"
	[ "$(field "$T/m.json" 1 put_api_requests drive_count)" = 3 ] || fail "drive_count at the start is not 3"
	[ "$(field "$T/m.json" 1 put_api_requests drive_fails)" = 1 ] || fail "drive_fails at the start is not 1"
	[ "$(field "$T/m.json" 2 put_api_requests drive_count)" = 0 ] || fail "drive_count was not reset by the flush"
	[ "$(field "$T/m.json" 2 get_api_requests instance_info_count)" = 2 ] || fail "GET / was not counted twice"
	[ "$(field "$T/m.json" 3 get_api_requests instance_info_count)" = 0 ] || fail "instance_info_count not reset"
	[ "$(field "$T/m.json" 2 put_api_requests metrics_count)" = 1 ] || fail "the refused PUT /metrics was not counted"
	[ "$(field "$T/m.json" 2 put_api_requests actions_count)" = 1 ] || fail "actions_count is not the one FlushMetrics"
	[ "$(field "$T/m.json" 2 uart write_count)" -gt 0 ] || fail "the guest's console output was not counted"
	[ "$(field "$T/m.json" 2 vcpu exit_io_out)" -gt 0 ] || fail "no vCPU port-output exit counted"
	# Stored values: the same in every line.
	local p1 p3
	p1=$(field "$T/m.json" 2 latencies_us pause_vm)
	p3=$(field "$T/m.json" 4 latencies_us pause_vm)
	[ "$p1" -gt 0 ] && [ "$p1" = "$p3" ] || fail "latencies_us.pause_vm: $p1, then $p3"
	[ "$(field "$T/m.json" 1 api_server process_startup_time_us)" = "$(field "$T/m.json" 4 api_server process_startup_time_us)" ] ||
		fail "process_startup_time_us changed"
	grep -qE "\[lm-4:fc_api\] 'pause vm' API request took $p1 us\.$" "$T/met.log" ||
		fail "no \"'pause vm' API request took $p1 us.\" line: $(grep -F "API request took" "$T/met.log")"
}

# No id, no properties by default; --metrics-path works as PUT /metrics,
# and a PUT /metrics after it is refused with Firecracker's message.
test_logmetrics_metrics_default_shape() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	: > "$T/d.json"
	lm_boot def "testvm.counter=1000" --metrics-path "$T/d.json" || return
	expect_api 400 PUT /metrics "{\"metrics_path\": \"$T/d2.json\"}"
	grep -qF "Reinitialization of metrics not allowed." "$T/resp" || fail "a second metrics set-up: $(cat "$T/resp")"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out def 'testvm: count 2' 60
	expect_api 204 PUT /actions '{"action_type": "FlushMetrics"}'
	stop_api
	python3 tests/integration/metrics_check.py "$T/d.json" --devices block=0,net=0 > "$T/check.out" ||
		fail "not Firecracker's metrics: $(head -n 5 "$T/check.out")"
}

# The signals Firecracker handles: SIGPIPE is logged and counted, SIGBUS
# (as SIGSEGV, SIGXFSZ, SIGXCPU, SIGHUP, SIGILL, SIGSYS) stops the VM with
# Firecracker's line and exit status, its metric at 1 in the last line.
test_logmetrics_signals_as_firecracker() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	: > "$T/s.json"
	lm_boot sig "testvm.counter=1000" --log-path "$T/sig.log" --metrics-path "$T/s.json" || return
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out sig 'testvm: count 2' 60
	kill -PIPE "$API_PID"
	wait_log "$T/sig.log" "Received signal 13, code 0." 10
	expect_api 204 PUT /actions '{"action_type": "FlushMetrics"}'
	[ "$(field "$T/s.json" 2 signals sigpipe)" = 1 ] || fail "sigpipe is not 1 after one SIGPIPE"
	[ "$(field "$T/s.json" 2 signals sigbus)" = 0 ] || fail "sigbus before any SIGBUS"
	kill -BUS "$API_PID"
	wait "$API_PID"
	STATUS=$?
	expect_status 149
	grep -qF "Shutting down VM after intercepting signal 7, code 0." "$T/sig.log" || fail "no shutdown line for SIGBUS"
	local n
	n=$(wc -l < "$T/s.json")
	[ "$(field "$T/s.json" "$n" signals sigbus)" = 1 ] || fail "the last metrics line lacks sigbus 1"
	[ "$(field "$T/s.json" "$n" signals sigpipe)" = 0 ] || fail "sigpipe was not reset by the flush"
	tail -n 1 "$T/sig.log" | grep -qF "Firecracker exiting with error. exit_code=149" || fail "no exit line: $(tail -n 1 "$T/sig.log")"
}

# At Debug, each request line is followed by Firecracker's duration line
# before the next request line (Firecracker's test framework pairs them).
test_logmetrics_api_call_durations_at_debug() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	lm_boot dur "testvm.hang" --log-path "$T/dur.log" --level Debug || return
	api GET /machine-config > /dev/null
	expect_api 400 PUT /machine-config '{"vcpu_count": 0, "mem_size_mib": 64}'
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	stop_api
	local out
	out=$(awk '
		/\] The API server received a / { if (open) { print "unpaired: " $0; exit } open = 1; n++ }
		/\] Total previous API call duration: [0-9]+ us\.$/ { if (!open) { print "duration before a request"; exit } open = 0 }
		END { if (open) print "last request unpaired"; else print "requests " n }' "$T/dur.log")
	[[ $out == "requests "[5-9] ]] || fail "durations and requests do not pair: $out"
}
