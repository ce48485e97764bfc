# CPU templates: the test guest prints the CPUID it sees (testvm.cpuid) and
# the tests compare it with what the template prescribes, bit by bit.
#
# On kvm_pvm hosts the guest does not see everything KVM_SET_CPUID2 says
# (README, "CPU templates on kvm_pvm"): leaves 0x7 and 0xd come from the
# host CPU whatever the VMM sets, and in leaf 0x1 ECX/EDX the bits the host
# CPU has beyond what KVM reports stay set (and a few stay clear). The
# tests measure those leaf-0x1 bits with two calibration boots and check
# every other bit; leaves 0x7 and 0xd they check only on other hosts.

# A Cascade Lake's family/model/stepping, so the Intel templates are
# allowed on any Intel host (ember-test only: EMBER_TEST_HOST_CPUID).
# The host as ember sees it (EMBER_TEST_HOST_CPUID): an Intel vendor
# string, and a Cascade Lake's family/model/stepping. T2 is Intel's, so the
# vendor is told too: on an AMD host ember would refuse it otherwise.
INTEL_VENDOR=0x0.0:ebx=0x756e6547,0x0.0:edx=0x49656e69,0x0.0:ecx=0x6c65746e
CASCADE_LAKE_FMS=$INTEL_VENDOR,0x1.0:eax=0x50657

# T2 as Firecracker defines it (its T2.json): "LEAF SUBLEAF REGISTER BITMAP".
T2_SPEC="0x1 0x0 eax 0bxxxx000000000011xx00011011110010
0x1 0x0 ecx 0bxxxxxxxxxxxxx0xx00xx00x0000000xx
0x1 0x0 edx 0b000x0xxxx00xx0xxxxx1xxxx1xxxxxxx
0x7 0x0 ebx 0b00000000000x000000x00x1xxxx0x0xx
0x7 0x0 ecx 0bx0xxxxxxx0xxxxx0x0x00000x0x0000x
0x7 0x0 edx 0bxxxxxxxxxxxxxxxxxxxxxxx0xxx000xx
0xd 0x0 eax 0bxxxxxxxxxxxxxxxxxxxxxx0x00000xxx
0xd 0x1 eax 0bxxxxxxxxxxxxxxxxxxxxxxxxxxxx000x
0x80000001 0x0 ecx 0bxx0xxxxxxxxxxxxxxxxxxxx0xxxxxxxx
0x80000001 0x0 edx 0bxxxxx0xxxxxxxxxxxxxxxxxxxxxxxxxx
0x80000008 0x0 ebx 0bxxxxxxxxxxxxxxxxxxxxxx0xxxxxxxxx"

# A custom template of leaves every KVM lets the VMM decide (leaf 0x1
# EAX, x2APIC and CX16 in leaf 0x1 ECX, which KVM reports, LAHF/SAHF,
# invariant TSC), one this host may not (AVX2), and IA32_PAT.
CUSTOM_SPEC="0x1 0x0 eax 0bxxxx_0000_0000_0101_xx00_0110_0101_0111
0x1 0x0 ecx 0bxxxx_xxxx_xx0x_xxxx_xx0x_xxxx_xxxx_xxxx
0x80000001 0x0 ecx 0b0
0x80000007 0x0 edx 0b0_xxxx_xxxx
0x7 0x0 ebx 0bxxxx_xxxx_xxxx_xxxx_xxxx_xxxx_xx0x_xxxx"
CUSTOM_PAT_BITMAP=0b0000000000000111000000010000011000000000000001110000000100000110

# The cpuid_modifiers JSON of a spec (flags 1 for the indexed leaves).
spec_json() {
	local out="" leaf sub reg bm
	while read -r leaf sub reg bm; do
		[ -z "$leaf" ] && continue
		local flags=0
		case $leaf in 0x7|0xd) flags=1 ;; esac
		out+="${out:+, }{\"leaf\": \"$leaf\", \"subleaf\": \"$sub\", \"flags\": $flags, \"modifiers\": [{\"register\": \"$reg\", \"bitmap\": \"$bm\"}]}"
	done <<< "$1"
	echo "[$out]"
}

# tpl_config FILE MACHINE_EXTRA CPU_CONFIG: a test guest printing its CPUID.
tpl_config() {
	cat > "$1" <<JSON
{
  "boot-source": { "kernel_image_path": "$(realpath "$BUILD/testvm.elf")", "boot_args": "testvm.cpuid" },
  "machine-config": { "vcpu_count": 1, "mem_size_mib": 64 $2 }${3:+,
  \"cpu-config\": $3}
}
JSON
}

# cpuid_boot NAME MACHINE_EXTRA CPU_CONFIG: boot it (with $TPL_EMBER) and
# check the guest printed its CPUID.
cpuid_boot() {
	tpl_config "$T/$1.json" "$2" "${3:-}"
	timeout --kill-after=10 60 "${TPL_EMBER:-$EMBER}" --no-api --config-file "$T/$1.json" \
		> "$T/$1.out" 2> "$T/$1.err" < /dev/null
	grep -q 'testvm: cpuid end' "$T/$1.out" || { fail "$1: the guest did not print its CPUID"; return 1; }
}

# guest_reg NAME LEAF SUBLEAF REG: what that guest saw, as a number.
guest_reg() {
	local v
	v=$(grep -m1 "testvm: cpuid $(printf %08x $(($2))).$(printf %08x $(($3))) " "$T/$1.out" |
		grep -oE "$4=[0-9a-f]+" | cut -d= -f2)
	echo $((16#${v:-0}))
}

guest_pat() { echo $((16#$(grep -m1 -oE 'testvm: msr 00000277=[0-9a-f]+' "$T/$1.out" | cut -d= -f2))); }

# bitmap_fv BITMAP: "FILTER VALUE" of a tri-state bitmap.
bitmap_fv() {
	local s=${1#0b} f=0 v=0 i=0 k c
	s=${s//_/}
	for ((k = ${#s} - 1; k >= 0; k--, i++)); do
		c=${s:k:1}
		case $c in
		0) f=$((f | 1 << i)) ;;
		1) f=$((f | 1 << i)); v=$((v | 1 << i)) ;;
		esac
	done
	echo "$f $v"
}

# The leaf-0x1 ECX/EDX bits this host decides itself: CAL_SET (set
# whatever the VMM says) and CAL_CLEAR (clear whatever it says), measured
# by booting with those registers all 0 and all 1.
calibrate() {
	local z="0b00000000000000000000000000000000" o="0b11111111111111111111111111111111"
	cpuid_boot cal0 "" "{\"cpuid_modifiers\": $(spec_json "0x1 0x0 ecx $z
0x1 0x0 edx $z")}" || return 1
	cpuid_boot cal1 "" "{\"cpuid_modifiers\": $(spec_json "0x1 0x0 ecx $o
0x1 0x0 edx $o")}" || return 1
	declare -gA CAL_SET CAL_CLEAR
	CAL_SET[ecx]=$(guest_reg cal0 1 0 ecx)
	CAL_SET[edx]=$(guest_reg cal0 1 0 edx)
	CAL_CLEAR[ecx]=$((~$(guest_reg cal1 1 0 ecx) & 0xffffffff))
	CAL_CLEAR[edx]=$((~$(guest_reg cal1 1 0 edx) & 0xffffffff))
}

# check_view BASE NAME SPEC: every register SPEC modifies is, in guest
# NAME, the one guest BASE (no template) saw with SPEC applied; counts the
# bits checked in CHECKED.
check_view() {
	local leaf sub reg bm f v base got want mask
	CHECKED=0
	while read -r leaf sub reg bm; do
		[ -z "$leaf" ] && continue
		if host_is_pvm && { [ $((leaf)) -eq 7 ] || [ $((leaf)) -eq 13 ]; }; then
			continue # the host's CPU answers these on kvm_pvm (README)
		fi
		read -r f v <<< "$(bitmap_fv "$bm")"
		base=$(guest_reg "$1" "$leaf" "$sub" "$reg")
		got=$(guest_reg "$2" "$leaf" "$sub" "$reg")
		mask=$f
		if [ $((leaf)) -eq 1 ] && [ "$reg" != eax ] && [ "$reg" != ebx ]; then
			mask=$((f & ~(CAL_SET[$reg] | CAL_CLEAR[$reg]) & 0xffffffff))
		fi
		want=$(((base & ~f) | v))
		if [ $((got & mask)) -ne $((want & mask)) ]; then
			fail "$2: leaf $leaf.$sub $reg is $(printf %08x "$got"), the template makes it $(printf %08x "$want") (bits $(printf %08x "$mask") checked)"
		fi
		for ((; mask; mask >>= 1)); do CHECKED=$((CHECKED + (mask & 1))); done
	done <<< "$3"
}

test_cpu_template_t2_guest_view() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	need_file "$EMBER_TEST" || return
	export EMBER_TEST_HOST_CPUID=$CASCADE_LAKE_FMS
	TPL_EMBER=$EMBER_TEST
	cpuid_boot base "" && calibrate && cpuid_boot t2 ', "cpu_template": "T2"'
	local ok=$?
	unset EMBER_TEST_HOST_CPUID TPL_EMBER
	[ $ok -eq 0 ] || return
	check_view base t2 "$T2_SPEC"
	[ "$CHECKED" -ge 20 ] || fail "only $CHECKED bits of T2 could be checked on this host"
	# What T2 changes here: the CPU model, and PREFETCHW when the host has it.
	[ "$(guest_reg t2 1 0 eax)" -eq $((0x306f2)) ] || fail "T2 guest's leaf 0x1 EAX is not Haswell's 0x306f2"
}

test_cpu_template_custom_guest_view() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	local pat_fv
	read -r -a pat_fv <<< "$(bitmap_fv "$CUSTOM_PAT_BITMAP")"
	cpuid_boot base "" && calibrate || return
	# From a file, as a config file may name one.
	echo "{\"kvm_capabilities\": [\"!56\", \"1\"], \"cpuid_modifiers\": $(spec_json "$CUSTOM_SPEC"), \"msr_modifiers\": [{\"addr\": \"0x277\", \"bitmap\": \"$CUSTOM_PAT_BITMAP\"}]}" > "$T/template.json"
	cpuid_boot custom "" "\"$T/template.json\"" || return
	check_view base custom "$CUSTOM_SPEC"
	[ "$CHECKED" -ge 30 ] || fail "only $CHECKED bits of the custom template could be checked"
	local base_pat got_pat
	base_pat=$(guest_pat base)
	got_pat=$(guest_pat custom)
	[ "$got_pat" -eq $(((base_pat & ~pat_fv[0]) | pat_fv[1])) ] ||
		fail "IA32_PAT is $(printf %016x "$got_pat") in the guest, the template makes it 0007010600070106"
	[ "$got_pat" -ne "$base_pat" ] || fail "IA32_PAT did not change"
}

test_cpu_template_api_and_vm_config() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	start_api api || return
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.cpuid testvm.hang\"}"
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64, "cpu_template": "T2S"}'
	expect_api 200 GET /vm/config
	grep -q '"cpu_template":"T2S"' "$T/resp" || fail "GET /vm/config does not show T2S: $(cat "$T/resp")"
	grep -q '"cpu-config":null' "$T/resp" || fail "GET /vm/config: cpu-config is not null"
	expect_api 200 GET /machine-config
	grep -q '"cpu_template":"T2S"' "$T/resp" || fail "GET /machine-config does not show T2S"
	# A PUT without cpu_template keeps it, as Firecracker.
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
	expect_api 200 GET /machine-config
	grep -q '"cpu_template":"T2S"' "$T/resp" || fail "a PUT without cpu_template dropped T2S"
	# Refusals in Firecracker's words.
	expect_api 400 PUT /cpu-config '{"foo": false}'
	grep -qF 'unknown field `foo`, expected one of `kvm_capabilities`, `cpuid_modifiers`, `msr_modifiers`' "$T/resp" ||
		fail "unknown key: $(cat "$T/resp")"
	expect_api 400 PUT /cpu-config '{"cpuid_modifiers": [{"leaf": "0x1", "subleaf": "0x0", "flags": 0, "modifiers": [{"register": "eax", "bitmap": "0b12"}]}]}'
	grep -qF 'Failed to parse string [0b12] as a bitmap - unknown character: 50' "$T/resp" || fail "bad bitmap: $(cat "$T/resp")"
	expect_api 400 PUT /cpu-config '{"cpuid_modifiers": [{"leaf": "1", "subleaf": "0x0", "flags": 0, "modifiers": []}]}'
	grep -qF "No supported number system prefix found in value [1]" "$T/resp" || fail "bad leaf: $(cat "$T/resp")"
	expect_api 400 PUT /cpu-config '{"cpuid_modifiers": [{"leaf": "0x1", "subleaf": "0x0", "flags": 0, "modifiers": [{"register": "rax", "bitmap": "0b1"}]}]}'
	grep -qF 'Invalid CPUID register. Must be one of [eax, ebx, ecx, edx]' "$T/resp" || fail "bad register: $(cat "$T/resp")"
	expect_api 400 PUT /cpu-config '{"kvm_capabilities": ["!x"]}'
	grep -qF 'Failed to parse string [!x] as a kvm capability - can not convert to numeric: invalid digit found in string' "$T/resp" ||
		fail "bad capability: $(cat "$T/resp")"
	# A custom template replaces the static one (machine-config then shows none).
	expect_api 204 PUT /cpu-config "{\"cpuid_modifiers\": $(spec_json "0x80000007 0x0 edx 0b0_xxxx_xxxx")}"
	expect_api 200 GET /machine-config
	! grep -q cpu_template "$T/resp" || fail "a custom template still shows as a static one: $(cat "$T/resp")"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out api 'testvm: cpuid end' 60 || { stop_api; return; }
	[ $(($(guest_reg api 0x80000007 0 edx) & 0x100)) -eq 0 ] || fail "the guest still sees invariant TSC"
	expect_api 400 PUT /cpu-config '{}'
	grep -qF 'The requested operation is not supported after starting the microVM.' "$T/resp" || fail "after start: $(cat "$T/resp")"
	stop_api
}

test_cpu_template_refused_on_wrong_cpu() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	need_file "$EMBER_TEST" || return
	# The host as an AMD Milan: the Intel templates are refused, T2A is not.
	export EMBER_TEST_HOST_CPUID=0x0.0:ebx=0x68747541,0x0.0:edx=0x69746e65,0x0.0:ecx=0x444d4163,0x1.0:eax=0x00a00f11
	tpl_config "$T/t2.json" ', "cpu_template": "T2"'
	EMBER=$EMBER_TEST run_ember t2 60 --no-api --config-file "$T/t2.json"
	expect_status 1
	expect_err t2 "Failed to get CPU template: CPU vendor mismatched between actual CPU and CPU template."
	tpl_config "$T/t2a.json" ', "cpu_template": "T2A"'
	EMBER=$EMBER_TEST run_ember t2a 60 --no-api --config-file "$T/t2a.json"
	! grep -q "Failed to get CPU template" "$T/t2a.err" || fail "T2A refused on an AMD Milan: $(cat "$T/t2a.err")"
	# An Intel CPU that is none of the template's models.
	export EMBER_TEST_HOST_CPUID=$INTEL_VENDOR,0x1.0:eax=0x000a0671
	EMBER=$EMBER_TEST run_ember t2cl 60 --no-api --config-file "$T/t2.json"
	expect_status 1
	expect_err t2cl "Failed to get CPU template: The current CPU model is not permitted to apply the CPU template."
	unset EMBER_TEST_HOST_CPUID
	# A leaf KVM does not have, and a capability it lacks.
	tpl_config "$T/leaf.json" "" "{\"cpuid_modifiers\": $(spec_json "0x4fffffff 0x0 eax 0b1")}"
	run_ember leaf 60 --no-api --config-file "$T/leaf.json"
	expect_status 1
	expect_err leaf "Template changes a CPUID entry not supported by KVM: Leaf: 4fffffff, Subleaf: 0"
	tpl_config "$T/cap.json" "" '{"kvm_capabilities": ["99999"]}'
	run_ember cap 60 --no-api --config-file "$T/cap.json"
	expect_status 1
	expect_err cap "Missing KVM capabilities: 0x1869f"
}

test_cpu_template_snapshot_needs_the_features() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	need_file "$EMBER_TEST" || return
	export EMBER_TEST_HOST_CPUID=$CASCADE_LAKE_FMS
	local state="{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}"
	EMBER=$EMBER_TEST start_api src || return
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.counter=1000\"}"
	expect_api 204 PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 64, "cpu_template": "T2"}'
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out src 'testvm: count 3' 60 || { stop_api; return; }
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/state\", \"mem_file_path\": \"$T/mem\"}"
	stop_api
	rm -f "$API_SOCK"
	# A host whose CPU lacks CX16 (which the guest has from this one's).
	export EMBER_TEST_HOST_CPUID="$CASCADE_LAKE_FMS,0x1.0:ecx&~0x2000"
	EMBER=$EMBER_TEST load_fails lacking "$state}" \
		"the snapshot's guest CPU has 1 feature this host's CPU (KVM) cannot provide: cx16"
	# The same host: restored, still T2, counting on.
	export EMBER_TEST_HOST_CPUID=$CASCADE_LAKE_FMS
	EMBER=$EMBER_TEST start_api same || return
	expect_api 204 PUT /snapshot/load "$state, \"resume_vm\": true}"
	wait_out same 'testvm: count [0-9]+' 60
	expect_api 200 GET /vm/config
	grep -q '"cpu_template":"T2"' "$T/resp" || fail "the restored VM's configuration lost T2: $(cat "$T/resp")"
	stop_api
	unset EMBER_TEST_HOST_CPUID
}
