# MMDS from the host's side: the data store over the API (PUT, PATCH as a
# JSON merge patch, GET), its size limit, PUT /mmds/config and its checks,
# GET /vm/config, the config file's "mmds-config", --metadata, the rules
# before and after InstanceStart, and the store kept by a snapshot.

# The fault message of the last answer ($T/resp) contains $1.
expect_fault() {
	grep -qF -- "$1" "$T/resp" || fail "the answer lacks '$1': $(cat "$T/resp")"
}

# The body of the last answer is exactly $1.
expect_body() {
	[ "$(cat "$T/resp")" = "$1" ] || fail "body $(cat "$T/resp"), expected $1"
}

# A tap named $1 in this namespace, removed by del_tap.
add_tap() { ip tuntap add dev "$1" mode tap || { fail "cannot create tap $1"; return 1; }; }
del_tap() { ip link del "$1" 2>/dev/null; }

test_mmds_api_store() {
	need_kvm || return
	start_api store || return
	expect_api 200 GET /mmds
	expect_body '{}'
	expect_api 400 PATCH /mmds '{"a": 1}'
	expect_fault 'MMDS error: The MMDS data store is not initialized.'
	expect_api 400 PUT /mmds '{"a": '
	expect_fault 'An error occurred when deserializing the json body of a request'
	expect_api 204 PUT /mmds '{"latest": {"meta-data": {"ami-id": "dummy", "b": [1, 2]}}, "a": "x"}'
	expect_api 200 GET /mmds
	expect_body '{"a":"x","latest":{"meta-data":{"ami-id":"dummy","b":[1,2]}}}'
	# RFC 7396: null removes, objects merge, anything else replaces.
	expect_api 204 PATCH /mmds '{"a": null, "latest": {"meta-data": {"ami-id": "other", "secret": "s", "b": [3]}}}'
	expect_api 200 GET /mmds
	expect_body '{"latest":{"meta-data":{"ami-id":"other","b":[3],"secret":"s"}}}'
	# Firecracker reads GET and PATCH /mmds/<anything> as /mmds.
	expect_api 200 GET /mmds/whatever
	expect_body '{"latest":{"meta-data":{"ami-id":"other","b":[3],"secret":"s"}}}'
	expect_api 400 PUT /mmds/other '{}'
	expect_fault 'Unrecognized PUT request path `other`.'
	expect_api 400 PUT /mmds
	expect_fault 'Empty PUT request.'
	stop_api
	grep -qF 'The API server received a Put request on "/mmds".' "$T/store.err" ||
		fail "PUT /mmds was not logged without its body, as Firecracker logs it"
	! grep -qF 'secret' "$T/store.err" || fail "the store's contents reached the log"
}

test_mmds_api_size_limit() {
	need_kvm || return
	start_api limit --mmds-size-limit 60 || return
	expect_api 204 PUT /mmds '{"k": "0123456789"}'
	local big
	big=$(printf '{"k": "%060d"}' 0)
	expect_api 413 PUT /mmds "$big"
	expect_fault 'MMDS limit exceeded error: The MMDS patch request doesn'"'"'t fit.'
	# {"k":"0123456789","l":"..."} at exactly 60 bytes fits; one more does not.
	expect_api 204 PATCH /mmds "{\"l\": \"$(printf '%033d' 0)\"}"
	expect_api 413 PATCH /mmds '{"m": ""}'
	expect_api 200 GET /mmds
	expect_body "{\"k\":\"0123456789\",\"l\":\"$(printf '%033d' 0)\"}"
	stop_api
	grep -qF 'Received Error. Status code: 413 Payload too large.' "$T/limit.err" ||
		fail "no Firecracker 413 log line"

	# The default: the API payload limit, 51200 bytes...
	start_api deflimit || return
	expect_api 204 PUT /mmds "{\"k\":\"$(printf '%051190d' 0)\"}"
	expect_api 413 PATCH /mmds '{"l": "xxxx"}'
	stop_api
	# ... or what it is set to.
	start_api biglimit --http-api-max-payload-size 100000 || return
	expect_api 204 PUT /mmds "{\"k\":\"$(printf '%060000d' 0)\"}"
	stop_api
	run_ember badlimit 10 --mmds-size-limit nope
	expect_status 153
	expect_err badlimit '--mmds-size-limit'
}

test_mmds_api_config() {
	need_kvm || return
	start_api cfg || return
	expect_api 400 PUT /mmds/config '{"network_interfaces": []}'
	expect_fault 'The list of network interface IDs that allow forwarding MMDS requests is empty.'
	expect_api 400 PUT /mmds/config '{"network_interfaces": ["foo"]}'
	expect_fault 'The list of network interface IDs provided contains at least one ID that does not correspond to any existing network interface.'
	expect_api 204 PUT /network-interfaces/1 '{"iface_id": "1", "host_dev_name": "tapnone"}'
	expect_api 400 PUT /mmds/config '{"network_interfaces": ["1", "foo"]}'
	expect_fault 'does not correspond to any existing network interface'
	expect_api 400 PUT /mmds/config '{"version": "foo", "network_interfaces": ["1"]}'
	expect_fault 'An error occurred when deserializing the json body of a request: unknown variant `foo`, expected `V1` or `V2`'
	expect_api 400 PUT /mmds/config '{"network_interfaces": ["1"], "ipv4_address": "10.0.0.1"}'
	expect_fault 'The MMDS IPv4 address is not link local.'
	expect_api 400 PUT /mmds/config '{"network_interfaces": ["1"], "ipv4_address": "169.254.0.7"}'
	expect_api 400 PUT /mmds/config '{"network_interfaces": ["1"], "ipv4_address": "169.254.1"}'
	expect_fault 'invalid IPv4 address syntax'
	expect_api 400 PUT /mmds/config '{"network_interfaces": ["1"], "extra": 1}'
	expect_fault 'unknown field `extra`'
	expect_api 200 GET /vm/config
	grep -qF '"mmds-config":null' "$T/resp" || fail "mmds-config is not null before any is set: $(cat "$T/resp")"

	# V1 (also when no version is named) is deprecated: the header says so.
	local h
	h=$(curl -s -i --unix-socket "$API_SOCK" -X PUT -d '{"network_interfaces": ["1"]}' http://localhost/mmds/config)
	grep -qi '^Deprecation: true' <<< "$h" || fail "no Deprecation header for the default V1: $h"
	expect_api 200 GET /vm/config
	grep -qF '"mmds-config":{"version":"V1","network_interfaces":["1"],"ipv4_address":"169.254.169.254","imds_compat":false}' "$T/resp" ||
		fail "GET /vm/config: $(cat "$T/resp")"
	h=$(curl -s -i --unix-socket "$API_SOCK" -X PUT -d '{"version": "V2", "ipv4_address": "169.254.169.250", "network_interfaces": ["1"], "imds_compat": true}' http://localhost/mmds/config)
	grep -q '^HTTP/1.1 204' <<< "$h" || fail "V2 config refused: $h"
	! grep -qi '^Deprecation' <<< "$h" || fail "V2 is not deprecated: $h"
	expect_api 200 GET /vm/config
	grep -qF '"mmds-config":{"version":"V2","network_interfaces":["1"],"ipv4_address":"169.254.169.250","imds_compat":true}' "$T/resp" ||
		fail "GET /vm/config: $(cat "$T/resp")"
	expect_api 200 GET /
	stop_api
	grep -qF 'PUT /mmds/config: V1 is deprecated. Use V2 instead.' "$T/cfg.err" || fail "no deprecation warning logged"
}

# After InstanceStart: the store works only where MMDS was configured (as
# Firecracker's lives in the net devices), and its configuration is fixed.
test_mmds_api_after_start() {
	need_kvm || return
	need_netns || return
	need_file "$BUILD/testvm.elf" || return
	local tap=embm$$
	add_tap "$tap" || return
	start_api plain || { del_tap "$tap"; return; }
	expect_api 204 PUT /mmds '{"pre": "boot"}'
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.counter=1000\"}"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	expect_api 400 GET /mmds
	expect_fault 'MMDS error: The MMDS data store is not initialized.'
	expect_api 400 PUT /mmds '{"a": 1}'
	expect_fault 'The MMDS data store is not initialized.'
	stop_api

	start_api conf || { del_tap "$tap"; return; }
	expect_api 204 PUT /network-interfaces/eth0 "{\"iface_id\": \"eth0\", \"host_dev_name\": \"$tap\"}"
	expect_api 204 PUT /mmds/config '{"version": "V2", "network_interfaces": ["eth0"]}'
	expect_api 204 PUT /mmds '{"pre": "boot", "k": {"a": 1}}'
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.counter=1000\"}"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	expect_api 200 GET /mmds
	expect_body '{"k":{"a":1},"pre":"boot"}'
	expect_api 204 PATCH /mmds '{"pre": null, "post": "start"}'
	expect_api 200 GET /mmds
	expect_body '{"k":{"a":1},"post":"start"}'
	expect_api 400 PUT /mmds/config '{"version": "V1", "network_interfaces": ["eth0"]}'
	expect_fault 'The requested operation is not supported after starting the microVM.'
	expect_api 200 GET /vm/config
	grep -qF '"mmds-config":{"version":"V2","network_interfaces":["eth0"]' "$T/resp" || fail "GET /vm/config: $(cat "$T/resp")"
	stop_api
	del_tap "$tap"
}

test_mmds_metadata_flag_and_config_file() {
	need_kvm || return
	need_netns || return
	need_file "$BUILD/testvm.elf" || return
	printf '{"latest": {"meta-data": {"ami-id": "from-file"}}}\n' > "$T/meta.json"
	start_api meta --metadata "$T/meta.json" || return
	expect_api 200 GET /mmds
	expect_body '{"latest":{"meta-data":{"ami-id":"from-file"}}}'
	expect_api 204 PATCH /mmds '{"latest": {"user-data": "u"}}'
	stop_api
	grep -qF 'Successfully added metadata to mmds from file' "$T/meta.err" || fail "no metadata log line"

	printf '{"broken": ' > "$T/bad.json"
	run_ember badmeta 10 --api-sock "$T/b.sock" --metadata "$T/bad.json"
	[ "$STATUS" -ne 0 ] || fail "invalid --metadata accepted"
	expect_err badmeta 'MMDS error: metadata provided not valid json'
	run_ember bigmeta 10 --api-sock "$T/c.sock" --metadata "$T/meta.json" --mmds-size-limit 10
	[ "$STATUS" -ne 0 ] || fail "--metadata over the size limit accepted"
	expect_err bigmeta "The MMDS patch request doesn't fit"
	run_ember nometa 10 --api-sock "$T/d.sock" --metadata "$T/missing.json"
	[ "$STATUS" -ne 0 ] || fail "a missing --metadata file accepted"
	expect_err nometa "$T/missing.json"

	# The config file's mmds-config, before or after its interfaces.
	local tap=embf$$
	add_tap "$tap" || return
	cat > "$T/vm.json" <<JSON
{"mmds-config": {"version": "V2", "network_interfaces": ["eth0"], "ipv4_address": "169.254.170.2"},
 "boot-source": {"kernel_image_path": "$(realpath "$BUILD/testvm.elf")", "boot_args": "testvm.counter=1000"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
 "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "$tap"}]}
JSON
	start_api file --config-file "$T/vm.json" --metadata "$T/meta.json" || { del_tap "$tap"; return; }
	expect_api 200 GET /vm/config
	grep -qF '"mmds-config":{"version":"V2","network_interfaces":["eth0"],"ipv4_address":"169.254.170.2","imds_compat":false}' "$T/resp" ||
		fail "GET /vm/config: $(cat "$T/resp")"
	expect_api 200 GET /mmds
	expect_body '{"latest":{"meta-data":{"ami-id":"from-file"}}}'
	# What GET /vm/config gives boots the same VM (its mmds-config too).
	cp "$T/resp" "$T/again.json"
	stop_api
	run_ember again 10 --no-api --config-file "$T/again.json" --api-sock "$T/e.sock"
	! grep -q 'mmds-config' "$T/again.err" || fail "ember refused its own GET /vm/config: $(cat "$T/again.err")"
	sed 's/"eth0"\]/"eth9"]/' "$T/vm.json" > "$T/badif.json"
	run_ember badif 10 --no-api --config-file "$T/badif.json"
	[ "$STATUS" -ne 0 ] || fail "mmds-config naming a missing interface booted"
	expect_err badif 'does not correspond to any existing network interface'
	del_tap "$tap"
}

# The store and the MMDS configuration survive a snapshot and its restore
# (Firecracker keeps only the configuration: see the README's differences).
test_mmds_snapshot_keeps_store() {
	need_kvm || return
	need_netns || return
	need_file "$BUILD/testvm.elf" || return
	local tap=embs$$m
	add_tap "$tap" || return
	start_api src || { del_tap "$tap"; return; }
	expect_api 204 PUT /network-interfaces/eth0 "{\"iface_id\": \"eth0\", \"host_dev_name\": \"$tap\"}"
	expect_api 204 PUT /mmds/config '{"version": "V2", "network_interfaces": ["eth0"], "ipv4_address": "169.254.169.250", "imds_compat": true}'
	expect_api 204 PUT /mmds '{"latest": {"meta-data": {"ami-id": "ami-12345678"}}}'
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.counter=1000\"}"
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out src 'testvm: count 2' 60 || { stop_api; del_tap "$tap"; return; }
	expect_api 204 PATCH /mmds '{"latest": {"user-data": "after-boot"}}'
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/state\", \"mem_file_path\": \"$T/mem\"}"
	kill -9 "$API_PID"
	wait "$API_PID" 2>/dev/null

	start_api dst || { del_tap "$tap"; return; }
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}, \"resume_vm\": true}"
	expect_api 200 GET /mmds
	expect_body '{"latest":{"meta-data":{"ami-id":"ami-12345678"},"user-data":"after-boot"}}'
	expect_api 200 GET /vm/config
	grep -qF '"mmds-config":{"version":"V2","network_interfaces":["eth0"],"ipv4_address":"169.254.169.250","imds_compat":true}' "$T/resp" ||
		fail "GET /vm/config after the load: $(cat "$T/resp")"
	expect_api 204 PATCH /mmds '{"latest": {"user-data": "restored"}}'
	expect_api 200 GET /mmds
	expect_body '{"latest":{"meta-data":{"ami-id":"ami-12345678"},"user-data":"restored"}}'
	stop_api
	grep -qF 'ami-12345678' "$T/state" || fail "the state file holds no store"
	del_tap "$tap"
}
