# ember's memory outside guest RAM, counted as Firecracker's tests count
# it (Rss of every mapping smaller than guest RAM), with 3 drives, a network
# interface and vsock attached and in use. Memory is not a timing: the
# bound is asserted. The VM is benchmarks/lib.sh's devices_vm (shared with
# benchmarks/memory.sh and static.sh, so the test and the published
# numbers measure the same thing).

. benchmarks/lib.sh

MEMORY_BOUND_KIB=${MEMORY_BOUND_KIB:-3072}

test_memory_outside_guest_ram_with_devices_within_3_mib() {
	need_kvm || return
	need_netns || return
	command -v socat >/dev/null || { fail "socat is missing (make deps)"; return; }
	need_file "$BUILD/vmlinux" && need_file "$BUILD/rootfs.ext4" || return
	if ldd "$EMBER" 2>/dev/null | grep -q libasan; then
		# ASan's shadow and quarantine are tens of MiB by design.
		skip "the bound is the release build's; $EMBER is sanitized"
		return
	fi
	devices_vm "$EMBER" all "$T/vm" ||
		{ fail "the guest with 3 drives, net and vsock did not get ready: $(tail -n 3 "$T/vm/err" "$T/vm/out")"; return; }
	local rss pss
	read -r rss pss <<< "$(fc_overhead "$T/vm/smaps" 128)"
	echo "    memory outside guest RAM: RSS $rss KiB, PSS $pss KiB (bound $MEMORY_BOUND_KIB KiB RSS)"
	# Not vacuous: ember's code alone is several hundred KiB.
	[ "$rss" -gt 512 ] || { fail "only $rss KiB counted: the count is broken"; return; }
	[ "$rss" -le "$MEMORY_BOUND_KIB" ] ||
		fail "memory outside guest RAM is $rss KiB RSS, over the bound of $MEMORY_BOUND_KIB KiB"
	grep -q hello-vsock "$T/vm/vsock.got" 2>/dev/null || fail "the guest's vsock line did not arrive"
}
