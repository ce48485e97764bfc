#!/bin/sh
# Build ember's guest kernel from Debian's linux-source-6.1 package:
# tinyconfig + ember.config + patches/*.patch. Outputs vmlinux (ELF, PVH
# entry) and bzImage into OUTDIR. A VARIANT names a second fragment,
# firmware/kernel/VARIANT.config, applied after ember.config (its lines win):
# the same kernel with a few options changed, e.g. `acpi`.
#
# The build takes minutes, so its result is cached outside the source tree
# under $EMBER_CACHE (default ~/.cache/ember), keyed by a hash of every
# input: the source tarball, the config fragment, the patches, this script
# and the compiler. A cache hit is a copy; a miss builds and fills it.
#
# usage: firmware/kernel/build.sh OUTDIR [VARIANT]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUTDIR [VARIANT]}
variant=${2:-}
fragments="$here/ember.config"
if [ -n "$variant" ]; then
	[ -r "$here/$variant.config" ] || { echo "build.sh: no fragment $here/$variant.config" >&2; exit 1; }
	fragments="$fragments $here/$variant.config"
fi
tarball=/usr/src/linux-source-6.1.tar.xz
cache=${EMBER_CACHE:-${HOME:-/root}/.cache/ember}
jobs=${JOBS:-$(nproc)}

[ -r "$tarball" ] || { echo "build.sh: $tarball missing (make deps installs linux-source-6.1)" >&2; exit 1; }

key=$( {
	sha256sum "$tarball" | cut -d' ' -f1
	cat $fragments "$here/build.sh"
	for p in "$here"/patches/*.patch; do cat "$p"; done
	gcc --version | head -n1
} | sha256sum | cut -c1-16)
dir="$cache/kernel${variant:+-$variant}-$key"

mkdir -p "$cache" "$out"
exec 9>"$cache/kernel.lock"
flock 9

if [ ! -f "$dir/bzImage" ]; then
	echo "guest kernel: building (cache $dir; takes ~10 minutes on 2 cores)" >&2
	work=$(mktemp -d "$cache/kernel-build.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	trap 'exit 1' INT TERM
	tar xf "$tarball" -C "$work"
	# The fragments merged, each option's last line winning.
	awk -F= '/^CONFIG_/ { if (!($1 in line)) order[n++] = $1; line[$1] = $0 }
		END { for (i = 0; i < n; i++) print line[order[i]] }' $fragments > "$work/fragment.config"
	src="$work/linux-source-6.1"
	for p in "$here"/patches/*.patch; do
		patch -s -p1 -d "$src" < "$p"
	done
	make -s -C "$src" tinyconfig >/dev/null
	# merge_config warns about every choice the fragment changes; the
	# check below is what tells whether the fragment took.
	"$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" \
		"$work/fragment.config" >/dev/null 2>&1
	make -s -C "$src" olddefconfig >/dev/null
	# Every line of the fragment must have survived olddefconfig; a
	# dependency that silently dropped an option is a build error here.
	missing=$(grep -E '^CONFIG_[A-Z0-9_]+=' "$work/fragment.config" | while read -r line; do
		opt=${line%%=*}; val=${line#*=}
		if [ "$val" = n ]; then
			grep -q "^$opt=" "$src/.config" && echo "$line"
		else
			grep -qx "$line" "$src/.config" || echo "$line"
		fi
	done || true)
	if [ -n "$missing" ]; then
		echo "guest kernel: options not applied:" >&2
		echo "$missing" >&2
		exit 1
	fi
	make -s -C "$src" -j"$jobs" vmlinux bzImage \
		KBUILD_BUILD_USER=ember KBUILD_BUILD_HOST=ember >&2
	mkdir -p "$work/out"
	cp "$src/vmlinux" "$src/arch/x86/boot/bzImage" "$src/.config" "$src/System.map" "$work/out/"
	rm -rf "$dir"
	mv "$work/out" "$dir"
fi
cp "$dir/vmlinux" "$dir/bzImage" "$out/"
cp "$dir/.config" "$out/kernel.config"
cp "$dir/System.map" "$out/System.map"
