#!/bin/sh
# Build the guest rootfs from ember's static guest programs (BINDIR/init,
# BINDIR/ember-vsock, BINDIR/ember-agent) and Debian's busybox-static:
#   OUT/initramfs.cpio      (the kernel's initrd: /init; uncompressed, because
#                            decompressing costs the guest more than copying)
#   OUT/rootfs.ext4         (a root drive for virtio-blk: /sbin/init)
# Runs without root: fakeroot supplies the device node and ownership.
#
# usage: rootfs/build.sh BINDIR OUTDIR
set -eu
bindir=${1:?usage: build.sh BINDIR OUTDIR}
out=${2:?usage: build.sh BINDIR OUTDIR}
mkdir -p "$out" && out=$(cd "$out" && pwd)
busybox=/bin/busybox
[ -x "$busybox" ] && "$busybox" --list >/dev/null 2>&1 ||
	{ echo "rootfs: $busybox missing (make deps installs busybox-static)" >&2; exit 1; }
file -L "$busybox" | grep -q 'statically linked' ||
	{ echo "rootfs: $busybox is not static (install busybox-static)" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
trap 'exit 1' INT TERM
mkdir -p "$stage/bin" "$stage/sbin" "$stage/dev" "$stage/proc" "$stage/sys" "$stage/tmp" \
	"$stage/etc" "$stage/root" "$stage/mnt" "$stage/usr/bin" "$stage/usr/sbin"
cp "$busybox" "$stage/bin/busybox"
# Busybox's shell runs its applets directly ("standalone shell"), so the
# initramfs needs only /bin/sh: every extra file or link is copied in by
# the guest kernel at boot, which is slow where the kernel runs emulated.
ln -s busybox "$stage/bin/sh"
cp "$bindir/init" "$stage/init"
cp "$bindir/ember-vsock" "$stage/bin/ember-vsock"
cp "$bindir/ember-agent" "$stage/bin/ember-agent"
echo "ember guest" > "$stage/etc/hostname"
echo "root:x:0:0:root:/root:/bin/sh" > "$stage/etc/passwd"
echo "root:x:0:" > "$stage/etc/group"
# A file the tests read back from the image.
echo "ember rootfs" > "$stage/etc/ember-release"

mkdir -p "$out"
fakeroot -- sh -c "
	set -e
	mknod -m 600 '$stage/dev/console' c 5 1
	mknod -m 666 '$stage/dev/null' c 1 3
	cd '$stage'
	find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 > '$out/initramfs.cpio.tmp'
	# The ext4 root drive costs nothing per file at boot: give it every
	# applet link and /sbin/init.
	for applet in \$('$busybox' --list); do
		[ \"\$applet\" = busybox ] || [ -e \"bin/\$applet\" ] || ln -s busybox \"bin/\$applet\"
	done
	cp init sbin/init
	rm -f '$out/rootfs.ext4.tmp'
	truncate -s 64M '$out/rootfs.ext4.tmp'
	# 4 KiB blocks (mkfs picks 1 KiB for so small a disk): the page size,
	# which DAX needs when the image is the root on a virtio-pmem device.
	mkfs.ext4 -q -F -b 4096 -L ember-root -d '$stage' '$out/rootfs.ext4.tmp'
"
mv "$out/initramfs.cpio.tmp" "$out/initramfs.cpio"
mv "$out/rootfs.ext4.tmp" "$out/rootfs.ext4"
