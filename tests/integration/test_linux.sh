# Linux guests from ember's own kernel and rootfs, to userspace and back.
# Slow on software-virtualized hosts (about a minute each), so few.

LINUX_TIMEOUT=${LINUX_TIMEOUT:-900}

test_linux_pvh_smp_to_init() {
	need_kvm || return
	need_file "$BUILD/vmlinux" || return
	write_config "$T/vm.json" "$BUILD/vmlinux" "$BUILD/initramfs.cpio" \
		'console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"echo cpus=$(nproc) online=$(cat /sys/devices/system/cpu/online)\"' 2 128
	run_ember linux $LINUX_TIMEOUT --no-api --config-file "$T/vm.json" --boot-timer --level Debug
	expect_status 0
	expect_out linux "ember-init: ready"
	expect_out linux "cpus=2 online=0-1"
	expect_out linux "ember-init: command exited with status 0"
	expect_err linux "Guest-boot-time ="
	expect_err linux "guest reset (i8042)"
	expect_err linux "emulated instructions:"
}

test_linux_bzimage_to_init() {
	need_kvm || return
	need_file "$BUILD/bzImage" || return
	write_config "$T/vm.json" "$BUILD/bzImage" "$BUILD/initramfs.cpio" \
		'console=ttyS0 reboot=k panic=1 ember.cmd=\"cat /etc/ember-release; exit 3\"' 1 128
	run_ember bz $LINUX_TIMEOUT --no-api --config-file "$T/vm.json"
	expect_status 0
	expect_out bz "Linux version 6.1"
	expect_out bz "ember rootfs"
	expect_out bz "ember-init: command exited with status 3"
}
