# ACPI: a guest kernel with ACPI on and command-line device discovery off
# (build/acpi, firmware/kernel/acpi.config) finds its vCPUs, its disk, its
# network interface and its serial port through ember's ACPI tables alone,
# and its ACPI reboot stops ember as the i8042 reset does.

# One boot: root on virtio-blk, eth0 pinging the host through a tap, two
# vCPUs. No reboot=k, so the kernel reboots through the FADT's reset
# register first.
test_acpi_linux_devices_vcpus_and_reboot() {
	need_kvm || return
	need_netns || return
	need_file "$BUILD/acpi/bzImage" || return
	need_file "$BUILD/rootfs.ext4" || return
	local ns=ember-acpi-$$
	ip netns add $ns || { fail "ip netns add"; return; }
	ip netns exec $ns ip tuntap add dev tap0 mode tap &&
	ip netns exec $ns ip addr add 172.30.1.1/24 dev tap0 &&
	ip netns exec $ns ip link set tap0 up || { fail "tap setup"; ip netns del $ns; return; }
	cp --sparse=always "$BUILD/rootfs.ext4" "$T/root.ext4"
	# What the guest prints, each on a line of its own:
	#   the tables it read; its CPUs; where /dev/vda and eth0 came from
	#   (the ACPI device, LNRO0005:NN, they hang under); whether / is
	#   vda; any virtio-mmio device made from the command line (there
	#   must be none: the kernel cannot parse virtio_mmio.device=); a
	#   ping to the host.
	local cmd="dmesg | grep -oE 'ACPI: (RSDP|XSDT|FACP|APIC|DSDT) 0x[0-9A-F]+'; echo cpus=\$(nproc); echo acpi-devices= \$(ls /sys/bus/acpi/devices) ''; echo vda=\$(readlink -f /sys/block/vda); echo eth0=\$(readlink -f /sys/class/net/eth0); echo rootdev=\$(grep -E '^[0-9]+ [0-9]+ [0-9]+:[0-9]+ / / ' /proc/self/mountinfo | cut -d' ' -f3) vdadev=\$(cat /sys/block/vda/dev); echo cmdline-devices=\$(ls /sys/bus/platform/devices | grep -c virtio-mmio); ip addr add 172.30.1.2/24 dev eth0; ip link set eth0 up; ping -c 2 -W 5 172.30.1.1 && echo guest-ping-ok"
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/acpi/bzImage")",
  "boot_args": "console=ttyS0 panic=1 pci=off quiet i8042.noaux i8042.nomux i8042.dumbkbd ember.cmd=\"$cmd\""},
 "machine-config": {"vcpu_count": 2, "mem_size_mib": 128},
 "drives": [{"drive_id": "rootfs", "path_on_host": "$T/root.ext4", "is_root_device": true}],
 "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:1e:01:02"}]}
JSON
	ip netns exec $ns timeout --kill-after=10 $LINUX_TIMEOUT "$EMBER" --no-api --config-file "$T/vm.json" \
		--boot-timer > "$T/acpi.out" 2> "$T/acpi.err" < /dev/null
	STATUS=$?
	ip netns del $ns
	tr -d '\r' < "$T/acpi.out" > "$T/guest.out"
	expect_status 0
	local t
	for t in "RSDP 0x00000000000E0000" XSDT FACP APIC DSDT; do
		grep -q "^ACPI: $t" "$T/guest.out" || fail "the guest did not read the $t table"
	done
	grep -q "^cpus=2$" "$T/guest.out" || fail "the guest does not see 2 vCPUs: $(grep cpus= "$T/guest.out")"
	for t in LNRO0005:00 LNRO0005:01 PNP0501:00 PNP0303:00; do
		grep -q "^acpi-devices=.* $t " "$T/guest.out" || fail "no ACPI device $t in the guest"
	done
	grep -q "^vda=.*/LNRO0005:00/" "$T/guest.out" || fail "vda is not the first ACPI virtio device: $(grep vda= "$T/guest.out")"
	grep -q "^eth0=.*/LNRO0005:01/" "$T/guest.out" || fail "eth0 is not the second ACPI virtio device: $(grep eth0= "$T/guest.out")"
	grep -qE "^rootdev=([0-9]+:[0-9]+) vdadev=\1$" "$T/guest.out" || fail "/ is not vda: $(grep rootdev= "$T/guest.out")"
	grep -q "^cmdline-devices=0$" "$T/guest.out" || fail "the kernel made devices from its command line"
	expect_out guest "guest-ping-ok"
	expect_out guest "ember-init: command exited with status 0"
	expect_err acpi "guest reset (i8042)"
	expect_err acpi "Guest-boot-time ="
}

# The PVH entry (vmlinux), whose start_info names the RSDP (rsdp_paddr),
# with ember's default boot args, an initramfs, one vCPU and the entropy
# device, which must be the first (and only) ACPI virtio device. With no
# ember.cmd the guest runs a shell on its console: the commands typed into
# ember's stdin reach it only if the serial port's interrupt (from the
# DSDT's PNP0501) works, and SendCtrlAltDel ends it only if the i8042's
# (from its PNP0303) does.
test_acpi_linux_pvh_default_args_console_and_ctrl_alt_del() {
	need_kvm || return
	need_file "$BUILD/acpi/vmlinux" || return
	need_file "$BUILD/initramfs.cpio" || return
	cat > "$T/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath "$BUILD/acpi/vmlinux")",
  "initrd_path": "$(realpath "$BUILD/initramfs.cpio")"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
 "entropy": {}}
JSON
	mkfifo "$T/console"
	API_SOCK="$T/pvh.sock"
	"$EMBER" --api-sock "$API_SOCK" --config-file "$T/vm.json" > "$T/pvh.out" 2> "$T/pvh.err" < "$T/console" &
	API_PID=$!
	local console
	exec {console}> "$T/console"
	if wait_out pvh "ember-init: ready" $LINUX_TIMEOUT; then
		echo 'echo rng=$(readlink -f /sys/bus/virtio/devices/virtio0) hwrng=$(cat /sys/class/misc/hw_random/rng_current); echo typed-$((6*7))' >&$console
		if wait_out pvh "^typed-42" 120; then
			expect_api 204 PUT /actions '{"action_type": "SendCtrlAltDel"}'
			local i
			for i in $(seq 600); do
				kill -0 $API_PID 2>/dev/null || break
				sleep 0.1
			done
			kill -0 $API_PID 2>/dev/null && fail "SendCtrlAltDel did not end the guest within 60 s"
		fi
	fi
	exec {console}>&-
	stop_api
	tr -d '\r' < "$T/pvh.out" > "$T/guest.out"
	expect_out guest "ACPI: RSDP 0x00000000000E0000"
	grep -q "^rng=.*/LNRO0005:00/virtio0 hwrng=virtio_rng.0$" "$T/guest.out" ||
		fail "the entropy device is not LNRO0005:00: $(grep "^rng=" "$T/guest.out")"
	expect_out guest "Ctrl-Alt-Del: shutting down"
	expect_err pvh "guest reset (i8042)"
}
