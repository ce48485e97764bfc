#!/bin/sh
# Static archives of the libraries Debian ships only as shared objects,
# for the static ember binaries: libcjson.a and libZydis.a, built from
# Debian's own source packages (cjson, zydis) at exactly the versions of
# the installed -dev packages, whose headers ember compiles against.
# Zydis needs nothing of libZycore at link time (only its headers, from
# libzycore-dev), so there is no libZycore.a. liburing, libseccomp,
# libcap-ng and glibc come with their .a in their Debian packages.
#
# The sources come through apt-get source with a deb-src list and package
# lists of this script's own (the system's apt configuration is not
# touched); apt checks them against the archive's signed index. The result
# is cached outside the source tree under $EMBER_CACHE (default
# ~/.cache/ember), keyed by the package versions, this script and the
# compiler: a hit is a copy, a miss downloads and builds (seconds).
#
# usage: vmm/deps/static-libs.sh OUTDIR   (writes OUTDIR/libcjson.a, OUTDIR/libZydis.a)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: static-libs.sh OUTDIR}
cache=${EMBER_CACHE:-${HOME:-/root}/.cache/ember}

# The source package and version of each installed -dev package.
srcver() {
	v=$(dpkg-query -W -f='${source:Package}=${source:Version}' "$1" 2>/dev/null) ||
		{ echo "static-libs.sh: $1 is not installed (make deps installs it)" >&2; exit 1; }
	echo "$v"
}
cjson=$(srcver libcjson-dev)
zydis=$(srcver libzydis-dev)

key=$( {
	echo "$cjson $zydis"
	cat "$here/static-libs.sh"
	gcc --version | head -n1
} | sha256sum | cut -c1-16)
dir="$cache/static-libs-$key"

mkdir -p "$cache" "$out"
exec 9>"$cache/static-libs.lock"
flock 9

if [ ! -f "$dir/libZydis.a" ]; then
	echo "static libraries: building $cjson $zydis (cache $dir)" >&2
	work=$(mktemp -d "$cache/static-libs-build.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	trap 'exit 1' INT TERM
	. /etc/os-release
	for suite in "$VERSION_CODENAME" "$VERSION_CODENAME-updates"; do
		echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main"
	done > "$work/sources.list"
	echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security $VERSION_CODENAME-security main" \
		>> "$work/sources.list"
	mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
	set -- -q -o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
		-o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" -o APT::Sandbox::User="$(id -un)"
	apt-get "$@" update >/dev/null
	# dpkg-source (dpkg-dev) unpacks each and applies Debian's patches.
	(cd "$work/src" && apt-get "$@" source "$cjson" "$zydis" >/dev/null) || {
		echo "static-libs.sh: cannot fetch the sources of $cjson $zydis (the archive holds only its" \
		     "newest versions: apt-get install --only-upgrade libcjson-dev libzydis-dev)" >&2
		exit 1
	}
	# Debian's own compiler flags (hardening included; PIE objects, so
	# they fit a static-pie binary).
	cflags="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CPPFLAGS) $(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CFLAGS)"
	build() { # LIB SRCDIR FLAGS FILES...
		lib=$1 srcdir=$2 flags=$3
		shift 3
		mkdir -p "$work/obj/$lib"
		for f in "$@"; do
			# shellcheck disable=SC2086 # word splitting of the flags wanted
			gcc $cflags $flags -c "$srcdir/$f" -o "$work/obj/$lib/$(basename "$f" .c).o"
		done
		ar rcsD "$work/out/$lib" "$work/obj/$lib"/*.o
	}
	mkdir -p "$work/out"
	c=$(find "$work/src" -maxdepth 1 -type d -name 'cjson-*')
	build libcjson.a "$c" "" cJSON.c
	z=$(find "$work/src" -maxdepth 1 -type d -name 'zydis-*')
	build libZydis.a "$z" "-DZYDIS_STATIC_BUILD -I$z/include -I$z/src" \
		$(cd "$z" && ls src/*.c)
	rm -rf "$dir"
	mv "$work/out" "$dir"
fi
cp "$dir/libcjson.a" "$dir/libZydis.a" "$out/"
