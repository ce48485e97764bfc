# The command line and the config file: every bad input gives one clear
# error line naming what is wrong, and exit status 1 (never a crash).

# bad_config NAME JSON EXPECTED_TEXT: the config is refused as it should be.
bad_config() {
	printf '%s\n' "$2" > "$T/$1.json"
	run_ember "$1" 30 --no-api --config-file "$T/$1.json"
	expect_status 1
	expect_err "$1" "$3"
	expect_err_lines "$1" 1
}

kernel_json() {
	echo "\"boot-source\": {\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\"}"
}

# Firecracker's shape, which its clients parse: "Firecracker v<version>" on
# the first line (the API level GET /version names); ember's version after.
test_cli_version() {
	run_ember version 10 --version
	expect_status 0
	local api
	api=$(sed -n 's/^#define EMBER_FIRECRACKER_API_VERSION "\(.*\)"/\1/p' vmm/version.h)
	[ "$(head -1 "$T/version.out")" = "Firecracker v$api" ] || fail "--version's first line: $(head -1 "$T/version.out")"
	grep -qE '^ember v[0-9]+\.[0-9]+\.[0-9]+$' "$T/version.out" || fail "--version does not name ember: $(cat "$T/version.out")"
}

test_cli_help() {
	run_ember help 10 --help
	expect_status 0
	expect_out help "--config-file"
	expect_out help "--boot-timer"
}

# A command line ember refuses exits 153, as Firecracker's does (its
# ArgParsing status); a bad log level 152 (BadConfiguration).
test_cli_unknown_flag() {
	run_ember flag 10 --no-such-flag
	expect_status 153
	expect_err flag "unknown option '--no-such-flag'"
	expect_err_lines flag 1
}

test_cli_flag_without_value() {
	run_ember flagval 10 --no-api --config-file
	expect_status 153
	expect_err flagval "needs a value"
}

test_cli_bad_level() {
	run_ember level 10 --level Loud --no-api --config-file /dev/null
	expect_status 152
	expect_err level "--level"
}

test_cli_no_api_needs_config() {
	run_ember noapi 10 --no-api
	expect_status 153
	expect_err noapi "--config-file"
}

# Flags of features ember does not have yet are refused with one clear
# line (never silently ignored), as a bad flag is.
test_cli_unsupported_features_refused() {
	local args name
	for args in "--enable-pci|pci|--enable-pci: PCI is not supported yet"; do
		IFS='|' read -r flags name want <<< "$args"
		# shellcheck disable=SC2086
		run_ember "$name" 10 $flags --api-sock "$T/$name.sock"
		expect_status 153
		expect_err "$name" "$want"
		expect_err_lines "$name" 1
		[ -e "$T/$name.sock" ] && fail "$name: ember served its API anyway"
	done
}

# --module (the logger's module filter) is taken and ignored, as the
# logger's "module" key is.
test_cli_module_accepted() {
	run_ember module 10 --module vmm --snapshot-version
	expect_status 0
}

test_cli_seccomp_filter_excludes_no_seccomp() {
	run_ember both 10 --no-seccomp --seccomp-filter "$T/filter.bpf"
	expect_status 153
	expect_err both "--no-seccomp and --seccomp-filter cannot be used together"
}

# --snapshot-version prints the version of the state files this ember
# writes as Firecracker prints its own (v<major>.<minor>.<patch>), and
# --describe-snapshot a state file's; Firecracker's test compares the two.
test_cli_snapshot_version_and_describe() {
	run_ember sv 10 --snapshot-version
	expect_status 0
	grep -qxE 'v[0-9]+\.[0-9]+\.[0-9]+' "$T/sv.out" || fail "--snapshot-version printed '$(cat "$T/sv.out")'"
	# A state file's header (magic, version 7, header size 32): describing
	# reads the version of any file, not only one this ember can load.
	printf 'EMBERSNP\x07\x00\x00\x00\x20\x00\x00\x00' > "$T/v7.state"
	head -c 16 /dev/zero >> "$T/v7.state"
	run_ember d7 10 --describe-snapshot "$T/v7.state"
	expect_status 0
	[ "$(cat "$T/d7.out")" = "v7.0.0" ] || fail "--describe-snapshot printed '$(cat "$T/d7.out")', not v7.0.0"
	[ -s "$T/d7.err" ] && fail "--describe-snapshot wrote to stderr: $(cat "$T/d7.err")"
	printf 'not a snapshot, longer than a header\n' > "$T/bad.state"
	run_ember dbad 10 --describe-snapshot "$T/bad.state"
	expect_status 1
	expect_err dbad "not an ember snapshot state file"
	expect_err_lines dbad 1
	run_ember dmissing 10 --describe-snapshot "$T/missing.state"
	expect_status 1
	expect_err dmissing "$T/missing.state: No such file or directory"
}

test_config_unreadable_file() {
	run_ember missing 10 --no-api --config-file "$T/does-not-exist.json"
	expect_status 1
	expect_err missing "does-not-exist.json: No such file or directory"
	expect_err_lines missing 1
	run_ember dir 10 --no-api --config-file "$T"
	expect_status 1
	expect_err dir "not a regular file"
}

test_config_invalid_json() {
	bad_config badjson '{"boot-source": {' "invalid JSON"
}

test_config_unknown_key() {
	bad_config unknownkey "{$(kernel_json), \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 64, \"turbo\": true}}" \
		"machine-config.turbo: unknown field"
	bad_config unknownsection "{$(kernel_json), \"gpu\": {}}" "gpu: unknown section"
}

test_config_missing_kernel() {
	bad_config nokernelkey '{"boot-source": {"boot_args": "console=ttyS0"}}' \
		"boot-source.kernel_image_path: missing"
	bad_config nokernelfile '{"boot-source": {"kernel_image_path": "/nonexistent/vmlinux"}}' \
		"/nonexistent/vmlinux: No such file or directory"
}

test_config_mem_zero() {
	bad_config memzero "{$(kernel_json), \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 0}}" \
		"machine-config.mem_size_mib: must be between 1"
}

test_config_mem_beyond_host() {
	local host_mib=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 ))
	bad_config memhuge "{$(kernel_json), \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": $((host_mib * 2))}}" \
		"Invalid Memory Configuration: Cannot create mmap region: Out of memory (os error 12) (machine-config.mem_size_mib: $((host_mib * 2)) MiB is more than the host's"
}

test_config_vcpu_zero() {
	bad_config vcpu0 "{$(kernel_json), \"machine-config\": {\"vcpu_count\": 0, \"mem_size_mib\": 64}}" \
		"machine-config.vcpu_count: must be between 1 and 32 (got 0)"
}

test_config_vcpu_too_many() {
	bad_config vcpu33 "{$(kernel_json), \"machine-config\": {\"vcpu_count\": 33, \"mem_size_mib\": 64}}" \
		"machine-config.vcpu_count: must be between 1 and 32 (got 33)"
}

test_config_wrong_types() {
	bad_config vcpustr "{$(kernel_json), \"machine-config\": {\"vcpu_count\": \"2\", \"mem_size_mib\": 64}}" \
		'machine-config.vcpu_count: invalid type: string "2", expected u8'
	bad_config bootnum '{"boot-source": {"kernel_image_path": 12}}' \
		'boot-source.kernel_image_path: invalid type: integer `12`, expected a string'
	# Null for an optional field is the field absent; for a required one, a wrong type.
	bad_config bootnull '{"boot-source": {"kernel_image_path": null}}' \
		'boot-source.kernel_image_path: invalid type: null, expected a string'
}

# Firecracker's GET /vm/config, nulls and all, is a config file: the VM boots.
test_config_firecrackers_vm_config_with_nulls() {
	need_kvm || return
	cat > "$T/fc.json" <<-EOF2
	{"balloon": null, "drives": [], "boot-source": {"kernel_image_path": "$(realpath "$BUILD/testvm.elf")",
	 "initrd_path": null, "boot_args": null}, "cpu-config": null, "logger": null,
	 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64, "smt": false, "track_dirty_pages": false,
	 "huge_pages": "None"}, "metrics": null, "mmds-config": null, "network-interfaces": [], "vsock": null,
	 "entropy": null, "pmem": [], "memory-hotplug": null}
	EOF2
	run_ember fcnulls 30 --no-api --config-file "$T/fc.json"
	expect_status 0
	expect_out fcnulls "testvm: done 0 passed 0 failed"
}

# drives_json FIRST N: N drives d<FIRST>.. as a JSON array.
drives_json() {
	local i sep=""
	printf '['
	for ((i = $1; i < $1 + $2; i++)); do
		printf '%s{"drive_id": "d%d", "path_on_host": "/d%d", "is_root_device": false}' "$sep" $i $i
		sep=", "
	done
	printf ']'
}

# "drives" twice (8 + 8) once wrote past ember's eight drive slots and
# segfaulted; more than 17 (one GSI each) in one array are refused as well.
test_config_repeated_drives() {
	bad_config repeated "{$(kernel_json), \"drives\": $(drives_json 0 8), \"drives\": $(drives_json 8 8)}" \
		'config file: duplicate key "drives"'
	bad_config manydrives "{$(kernel_json), \"drives\": $(drives_json 0 18)}" "drives: at most 17 drives"
}

# A NUL inside a string once cut it short: this path booted testvm.elf.
# Text after the JSON value was ignored.
test_config_nul_and_trailing_text() {
	bad_config nulpath "{\"boot-source\": {\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\\u0000.qcow2\"}}" \
		'config file: a string holds \u0000 (NUL)'
	bad_config trailing "{$(kernel_json)} xyz" "config file: text after the JSON value"
}

test_config_kernel_not_a_kernel() {
	need_kvm || return
	printf '{"boot-source": {"kernel_image_path": "%s"}}\n' "$(realpath "$BUILD/initramfs.cpio")" > "$T/notkernel.json"
	run_ember notkernel 30 --no-api --config-file "$T/notkernel.json"
	expect_status 1
	expect_err notkernel "not an ELF vmlinux or a bzImage"
}

# What a config file came to is logged in Firecracker's words (its clients
# look for them): a file refused, a VM that would not start (both exit
# status 1), and a VM started.
test_config_file_outcome_logged() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	printf '{%s, "machine-config": {"mem_size_mib": 64}}\n' "$(kernel_json)" > "$T/novcpu.json"
	run_ember novcpu 30 --no-api --config-file "$T/novcpu.json" --log-path "$T/novcpu.log"
	expect_status 1
	grep -qF "Failed to build MicroVM from Json: Configuration for VMM from one single json failed: " "$T/novcpu.log" ||
		fail "a refused config file: $(cat "$T/novcpu.log")"
	printf '{"boot-source": {"kernel_image_path": "%s"}}\n' "$(realpath "$BUILD/initramfs.cpio")" > "$T/nostart.json"
	run_ember nostart 30 --no-api --config-file "$T/nostart.json" --log-path "$T/nostart.log"
	expect_status 1
	grep -qF "Failed to build MicroVM from Json: Could not Start MicroVM from one single json: " "$T/nostart.log" ||
		fail "a VM that did not start: $(cat "$T/nostart.log")"
	printf '{%s, "machine-config": {"vcpu_count": 1, "mem_size_mib": 64}}\n' "$(kernel_json)" > "$T/ok.json"
	run_ember ok 30 --no-api --config-file "$T/ok.json" --log-path "$T/ok.log"
	expect_status 0
	grep -qF "Successfully started microvm that was configured from one single json" "$T/ok.log" ||
		fail "a VM started: $(cat "$T/ok.log")"
}

# ---- --seccomp-filter: Firecracker's seccompiler-bin files ----

SECCOMP_FILE_GEN=${SECCOMP_FILE_GEN:-$(dirname "$EMBER")/seccomp-file-gen}

testvm_counter_config() {
	cat > "$1" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/testvm.elf")", "boot_args": "testvm.counter=1000"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64}}
JSON
}

# The file's programs are installed instead of ember's: with programs that
# allow everything the VM runs and every thread is in seccomp filter mode
# (Firecracker's test reads Seccomp: 2); ember-test's hook then calls
# personality() on the vCPU thread, which ember's own filters kill for, and
# it returns; a vCPU program that forbids it kills ember with SIGSYS.
test_cli_seccomp_filter_installed() {
	need_kvm || return
	need_file "$SECCOMP_FILE_GEN" || return
	need_file "$EMBER_TEST" || return
	"$SECCOMP_FILE_GEN" "$T/allow.bpf" vmm=allow api=allow vcpu=allow || { fail "seccomp-file-gen"; return; }
	"$SECCOMP_FILE_GEN" "$T/kill.bpf" vmm=allow api=allow vcpu=kill:135 || { fail "seccomp-file-gen"; return; }
	testvm_counter_config "$T/vm.json"

	start_api allow --seccomp-filter "$T/allow.bpf" || return
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.counter=1000\"}"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out allow 'testvm: count 2' 60
	local status threads=0
	for status in /proc/"$API_PID"/task/*/status; do
		threads=$((threads + 1))
		grep -q '^Seccomp:[[:space:]]*2$' "$status" || fail "$status: $(grep Seccomp: "$status")"
	done
	[ "$threads" -ge 3 ] || fail "only $threads threads (VMM, API and vCPU expected)"
	stop_api

	local ember=$EMBER
	EMBER=$EMBER_TEST
	run_ember hook 60 --no-api --config-file "$T/vm.json" --seccomp-filter "$T/allow.bpf" --test-forbidden-syscall vcpu
	expect_status 3
	expect_err hook "personality() returned"
	run_ember killed 60 --no-api --config-file "$T/vm.json" --seccomp-filter "$T/kill.bpf" --test-forbidden-syscall vcpu
	expect_status 159 # SIGSYS
	! grep -q "personality() returned" "$T/killed.err" || fail "the vCPU program did not stop personality()"
	# A program whose action is "trap": the call is named in the log (as
	# Firecracker names it) and ember exits with Firecracker's status 148.
	"$SECCOMP_FILE_GEN" "$T/trap.bpf" vmm=allow api=allow vcpu=trap:135 || { fail "seccomp-file-gen"; EMBER=$ember; return; }
	run_ember trapped 60 --no-api --config-file "$T/vm.json" --seccomp-filter "$T/trap.bpf" \
		--test-forbidden-syscall vcpu --log-path "$T/trapped.log"
	expect_status 148
	grep -qF "Shutting down VM after intercepting a bad syscall (135)" "$T/trapped.log" ||
		fail "the log does not name the trapped call: $(cat "$T/trapped.log")"
	expect_err trapped "Shutting down VM after intercepting a bad syscall (135)"
	EMBER=$ember
}

# A file that is not a filter file is refused before anything runs, with
# Firecracker's "Seccomp error: ..." and exit status 1.
test_cli_seccomp_filter_malformed_refused() {
	need_file "$SECCOMP_FILE_GEN" || return
	"$SECCOMP_FILE_GEN" "$T/good.bpf" vmm=allow api=allow vcpu=allow || { fail "seccomp-file-gen"; return; }
	printf 'Invalid BPF!' > "$T/invalid.bpf"
	head -c $(($(stat -c %s "$T/good.bpf") - 1)) "$T/good.bpf" > "$T/short.bpf"
	{ cat "$T/good.bpf"; printf 'x'; } > "$T/long.bpf"
	"$SECCOMP_FILE_GEN" "$T/novcpu.bpf" vmm=allow api=allow
	"$SECCOMP_FILE_GEN" "$T/extra.bpf" vmm=allow api=allow vcpu=allow jailer=allow
	head -c 100001 /dev/zero > "$T/huge.bpf"
	mkfifo "$T/fifo.bpf"
	local c
	for c in "invalid|Seccomp error: Filter deserialization failed" \
		 "short|Seccomp error: Filter deserialization failed: the file ends early" \
		 "long|Seccomp error: Filter deserialization failed: 1 bytes after the filters" \
		 "novcpu|Seccomp error: Missing thread category: vcpu" \
		 "extra|Seccomp error: Invalid thread categories: jailer" \
		 "huge|Input size 100001 exceeds limit of 100000 bytes" \
		 "missing|No such file or directory" \
		 "fifo|is a FIFO, not a regular file"; do
		local name=${c%%|*} want=${c#*|}
		run_ember "$name" 10 --seccomp-filter "$T/$name.bpf" --api-sock "$T/$name.sock"
		expect_status 1
		expect_err "$name" "$want"
		expect_err_lines "$name" 1
		[ -e "$T/$name.sock" ] && fail "$name: ember served its API with a bad filter file"
	done
}
