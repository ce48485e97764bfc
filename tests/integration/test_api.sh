# The Firecracker-compatible API on a Unix socket, driven with curl as
# orchestrators drive it.

# raw BYTES: send exactly these bytes on a new connection, print the reply.
raw() {
	printf '%b' "$1" | socat -t 2 - UNIX-CONNECT:"$API_SOCK" 2>/dev/null
}

# Firecracker's getting-started sequence, with plain curl: logger,
# boot source, rootfs drive, network interface, InstanceStart. The guest
# reaches init; SendCtrlAltDel then ends it cleanly.
test_api_getting_started() {
	need_kvm || return
	need_netns || return
	local ns=ember-api-$$
	ip netns add $ns && ip netns exec $ns ip tuntap add dev tap0 mode tap &&
		ip netns exec $ns ip link set tap0 up || { fail "tap setup"; ip netns del $ns 2>/dev/null; return; }
	cp --sparse=always "$BUILD/rootfs.ext4" "$T/rootfs.ext4"
	API_SOCK="$T/fc.sock"
	ip netns exec $ns "$EMBER" --api-sock "$API_SOCK" > "$T/fc.out" 2> "$T/fc.err" < /dev/null &
	API_PID=$!
	local i
	for i in $(seq 100); do [ -S "$API_SOCK" ] && break; sleep 0.05; done

	expect_api 204 PUT /logger "{\"log_path\": \"$T/fc.log\", \"level\": \"Info\", \"show_level\": true, \"show_log_origin\": true}"
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/vmlinux")\",
		\"boot_args\": \"console=ttyS0 reboot=k panic=1 pci=off quiet i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd ember.cmd=\\\"ip link show eth0; echo guest-up; sleep 600\\\"\"}"
	expect_api 204 PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$T/rootfs.ext4\", \"is_root_device\": true, \"is_read_only\": false}"
	expect_api 204 PUT /network-interfaces/eth0 '{"iface_id": "eth0", "guest_mac": "AA:FC:00:00:00:01", "host_dev_name": "tap0"}'
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	api GET / > /dev/null
	grep -q '"state":"Running"' "$T/resp" || fail "GET / does not say Running: $(cat "$T/resp")"

	for i in $(seq $((LINUX_TIMEOUT * 10))); do
		grep -q "guest-up" "$T/fc.out" && break
		kill -0 $API_PID 2>/dev/null || break
		sleep 0.1
	done
	grep -q "guest-up" "$T/fc.out" || fail "the guest did not reach init"
	grep -qi "aa:fc:00:00:00:01" "$T/fc.out" || fail "the guest's eth0 lacks the MAC given"
	expect_api 204 PUT /actions '{"action_type": "SendCtrlAltDel"}'
	# The guest now shuts down on its own; give it the time a boot takes.
	for i in $(seq $((LINUX_TIMEOUT * 10))); do
		kill -0 $API_PID 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 $API_PID 2>/dev/null; then
		fail "SendCtrlAltDel did not end the VM"
		kill $API_PID
	fi
	wait $API_PID
	STATUS=$?
	ip netns del $ns
	expect_status 0
	expect_out fc "Ctrl-Alt-Del: shutting down"
	grep -q ":INFO:vmm/" "$T/fc.log" || fail "the logger did not write levels and origins to log_path"
	[ ! -e "$API_SOCK" ] || fail "the API socket was left behind"
}

# Every path and method of Firecracker's API (firecracker-api.yaml), with
# one valid and one invalid body each: the answer must be a status the
# spec documents for it ("default" documents any error), before and after
# boot. Endpoints ember lacks answer the documented 400.
#   method path valid-body documented-statuses(before boot; "E" = any error)
API_WALK='
GET / - 200
PUT /actions {"action_type":"FlushMetrics"} 204,400
GET /balloon - 200,400
PUT /balloon {"amount_mib":1,"deflate_on_oom":false} 204,400
PATCH /balloon {"amount_mib":1} 204,400
GET /balloon/statistics - 200,400
PATCH /balloon/statistics {"stats_polling_interval_s":1} 204,400
PATCH /balloon/hinting/start {} 204,400
GET /balloon/hinting/status - 200,400
PATCH /balloon/hinting/stop - 204,400
PUT /boot-source {"kernel_image_path":"@KERNEL@"} 204,400
PUT /cpu-config {} 204,400
PUT /drives/d1 {"drive_id":"d1","path_on_host":"@DISK@","is_root_device":false} 204,400
PATCH /drives/d1 {"drive_id":"d1","path_on_host":"@DISK2@"} 204,400
PUT /pmem/p1 {"id":"p1","path_on_host":"@DISK@"} 204,400
PATCH /pmem/p1 {"id":"p1"} 204,400
PUT /logger {"log_path":"@LOG@","level":"Info"} 204,400
GET /machine-config - 200
PUT /machine-config {"vcpu_count":1,"mem_size_mib":64} 204,400
PATCH /machine-config {"mem_size_mib":64} 204,400
PUT /metrics {"metrics_path":"@METRICS@"} 204,400
GET /mmds - 200,404,E
PUT /mmds {} 204,400
PATCH /mmds {} 204,400
PUT /mmds/config {"network_interfaces":[]} 204,400
PUT /entropy {} 204,E
PUT /serial {"serial_out_path":"@SERIAL@"} 204,E
PUT /hotplug/memory {"total_size_mib":128} 204,E
PATCH /hotplug/memory {"requested_size_mib":0} 204,E
GET /hotplug/memory - 200,E
PUT /network-interfaces/n1 {"iface_id":"n1","host_dev_name":"tapx"} 204,400
PATCH /network-interfaces/n1 {"iface_id":"n1"} 204,400
PUT /snapshot/create {"mem_file_path":"@T@/m","snapshot_path":"@T@/s"} 204,400
PUT /snapshot/load {"snapshot_path":"@T@/s","mem_file_path":"@T@/m"} 204,400
GET /version - 200
PATCH /vm {"state":"Paused"} 204,400
GET /vm/config - 200
PUT /vsock {"guest_cid":3,"uds_path":"@T@/v.sock"} 204,400
'

status_documented() { # status documented-list
	local s=$1 list=$2
	[[ ",$list," == *",$s,"* ]] && return 0
	[[ ",$list," == *",E,"* ]] && [ "$s" -ge 400 ] && return 0
	return 1
}

walk_api() { # phase
	local method path body doc got
	while read -r method path body doc; do
		[ -n "$method" ] || continue
		body=${body//@KERNEL@/$(realpath "$BUILD/testvm.elf")}
		body=${body//@DISK@/$T/d1.img}
		body=${body//@DISK2@/$T/d2.img}
		body=${body//@LOG@/$T/walk-$1.log}
		body=${body//@METRICS@/$T/walk-$1.metrics}
		body=${body//@SERIAL@/$T/serial.out}
		body=${body//@T@/$T}
		if [ "$body" = - ]; then
			got=$(api "$method" "$path")
		else
			got=$(api "$method" "$path" "$body")
		fi
		status_documented "$got" "$doc" ||
			fail "$1: $method $path (valid body): $got is not documented ($doc): $(cat "$T/resp")"
		# The same request with a broken body: malformed JSON, or for
		# requests without a body, a stray one (a GET with a body is a
		# 400, as Firecracker answers it).
		if [ "$body" = - ]; then
			got=$(api "$method" "$path" '{"unexpected": true}')
			if [ "$method" = GET ]; then
				[ "$got" = 400 ] || fail "$1: GET $path with a body: $got, expected 400"
				continue
			fi
		else
			got=$(api "$method" "$path" '{"bogus_field": 1')
			[ "$got" -ge 400 ] || fail "$1: $method $path accepted a malformed body"
		fi
		status_documented "$got" "$doc" ||
			fail "$1: $method $path (invalid body): $got is not documented ($doc): $(cat "$T/resp")"
	done <<< "$API_WALK"
}

test_api_walks_every_documented_endpoint() {
	need_kvm || return
	make_testdisk "$T/d1.img"
	make_testdisk "$T/d2.img"
	if [ -f ../shared/ref/firecracker-api.yaml ]; then
		# Keep the table honest against the spec when it is at hand.
		local p
		for p in $(grep -E '^  /' ../shared/ref/firecracker-api.yaml | tr -d ' :' | sed 's/{[a-z_]*}/X/'); do
			local q=${p//X/}
			grep -qE "^[A-Z]+ ${q//\//\\/}" <<< "$API_WALK" || fail "the walk table misses $p"
		done
	fi
	start_api walk || return
	walk_api before-boot
	stop_api
	# A fresh ember (that one was given an interface with no tap) boots the
	# test guest, which waits; walk again: pre-boot-only requests now get
	# 400, post-boot ones (PATCH /drives) work.
	start_api walk2 || return
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.hang\"}"
	expect_api 204 PUT /drives/d1 "{\"drive_id\":\"d1\",\"path_on_host\":\"$T/d1.img\",\"is_root_device\":false}"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	expect_api 400 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\"}"
	expect_api 204 PATCH /drives/d1 "{\"drive_id\":\"d1\",\"path_on_host\":\"$T/d2.img\"}"
	expect_api 400 PATCH /drives/nope '{"drive_id":"nope","path_on_host":"/x"}'
	walk_api after-boot
	api GET /vm/config > /dev/null
	grep -q "d2.img" "$T/resp" || fail "GET /vm/config does not show the swapped drive"
	stop_api
}

# Broken requests each get the right 4xx, and the server goes on serving.
# Status codes and texts as Firecracker answers them: 400 for all of these.
test_api_malformed_requests() {
	need_kvm || return
	command -v socat >/dev/null || { fail "socat is missing (make deps)"; return; }
	start_api bad --http-api-max-payload-size 1024 || return
	local reply
	reply=$(raw 'garbage\r\n\r\n')
	[[ $reply == "HTTP/1.1 400 "* ]] || fail "garbage: $reply"
	[[ $reply == *'{ "error": "'*'All previous unanswered requests will be dropped." }' ]] ||
		fail "garbage: not the HTTP layer's error body: $reply"
	reply=$(raw 'PUT /boot-source HTTP/1.1\r\nHost: x\r\n\r\n')
	[[ $reply == "HTTP/1.1 400 "*'"fault_message":"Empty PUT request."'* ]] || fail "no Content-Length: $reply"
	reply=$(raw 'GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n')
	[[ $reply == "HTTP/1.1 400 "* ]] || fail "chunked: $reply"
	reply=$(raw 'GET / HTTP/3.0\r\n\r\n')
	[[ $reply == "HTTP/1.1 400 "*"Invalid HTTP Version: Unsupported HTTP version."* ]] || fail "HTTP/3.0: $reply"
	reply=$(raw 'POST / HTTP/1.1\r\n\r\n')
	[[ $reply == "HTTP/1.1 400 "*"Invalid HTTP Method: Unsupported HTTP method."* ]] || fail "POST: $reply"
	expect_api 400 PUT /boot-source '{"kernel_image_path": '
	expect_api 400 PUT /machine-config '{"vcpu_count": "2", "mem_size_mib": 128}'
	expect_api 400 PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 128, "turbo": true}'
	expect_api 400 PUT /drives/a '{"drive_id": "b", "path_on_host": "/dev/null", "is_root_device": false}'
	expect_api 400 PUT /boot-source '{"kernel_image_path": "/nonexistent/vmlinux"}'
	expect_api 400 PUT /actions '{"action_type": "InstanceStart"}'   # no boot source yet
	expect_api 400 PUT /actions '{"action_type": "SendCtrlAltDel"}'  # not started
	expect_api 400 PUT /actions '{"action_type": "FlushMetrics"}'    # not started
	expect_api 400 PATCH /drives/a '{"drive_id": "a", "path_on_host": "/x"}' # not started
	expect_api 400 GET /no/such/path
	grep -qF '"fault_message":"Invalid request method and/or path: GET no."' "$T/resp" ||
		fail "unknown path: $(cat "$T/resp")"
	expect_api 400 DELETE /machine-config
	grep -qF '"fault_message":"Invalid request method and/or path: DELETE machine-config."' "$T/resp" ||
		fail "wrong method: $(cat "$T/resp")"
	expect_api 400 PATCH /boot-source '{"kernel_image_path": "x"}'
	grep -qF 'Invalid request method' "$T/resp" || fail "PATCH /boot-source: $(cat "$T/resp")"
	# Two requests on one kept-alive connection, the first refused.
	reply=$(raw 'PUT /machine-config HTTP/1.1\r\nContent-Length: 1\r\n\r\nxGET /version HTTP/1.1\r\n\r\n')
	[[ $reply == "HTTP/1.1 400 "*"HTTP/1.1 200 "*"firecracker_version"* ]] ||
		fail "keep-alive after an error: $reply"
	# And a large body that fits, sent with Expect: 100-continue.
	local long
	long=$(printf '{"kernel_image_path": "%s", "boot_args": "%0900d"}' "$(realpath "$BUILD/testvm.elf")" 0)
	expect_api 204 PUT /boot-source "$long"
	expect_api 200 GET /
	kill -0 $API_PID 2>/dev/null || fail "ember died"
	stop_api
}

# A body over --http-api-max-payload-size: Firecracker's answer, byte for
# byte as its own test compares it, and the connection serves on past the
# body it refused.
test_api_body_over_the_limit() {
	need_kvm || return
	command -v socat >/dev/null || { fail "socat is missing (make deps)"; return; }
	start_api limit --http-api-max-payload-size 250 || return
	local want got
	want=$(printf '%s' 'HTTP/1.1 400 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n' \
		'Content-Type: application/json\r\nContent-Length: 145\r\n\r\n' \
		'{ "error": "Request payload with size 260 is larger than the limit of 250 allowed by server.\n' \
		'All previous unanswered requests will be dropped." }')
	got=$(curl -s -i --unix-socket "$API_SOCK" -X PUT http://localhost/mmds/config \
		-H "Content-Length: 260" -H "Accept: application/json" -d "some body" | od -c)
	[ "$got" = "$(printf '%b' "$want" | od -c)" ] || fail "oversized body: $got"
	# The whole oversized request, then another on the same connection.
	local body reply
	body=$(printf '%0300d' 0)
	reply=$(raw "PUT /boot-source HTTP/1.1\r\nContent-Length: 300\r\n\r\n${body}GET /version HTTP/1.1\r\n\r\n")
	[[ $reply == "HTTP/1.1 400 "*"larger than the limit of 250"*"HTTP/1.1 200 "*"firecracker_version"* ]] ||
		fail "no answer after the refused body: $reply"
	kill -0 $API_PID 2>/dev/null || fail "ember died"
	stop_api
}

# Firecracker's words where its clients and tests match them, explicit
# nulls taken as absent, and the Deprecation header.
test_api_firecracker_texts_nulls_and_deprecation() {
	need_kvm || return
	start_api texts || return
	local deser="An error occurred when deserializing the json body of a request: "
	expect_api 400 PUT /machine-config '{"mem_size_mib": 128}'
	grep -qF "\"fault_message\":\"${deser}missing field \`vcpu_count\` at line 1 column 21.\"" "$T/resp" ||
		fail "missing vcpu_count: $(cat "$T/resp")"
	expect_api 400 PUT /machine-config '{"vcpu_count": 2}'
	grep -qF "missing field \`mem_size_mib\` at line 1 column 17." "$T/resp" || fail "missing mem_size_mib: $(cat "$T/resp")"
	expect_api 400 PUT /snapshot/load '{"snapshot_path": "foo", "mem_backend": {"backend_type": "foo", "backend_path": "bar"}}'
	grep -qF 'unknown variant `foo`, expected `File` or `Uffd`' "$T/resp" || fail "backend_type: $(cat "$T/resp")"
	expect_api 400 PUT /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "/r", "is_root_device": true, "bogus": 1}'
	grep -qF 'unknown field `bogus`, expected one of `drive_id`,' "$T/resp" || fail "unknown field: $(cat "$T/resp")"
	expect_api 400 PUT /boot-source '{"kernel_image_path": null}'
	grep -qF 'invalid type: null, expected a string' "$T/resp" || fail "required null: $(cat "$T/resp")"

	make_testdisk "$T/d.img"
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"initrd_path\": null, \"boot_args\": null}"
	expect_api 204 PUT /drives/d "{\"drive_id\": \"d\", \"partuuid\": null, \"is_root_device\": false, \"cache_type\": null, \"is_read_only\": null, \"path_on_host\": \"$T/d.img\", \"rate_limiter\": {\"bandwidth\": {\"size\": 1000000, \"one_time_burst\": null, \"refill_time\": 100}, \"ops\": null}, \"io_engine\": null, \"socket\": null}"
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64, "smt": null, "track_dirty_pages": null, "huge_pages": null}'

	# Deprecated fields: the header, and the warning in the log.
	expect_api 204 PUT /logger "{\"log_path\": \"$T/texts.log\", \"level\": \"Info\"}"
	local h
	h=$(curl -s -D - -o /dev/null --unix-socket "$API_SOCK" -X PUT http://localhost/vsock \
		-d "{\"vsock_id\": \"v\", \"guest_cid\": 3, \"uds_path\": \"$T/v.sock\"}")
	[[ $h == "HTTP/1.1 204 "*$'\r\nDeprecation: true\r\n'* ]] || fail "PUT /vsock with vsock_id: $h"
	h=$(curl -s -D - -o /dev/null --unix-socket "$API_SOCK" -X PUT http://localhost/vsock \
		-d "{\"vsock_id\": null, \"guest_cid\": 3, \"uds_path\": \"$T/v.sock\"}")
	[[ $h == "HTTP/1.1 204 "* && $h != *Deprecation* ]] || fail "PUT /vsock with a null vsock_id: $h"
	h=$(curl -s -D - -o /dev/null --unix-socket "$API_SOCK" -X PUT http://localhost/machine-config \
		-d '{"vcpu_count": 1, "mem_size_mib": 64, "cpu_template": "None"}')
	[[ $h == *$'\r\nDeprecation: true\r\n'* ]] || fail "PUT /machine-config with cpu_template: $h"
	h=$(curl -s -D - -o /dev/null --unix-socket "$API_SOCK" -X PUT http://localhost/machine-config \
		-d '{"vcpu_count": 1, "mem_size_mib": 64}')
	[[ $h != *Deprecation* ]] || fail "a request without deprecated fields: $h"
	# Refused by the VMM (no such snapshot), still flagged.
	h=$(curl -s -D - -o /dev/null --unix-socket "$API_SOCK" -X PUT http://localhost/snapshot/load \
		-d "{\"snapshot_path\": \"$T/nope\", \"mem_file_path\": \"$T/nope.mem\"}")
	[[ $h == "HTTP/1.1 400 "*$'\r\nDeprecation: true\r\n'* ]] || fail "PUT /snapshot/load with mem_file_path: $h"
	grep -qF 'PUT /machine-config: cpu_template field is deprecated.' "$T/texts.log" ||
		fail "no deprecation warning in the log"
	grep -qF 'PUT /vsock: vsock_id field is deprecated.' "$T/texts.log" || fail "no vsock_id warning in the log"
	# Each request at Info, as Firecracker logs it.
	grep -qF 'The API server received a Put request on "/machine-config" with body "{\"vcpu_count\": 1, \"mem_size_mib\": 64}".' "$T/texts.log" ||
		fail "no request line in the log: $(grep -m3 'API server' "$T/texts.log")"
	grep -qF 'The request was executed successfully. Status code: 204 No Content.' "$T/texts.log" ||
		fail "no outcome line in the log"
	api GET /machine-config > /dev/null
	grep -qF 'The API server received a Get request on "/machine-config".' "$T/texts.log" || fail "no GET line"
	grep -qF 'The request was executed successfully. Status code: 200 OK.' "$T/texts.log" || fail "no 200 line"
	kill -0 $API_PID 2>/dev/null || fail "ember died"
	stop_api
}

# Bodies and heads that cJSON or the HTTP parser once read as something
# else: a drive path with an escaped NUL opened the file named by its
# first half, a key given twice and text after the body were ignored, a
# NUL in a header name passed. Each is a 400 now, and ember serves on.
test_api_nul_duplicate_key_and_trailing_text() {
	need_kvm || return
	command -v socat >/dev/null || { fail "socat is missing (make deps)"; return; }
	start_api strict || return
	truncate -s 1M "$T/real.img"
	expect_api 400 PUT /drives/d1 "{\"drive_id\": \"d1\", \"path_on_host\": \"$T/real.img\\u0000.qcow2\", \"is_root_device\": false}"
	grep -qF 'a string holds \\u0000 (NUL)' "$T/resp" || fail "the NUL fault does not say so: $(cat "$T/resp")"
	expect_api 400 PUT /drives/d1 "{\"drive_id\": \"d1\", \"path_on_host\": \"$T/real.img\", \"path_on_host\": \"/x\", \"is_root_device\": false}"
	grep -qF 'duplicate key \"path_on_host\"' "$T/resp" || fail "the duplicate-key fault does not say so: $(cat "$T/resp")"
	expect_api 400 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64} xyz'
	grep -qF 'text after the JSON value' "$T/resp" || fail "the trailing-text fault does not say so: $(cat "$T/resp")"
	local reply
	reply=$(raw 'GET / HTTP/1.1\r\nX\0Y: z\r\n\r\n')
	[[ $reply == "HTTP/1.1 400 "* ]] || fail "a NUL in a header name: $reply"
	expect_api 200 GET /
	expect_api 204 PUT /drives/d1 "{\"drive_id\": \"d1\", \"path_on_host\": \"$T/real.img\", \"is_root_device\": false}"
	kill -0 $API_PID 2>/dev/null || fail "ember died"
	stop_api
}

# A socket path that exists is refused, whatever is there (a live
# server's socket, a stale one, a regular file), in Firecracker's words,
# and left as it was.
test_api_socket_that_exists_is_refused() {
	need_kvm || return
	start_api live || return
	run_ember second 10 --api-sock "$API_SOCK"
	expect_status 1
	expect_err second "Failed to open the API socket at: $API_SOCK. Check that it is not already used."
	expect_api 200 GET /version
	stop_api
	# A socket file nobody listens on any more.
	socat UNIX-LISTEN:"$T/stale.sock" - < /dev/null > /dev/null 2>&1 &
	local s=$! i
	for i in $(seq 50); do [ -S "$T/stale.sock" ] && break; sleep 0.05; done
	kill -9 $s
	wait $s 2>/dev/null
	[ -S "$T/stale.sock" ] || { fail "could not make a stale socket"; return; }
	run_ember stale 10 --api-sock "$T/stale.sock"
	expect_status 1
	expect_err stale "Failed to open the API socket at: $T/stale.sock. Check that it is not already used."
	[ -S "$T/stale.sock" ] || fail "the stale socket was removed"
	echo keep > "$T/file.sock"
	run_ember file 10 --api-sock "$T/file.sock"
	expect_status 1
	expect_err file "Failed to open the API socket at: $T/file.sock. Check that it is not already used."
	[ "$(cat "$T/file.sock")" = keep ] || fail "the file at the socket path was changed"
}

# A config file with the API on: the VM boots at once; GET /vm/config
# gives back a config that boots the same VM with --no-api. As in
# Firecracker, it shows the logger and metrics as null and leaves out the
# serial console, though the file set them up.
test_api_config_file_and_vm_config_roundtrip() {
	need_kvm || return
	write_config "$T/vm.json" "$BUILD/testvm.elf" "" "testvm.hang" 1 64
	python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); t = sys.argv[2]
c.update(logger={"log_path": t + "/vm.log"}, metrics={"metrics_path": t + "/vm.metrics"}, serial={"serial_out_path": t + "/vm.serial"})
json.dump(c, open(sys.argv[1], "w"))' "$T/vm.json" "$T"
	: > "$T/vm.log"
	: > "$T/vm.metrics"
	start_api cfg --config-file "$T/vm.json" || return
	api GET / > /dev/null
	grep -q '"state":"Running"' "$T/resp" || fail "not Running after --config-file"
	api GET /vm/config > /dev/null
	cp "$T/resp" "$T/roundtrip.json"
	# Firecracker's shape: every section, null or empty when unset.
	local key
	for key in '"balloon":null' '"cpu-config":null' '"logger":null' '"metrics":null' \
		'"mmds-config":null' '"vsock":null' '"entropy":null' '"pmem":[]' '"memory-hotplug":null' \
		'"drives":[]' '"network-interfaces":[]' '"initrd_path":null' '"huge_pages":"None"'; do
		grep -qF "$key" "$T/roundtrip.json" || fail "GET /vm/config lacks $key: $(cat "$T/roundtrip.json")"
	done
	! grep -qF '"serial"' "$T/roundtrip.json" || fail "GET /vm/config shows the serial console: $(cat "$T/roundtrip.json")"
	stop_api
	sed -i 's/testvm.hang//' "$T/roundtrip.json"
	run_ember again 30 --no-api --config-file "$T/roundtrip.json"
	expect_status 0
	expect_out again "testvm: done 0 passed 0 failed"
}

# Metrics are JSON lines; a FIFO nobody drains loses lines and counts
# them, and never blocks ember; so does the logger.
test_api_metrics_and_full_fifo() {
	need_kvm || return
	mkfifo "$T/metrics.fifo" "$T/log.fifo"
	start_api met || return
	expect_api 204 PUT /metrics "{\"metrics_path\": \"$T/metrics.fifo\"}"
	expect_api 400 PUT /metrics "{\"metrics_path\": \"$T/other\"}"
	expect_api 204 PUT /logger "{\"log_path\": \"$T/log.fifo\", \"level\": \"Debug\"}"
	# Metrics are flushed from the start on (as Firecracker).
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.counter=1000\"}"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	local i start=$SECONDS
	for i in $(seq 120); do
		api PUT /actions '{"action_type": "FlushMetrics"}' > /dev/null
	done
	[ $((SECONDS - start)) -lt 60 ] || fail "flushing into a full FIFO took $((SECONDS - start)) s"
	timeout 2 cat "$T/metrics.fifo" > "$T/metrics.lines" || true
	expect_api 204 PUT /actions '{"action_type": "FlushMetrics"}'
	timeout 2 cat "$T/metrics.fifo" >> "$T/metrics.lines" || true
	local last
	last=$(tail -n 1 "$T/metrics.lines")
	[[ $last == '{"utc_timestamp_ms":'* ]] || fail "metrics line is not the JSON expected: ${last:0:80}"
	grep -q '"api_server":{' <<< "$last" || fail "no api_server metrics"
	local missed
	missed=$(grep -o '"missed_metrics_count":[0-9]*' <<< "$last" | cut -d: -f2)
	[ "${missed:-0}" -gt 0 ] || fail "a full FIFO lost no metrics lines? (missed=$missed)"
	kill -0 $API_PID 2>/dev/null || fail "ember died"
	stop_api
}
