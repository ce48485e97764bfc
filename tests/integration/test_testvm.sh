# The test guest: ember's fast boot path, emulation fallback and reset.

host_is_pvm() { [ -d /sys/module/kvm_pvm ]; }

test_testvm_boots_and_resets() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	write_config "$T/vm.json" "$BUILD/testvm.elf" "" "" 1 128
	run_ember boot 60 --no-api --config-file "$T/vm.json" --boot-timer
	expect_status 0
	expect_out boot "testvm: booted"
	expect_out boot "testvm: ram 127 MiB"
	expect_out boot "testvm: done 0 passed 0 failed"
	expect_err boot "Guest-boot-time ="
	expect_err boot "guest reset (i8042)"
}

test_testvm_emulation_fallback() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	write_config "$T/vm.json" "$BUILD/testvm.elf" "" "testvm.emulate" 1 64
	run_ember emu 60 --no-api --config-file "$T/vm.json" --level Debug
	expect_status 0
	for check in popcnt popcnt-mem-zero int3 fwait cmpxchg16b cmpxchg8b; do
		expect_out emu "testvm: PASS emulate.$check"
	done
	expect_out emu "testvm: done 6 passed 0 failed"
	if host_is_pvm; then
		# On this host these ran through ember's fallback, not natively.
		expect_err emu "emulated instructions: "
		for kind in int3=1 fwait=1 popcnt=2 cmpxchg16b=2; do
			grep "emulated instructions:" "$T/emu.err" | grep -q "$kind" ||
				fail "fallback did not count $kind"
		done
	fi
}

test_testvm_unknown_instruction_stops_ember() {
	need_kvm || return
	if ! host_is_pvm; then
		skip "the host KVM emulates every instruction; no emulation failure to provoke"
		return
	fi
	write_config "$T/vm.json" "$BUILD/testvm.elf" "" "testvm.unknown" 1 64
	run_ember unknown 60 --no-api --config-file "$T/vm.json"
	expect_status 1
	expect_err unknown "cannot emulate instruction at rip 0x"
	expect_err unknown "bytes [c4 e2 f0 f2 c0"
}

test_testvm_triple_fault_ends_vm() {
	need_kvm || return
	write_config "$T/vm.json" "$BUILD/testvm.elf" "" "testvm.triplefault" 1 64
	run_ember tf 60 --no-api --config-file "$T/vm.json"
	expect_status 0
	expect_err tf "guest reset (triple fault)"
}
