# ember-jailer: a real jail (namespaces, cgroups, pivot_root, dropped
# privileges, seccomp) around a real VM, checked from the host's /proc.

JAIL_UID=12345
JAIL_GID=23456

need_jailer() {
	if [ "$(id -u)" != 0 ]; then
		skip "ember-jailer needs root"
		return 1
	fi
	need_file "$JAILER" || return 1
}

# wait_for COND_CMD SECONDS: poll until the command succeeds.
wait_for() {
	local i
	for i in $(seq $(($2 * 10))); do
		eval "$1" && return 0
		sleep 0.1
	done
	return 1
}

# jail_api SOCK METHOD PATH [BODY]: prints the HTTP status.
jail_api() {
	local args=(-s -o "$T/resp" -w "%{http_code}" --unix-socket "$1" -X "$2" "http://localhost$3")
	[ $# -ge 4 ] && args+=(-H "Content-Type: application/json" -d "$4")
	curl "${args[@]}"
}

expect_jail_api() {
	local want=$1 got
	shift
	got=$(jail_api "$@")
	[ "$got" = "$want" ] || fail "$2 $3: status $got, expected $want ($(cat "$T/resp" 2>/dev/null))"
}

# What a jailed process must look like from the host.
expect_jailed_process() { # pid root
	local pid=$1 root=$2 st=/proc/$1/status
	grep -q "^Uid:	$JAIL_UID	$JAIL_UID	$JAIL_UID	$JAIL_UID$" "$st" || fail "Uid: $(grep ^Uid "$st")"
	grep -q "^Gid:	$JAIL_GID	$JAIL_GID	$JAIL_GID	$JAIL_GID$" "$st" || fail "Gid: $(grep ^Gid "$st")"
	local cap
	for cap in CapEff CapPrm CapBnd CapInh CapAmb; do
		grep -q "^$cap:	0000000000000000$" "$st" || fail "$(grep "^$cap" "$st")"
	done
	grep -q "^NoNewPrivs:	1$" "$st" || fail "$(grep ^NoNewPrivs "$st")"
	grep -q "^Seccomp:	2$" "$st" || fail "$(grep ^Seccomp: "$st")"
	[ "$(stat -L -c %d:%i "/proc/$pid/root")" = "$(stat -c %d:%i "$root")" ] ||
		fail "the process's root is not the jail $root"
	[ "$(readlink "/proc/$pid/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ] ||
		fail "the mount namespace is the host's"
	# The only device nodes are the four the jail makes.
	local devs
	devs=$(cd "$root/dev" && find . -type c | sort | tr '\n' ' ')
	case "$devs" in
	"./kvm ./net/tun ./urandom ./userfaultfd " | "./kvm ./net/tun ./urandom ") ;;
	*) fail "unexpected device nodes in the jail: $devs" ;;
	esac
}

# jailer_run NAME BINARY ARGS...: one run, stdout and stderr in
# $T/NAME.out and $T/NAME.err, its exit status in STATUS (124: it hung).
jailer_run() {
	local name=$1
	shift
	timeout 20 "$@" > "$T/$name.out" 2> "$T/$name.err" < /dev/null
	STATUS=$?
}

# expect_jailer NAME STATUS MESSAGE
expect_jailer() {
	[ "$STATUS" = "$2" ] || fail "$1: ember-jailer exited with $STATUS, expected $2"
	grep -qF -- "$3" "$T/$1.err" || fail "$1: stderr lacks '$3': $(cat "$T/$1.err")"
}

# expect_untouched DIR: DIR is still root's, mode 755, and empty.
expect_untouched() {
	[ "$(stat -c %u:%g:%a "$1")" = 0:0:755 ] || fail "$1 outside the base was changed: $(stat -c %u:%g:%a "$1")"
	[ -z "$(ls -A "$1")" ] || fail "the jailer made files outside the base, in $1: $(ls -A "$1" | tr '\n' ' ')"
}

test_jailer_linux_guest_v1_cgroups_netns_pidns() {
	need_kvm || return
	need_jailer || return
	need_netns || return
	need_file "$BUILD/vmlinux" || return
	local id=jail-v1-$$ ns=ember-jail-$$ parent=ember-it-$$ base=$T/jails
	ip netns add $ns && ip netns exec $ns ip tuntap add dev tap0 mode tap user $JAIL_UID group $JAIL_GID &&
		ip netns exec $ns ip link set tap0 up || { fail "netns/tap setup"; ip netns del $ns 2>/dev/null; return; }
	"$JAILER" --id $id --exec-file "$EMBER" --uid $JAIL_UID --gid $JAIL_GID --chroot-base-dir "$base" \
		--netns /var/run/netns/$ns --new-pid-ns --parent-cgroup $parent \
		--cgroup memory.limit_in_bytes=536870912 --cgroup cpu.cfs_period_us=100000 \
		--cgroup cpu.cfs_quota_us=150000 --resource-limit no-file=512 \
		-- --api-sock /run/api.sock > "$T/jail.out" 2> "$T/jail.err" < /dev/null
	STATUS=$?
	local root=$base/$(basename "$EMBER")/$id/root
	expect_status 0
	local pid
	pid=$(cat "$root/$(basename "$EMBER").pid" 2>/dev/null)
	if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
		fail "no running VMM (pid file: '$pid')"
		ip netns del $ns
		return
	fi
	wait_for "[ -S '$root/run/api.sock' ]" 10 || fail "the API socket never appeared in the jail"

	expect_jailed_process "$pid" "$root"
	[ "$(stat -L -c %i "/proc/$pid/ns/net")" = "$(stat -L -c %i /var/run/netns/$ns)" ] ||
		fail "the VMM is not in the network namespace $ns"
	[ "$(readlink "/proc/$pid/ns/pid")" != "$(readlink /proc/self/ns/pid)" ] || fail "the PID namespace is the host's"
	grep -q "^NSpid:	$pid	1$" "/proc/$pid/status" || fail "not PID 1 in its namespace: $(grep ^NSpid "/proc/$pid/status")"
	grep -q "Max open files *512 *512" "/proc/$pid/limits" || fail "no-file limit not set"
	grep -q ":memory:/$parent/$id$" "/proc/$pid/cgroup" || fail "not in the memory cgroup: $(cat "/proc/$pid/cgroup")"
	grep -q ":cpu:/$parent/$id$" "/proc/$pid/cgroup" || fail "not in the cpu cgroup"
	local mem=/sys/fs/cgroup/memory/$parent/$id cpu=/sys/fs/cgroup/cpu/$parent/$id
	grep -qx "$pid" "$mem/cgroup.procs" || fail "$mem does not hold the VMM"
	[ "$(cat "$mem/memory.limit_in_bytes")" = 536870912 ] || fail "memory limit: $(cat "$mem/memory.limit_in_bytes")"
	[ "$(cat "$cpu/cpu.cfs_quota_us")" = 150000 ] || fail "cpu quota: $(cat "$cpu/cpu.cfs_quota_us")"

	# The orchestrator puts the guest's files in the jail; paths in API
	# calls are inside it. In a jail ember cannot see /sys, so on kvm_pvm
	# hosts the boot args carry what ember would otherwise add.
	ln "$BUILD/vmlinux" "$root/vmlinux" && ln "$BUILD/initramfs.cpio" "$root/initrd" || fail "placing the guest files"
	# The socket's host path is longer than a sun_path; reach it by a link.
	local sock=/tmp/ember-jail-$$.sock pvm=""
	ln -sfn "$root/run/api.sock" "$sock"
	[ -e /sys/module/kvm_pvm ] && pvm="noxsave clearcpuid=smap,erms,fsrm rodata=off percpu_alloc=page"
	expect_jail_api 204 "$sock" PUT /boot-source "{\"kernel_image_path\": \"/vmlinux\", \"initrd_path\": \"/initrd\",
		\"boot_args\": \"console=ttyS0 reboot=k panic=1 quiet i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd $pvm ember.cmd=\\\"echo jailed-guest-up; sleep 600\\\"\"}"
	expect_jail_api 204 "$sock" PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 128}'
	# tap0 exists only in the namespace, and only its owner may attach.
	expect_jail_api 204 "$sock" PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "tap0"}'
	expect_jail_api 204 "$sock" PUT /actions '{"action_type": "InstanceStart"}'
	wait_for "grep -q jailed-guest-up '$T/jail.out'" "$LINUX_TIMEOUT" || fail "the jailed guest did not reach init"
	expect_jail_api 204 "$sock" PUT /actions '{"action_type": "SendCtrlAltDel"}'
	wait_for "! kill -0 $pid 2>/dev/null" "$LINUX_TIMEOUT" || { fail "SendCtrlAltDel did not end the VM"; kill -9 "$pid"; }
	ip netns del $ns
	rm -f "$sock"

	"$JAILER" --cleanup --id $id --exec-file "$EMBER" --chroot-base-dir "$base" --parent-cgroup $parent \
		> "$T/cleanup.out" 2> "$T/cleanup.err" || fail "--cleanup failed: $(cat "$T/cleanup.err")"
	[ ! -e "$base/$(basename "$EMBER")/$id" ] || fail "--cleanup left the jail directory"
	[ ! -e "$mem" ] && [ ! -e "$cpu" ] || fail "--cleanup left the cgroups"
	rmdir /sys/fs/cgroup/memory/$parent /sys/fs/cgroup/cpu/$parent 2>/dev/null
}

# cgroup v2 (this host's unified hierarchy offers hugetlb, plus the core
# cgroup.* files), a jail on another file system (tmpfs: the binary is
# copied, not linked), and --daemonize.
test_jailer_cgroup_v2_copy_daemonize() {
	need_kvm || return
	need_jailer || return
	local v2
	v2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
	[ -n "$v2" ] || { skip "no cgroup2 hierarchy mounted"; return; }
	grep -qw hugetlb "$v2/cgroup.controllers" || { skip "cgroup v2 has no hugetlb controller here"; return; }
	local id=jail-v2-$$ parent=ember-it-$$/nested base=$T/tmpfs
	mkdir -p "$base" && mount -t tmpfs ember-it "$base" || { fail "cannot mount a tmpfs"; return; }
	"$JAILER" --id $id --exec-file "$EMBER" --uid $JAIL_UID --gid $JAIL_GID --chroot-base-dir "$base" \
		--cgroup-version 2 --parent-cgroup $parent --cgroup hugetlb.2MB.max=0 --cgroup cgroup.max.descendants=0 \
		--daemonize -- --api-sock /run/api.sock > "$T/jail.out" 2> "$T/jail.err" < /dev/null
	STATUS=$?
	expect_status 0
	local root=$base/$(basename "$EMBER")/$id/root pid
	pid=$(cat "$root/$(basename "$EMBER").pid" 2>/dev/null)
	grep -q "copied $(basename "$EMBER") to" "$T/jail.err" || fail "the jailer did not say it copied: $(cat "$T/jail.err")"
	[ "$(stat -c %h "$root/$(basename "$EMBER")")" = 1 ] || fail "the binary in a tmpfs jail is not a copy"
	if [ -n "$pid" ] && wait_for "[ -S '$root/run/api.sock' ]" 10; then
		expect_jailed_process "$pid" "$root"
		[ "$(ps -o sid= -p "$pid" | tr -d ' ')" = "$pid" ] || fail "--daemonize: not a session leader"
		[ "$(readlink "/proc/$pid/fd/1")" = /dev/null ] || fail "--daemonize: stdout is $(readlink "/proc/$pid/fd/1")"
		grep -qx "0::/$parent/$id" "/proc/$pid/cgroup" || fail "not in the v2 cgroup: $(cat "/proc/$pid/cgroup")"
		grep -qx "$pid" "$v2/$parent/$id/cgroup.procs" || fail "the v2 cgroup does not hold the VMM"
		[ "$(cat "$v2/$parent/$id/hugetlb.2MB.max")" = 0 ] || fail "hugetlb.2MB.max not set"
		[ "$(cat "$v2/$parent/$id/cgroup.max.descendants")" = 0 ] || fail "cgroup.max.descendants not set"
		grep -qw hugetlb "$v2/$parent/cgroup.subtree_control" || fail "hugetlb not enabled in the parent"
		cp "$BUILD/testvm.elf" "$root/testvm.elf"
		local sock=$root/run/api.sock
		expect_jail_api 204 "$sock" PUT /boot-source '{"kernel_image_path": "/testvm.elf"}'
		expect_jail_api 204 "$sock" PUT /actions '{"action_type": "InstanceStart"}'
		# The test guest resets at once: ember exits 0.
		wait_for "! kill -0 $pid 2>/dev/null" 20 || { fail "the test guest did not finish"; kill -9 "$pid"; }
	else
		fail "no running daemonized VMM (pid '$pid')"
	fi
	"$JAILER" --cleanup --id $id --exec-file "$EMBER" --chroot-base-dir "$base" --parent-cgroup $parent \
		> "$T/cleanup.out" 2> "$T/cleanup.err" || fail "--cleanup failed: $(cat "$T/cleanup.err")"
	[ ! -e "$v2/$parent/$id" ] || fail "--cleanup left the v2 cgroup"
	[ ! -e "$base/$(basename "$EMBER")/$id" ] || fail "--cleanup left the jail"
	rmdir "$v2/$parent" "$v2/ember-it-$$" 2>/dev/null
	umount "$base"
}

test_jailer_seccomp_kills_forbidden_syscall() {
	need_kvm || return
	need_file "$EMBER_TEST" || return
	# The trigger exists only in the test build.
	run_ember release 5 --test-forbidden-syscall vmm
	expect_status 153 # a bad command line, as Firecracker
	expect_err release "unknown option '--test-forbidden-syscall'"

	local role args
	for role in vmm api vcpu; do
		args=(--api-sock "$T/$role.sock")
		if [ $role = vcpu ]; then
			write_config "$T/vm.json" "$BUILD/testvm.elf" "" "console=ttyS0" 1 64
			args=(--no-api --config-file "$T/vm.json")
		fi
		# (bash reports the killed subshell on the stderr of the group around it)
		{ (timeout 20 "$EMBER_TEST" "${args[@]}" --test-forbidden-syscall $role > "$T/$role.out" 2> "$T/$role.err" < /dev/null); } 2> /dev/null
		STATUS=$?
		[ $STATUS = 159 ] || fail "$role: exit status $STATUS, expected 159 (SIGSYS)"
		expect_err $role "calling personality() from the $role thread"
		grep -q "not killed" "$T/$role.err" && fail "$role: the forbidden syscall returned"
	done
	# Without filters the same call returns: the trigger really makes it.
	timeout 20 "$EMBER_TEST" --api-sock "$T/nf.sock" --no-seccomp --test-forbidden-syscall vmm > "$T/nf.out" 2> "$T/nf.err"
	STATUS=$?
	expect_status 3
	expect_err nf "not killed"

	# In a jail the jailer's own filter holds until the VMM's; with
	# --no-seccomp there is none at all (as Firecracker's jailer does it).
	if [ "$(id -u)" = 0 ] && [ -x "$JAILER" ]; then
		("$JAILER" --id sigsys-$$ --exec-file "$EMBER_TEST" --uid $JAIL_UID --gid $JAIL_GID --chroot-base-dir "$T/jails" \
			-- --test-forbidden-syscall vmm > "$T/jail.out" 2> "$T/jail.err" < /dev/null; exit $?) 2> /dev/null
		STATUS=$?
		[ $STATUS = 159 ] || fail "jailed: exit status $STATUS, expected 159 (SIGSYS)"
		expect_err jail "calling personality() from the vmm thread"
		"$JAILER" --cleanup --id sigsys-$$ --exec-file "$EMBER_TEST" --chroot-base-dir "$T/jails" > /dev/null 2>&1
		"$JAILER" --id sigsys-$$ --exec-file "$EMBER_TEST" --uid $JAIL_UID --gid $JAIL_GID --chroot-base-dir "$T/jails" \
			-- --no-seccomp --test-forbidden-syscall vmm > "$T/jail-nf.out" 2> "$T/jail-nf.err" < /dev/null
		STATUS=$?
		expect_status 3
		expect_err jail-nf "not killed"
		"$JAILER" --cleanup --id sigsys-$$ --exec-file "$EMBER_TEST" --chroot-base-dir "$T/jails" > /dev/null 2>&1
	fi
}

# Each bad input: exit 1, one clear error, and nothing left behind (no
# jail directory, no cgroup, no mount).
test_jailer_bad_input_leaves_nothing() {
	need_jailer || return
	local base=$T/jails parent=ember-it-$$ name
	name=$(basename "$EMBER")
	cp "$EMBER" "$T/not-executable" && chmod 644 "$T/not-executable"
	printf '#!/bin/sh\nexit 0\n' > "$T/script" && chmod 755 "$T/script"
	mkdir "$T/dir-exec"
	local long
	long=$(printf 'a%.0s' $(seq 65))
	local n=0
	bad() { # expected-message jailer-args...
		local want=$1
		shift
		n=$((n + 1))
		"$JAILER" --chroot-base-dir "$base" --parent-cgroup $parent "$@" > "$T/bad$n.out" 2> "$T/bad$n.err" < /dev/null
		STATUS=$?
		[ $STATUS = 1 ] || fail "case $n ($*): exit status $STATUS, expected 1"
		grep -qF -- "$want" "$T/bad$n.err" || fail "case $n ($*): stderr lacks '$want': $(cat "$T/bad$n.err")"
		[ "$(grep -c 'error:' "$T/bad$n.err")" = 1 ] || fail "case $n: not exactly one error line"
		# Not even the base: this run made it, and removes it again.
		[ ! -e "$base" ] || fail "case $n ($*): left $(find "$base" | head -4 | tr '\n' ' ')"
		ls -d /sys/fs/cgroup/*/$parent/bad-$$ /sys/fs/cgroup/*/$parent/*/bad-$$ 2>/dev/null && fail "case $n ($*): left a cgroup"
		grep -q "$base" /proc/mounts && fail "case $n ($*): left a mount"
	}
	local ok=(--exec-file "$EMBER" --uid $JAIL_UID --gid $JAIL_GID)
	# Firecracker's wording, which clients match, then ember's.
	bad "Invalid instance ID: Invalid char (/) at position 3 (--id 'bad/id': must be 1-64 letters" --id bad/id "${ok[@]}"
	bad "Invalid instance ID: Invalid len (65);  the length must be between 1 and 64" --id "$long" "${ok[@]}"
	bad "Invalid instance ID: Invalid len (0);  the length must be between 1 and 64" --id "" "${ok[@]}"
	bad "--id is required" "${ok[@]}"
	bad "--exec-file $T/missing: Failed to canonicalize path $T/missing: No such file or directory (os error 2)" --id bad-$$ --exec-file "$T/missing" --uid 1 --gid 1
	bad "not an executable file" --id bad-$$ --exec-file "$T/not-executable" --uid 1 --gid 1
	bad "--exec-file $T/script: not a 64-bit ELF executable" --id bad-$$ --exec-file "$T/script" --uid 1 --gid 1
	bad "--exec-file $T/dir-exec: $(realpath "$T/dir-exec") is not a file (it is a directory)" --id bad-$$ --exec-file "$T/dir-exec" --uid 1 --gid 1
	bad "--uid 'abc': must be a number" --id bad-$$ --exec-file "$EMBER" --uid abc --gid 1
	bad "--gid '-1': must be a number" --id bad-$$ --exec-file "$EMBER" --uid 1 --gid -1
	bad "--cgroup 'memory': expected FILE=VALUE" --id bad-$$ "${ok[@]}" --cgroup memory
	bad "--cgroup-version '3': must be 1 or 2" --id bad-$$ "${ok[@]}" --cgroup-version 3
	bad "--resource-limit 'cpu=1'" --id bad-$$ "${ok[@]}" --resource-limit cpu=1
	bad "--netns $T/no-netns: No such file" --id bad-$$ "${ok[@]}" --netns "$T/no-netns"
	bad "unexpected argument 'stray'" --id bad-$$ "${ok[@]}" stray
	# These fail after the jail and cgroups were made: all of it must go.
	bad "--cgroup memory.no_such_file: no such cgroup file" --id bad-$$ "${ok[@]}" \
		--cgroup memory.limit_in_bytes=100000000 --cgroup memory.no_such_file=1
	bad "the cgroup v1 controller 'nosuch' is not mounted" --id bad-$$ "${ok[@]}" --cgroup nosuch.limit=1
	if awk '$3 == "cgroup2" { found = 1 } END { exit !found }' /proc/mounts; then
		bad "cgroup v2 controller 'memory' is not available" --id bad-$$ "${ok[@]}" --cgroup-version 2 \
			--cgroup memory.max=100000000
		# A host without a v2 hierarchy: unmount it in a private mount namespace.
		n=$((n + 1))
		unshare -m sh -c "awk '\$3 == \"cgroup2\" { print \$2 }' /proc/mounts | xargs -r umount &&
			exec \"$JAILER\" --chroot-base-dir \"$base\" --id bad-$$ --exec-file \"$EMBER\" --uid 1 --gid 1 \
			--cgroup-version 2 --cgroup cgroup.max.depth=1" > "$T/bad$n.out" 2> "$T/bad$n.err"
		STATUS=$?
		[ $STATUS = 1 ] || fail "no cgroup2 mounted: exit status $STATUS"
		grep -q "no cgroup2 hierarchy is mounted" "$T/bad$n.err" || fail "no cgroup2 mounted: $(cat "$T/bad$n.err")"
		[ ! -e "$base" ] || fail "no cgroup2 mounted: left $(find "$base" | head -4 | tr '\n' ' ')"
	fi
	# (the old jailer made this jail, at $base, and ran the VMM in it)
	bad "--chroot-base-dir '$T/x/../jails': must be an absolute path" --chroot-base-dir "$T/x/../jails" --id bad-$$ \
		"${ok[@]}" -- --version
	rmdir /sys/fs/cgroup/*/$parent 2>/dev/null
	true
}

# <base>/<exec-name> a symlink to a directory outside the base: the jailer
# refuses to make the jail there, --cleanup refuses to remove through it
# (or through <id> a symlink), and nothing outside is made or removed. A
# base given through a symlink is the administrator's and is followed.
test_jailer_symlink_below_base_refused() {
	need_jailer || return
	local base=$T/jails outside=$T/outside id=sym-$$ name
	name=$(basename "$EMBER")
	mkdir -p "$base" "$outside" && chmod 755 "$outside" && ln -s "$outside" "$base/$name"
	local ok=(--exec-file "$EMBER" --uid $JAIL_UID --gid $JAIL_GID --chroot-base-dir "$base")
	jailer_run make "$JAILER" --id $id "${ok[@]}" -- --version
	expect_jailer make 1 "$base/$name: is a symbolic link, not a directory"
	expect_untouched "$outside"

	mkdir -p "$outside/$id/root" && touch "$outside/$id/root/keep"
	jailer_run cleanup "$JAILER" --cleanup --id $id --exec-file "$EMBER" --chroot-base-dir "$base"
	expect_jailer cleanup 1 "$base/$name: is a symbolic link"
	[ -e "$outside/$id/root/keep" ] || fail "--cleanup removed $outside/$id, outside the base"

	rm "$base/$name" && mkdir "$base/$name" && ln -s "$outside/$id" "$base/$name/$id"
	jailer_run cleanup-id "$JAILER" --cleanup --id $id --exec-file "$EMBER" --chroot-base-dir "$base"
	expect_jailer cleanup-id 1 "$base/$name/$id: is a symbolic link"
	[ -e "$outside/$id/root/keep" ] || fail "--cleanup removed $outside/$id through the symlink <id>"
	[ -L "$base/$name/$id" ] || fail "--cleanup removed the symlink, which it did not make"

	# The base itself through a symlink: the jail is made in its target.
	mkdir "$T/real-base" && ln -s "$T/real-base" "$T/base-link"
	jailer_run link "$JAILER" --id $id --exec-file "$EMBER" --uid $JAIL_UID --gid $JAIL_GID \
		--chroot-base-dir "$T/base-link" -- --version
	# (then it runs ember --version, whose exit status is not the jailer's:
	# the SAN build's leak check fails in a jail)
	grep -qF "copied $name" "$T/link.err" && ! grep -q "ember-jailer: error:" "$T/link.err" ||
		fail "link: the jailer failed: $(cat "$T/link.err")"
	[ -d "$T/real-base/$name/$id/root/dev" ] || fail "no jail in the base's target"
	# What the jail's uid may leave in root/: symlinks out of it go, their targets stay.
	mkdir -p "$outside/kept/sub" "$T/real-base/$name/$id/root/d"
	ln -s "$outside/kept" "$T/real-base/$name/$id/root/escape"
	ln -s "$outside/kept" "$T/real-base/$name/$id/root/d/escape"
	jailer_run link-cleanup "$JAILER" --cleanup --id $id --exec-file "$EMBER" --chroot-base-dir "$T/base-link"
	expect_jailer link-cleanup 0 "removed the jail"
	[ ! -e "$T/real-base/$name/$id" ] || fail "--cleanup through the base's symlink left the jail"
	[ -d "$outside/kept/sub" ] || fail "--cleanup followed a symlink in the jail out of it"
}

# The race of <id> (or <id>/root) swapped for a symlink to a root-owned
# directory outside the base, just after <id>/root was made: nothing
# outside is chowned or made, the jailer fails, and it removes what it
# made (not the symlink). The test build pauses at exactly that point.
test_jailer_race_on_jail_dirs_stays_in_base() {
	need_jailer || return
	need_file "$JAILER_TEST" || return
	local base=$T/jails outside=$T/outside id=race-$$ name what swap fork
	name=$(basename "$EMBER")
	local jail=$base/$name/$id
	# root-fork: the check fails in the forked child; the parent undoes.
	for what in id root root-fork; do
		rm -rf "$base" "$outside"
		mkdir -p "$outside/root" && chmod 755 "$outside" "$outside/root"
		case $what in
		id) swap="mv \"\$1\" \"\$1.moved\" && ln -s '$outside' \"\$1\"" ;;
		root*) swap="mv \"\$1/root\" \"\$1/root.moved\" && ln -s '$outside/root' \"\$1/root\"" ;;
		esac
		fork=()
		[ $what = root-fork ] && fork=(--daemonize)
		jailer_run race-$what "$JAILER_TEST" --id $id --exec-file "$EMBER" --uid $JAIL_UID --gid $JAIL_GID \
			--chroot-base-dir "$base" "${fork[@]}" --test-after-root "$swap" -- --version
		expect_jailer race-$what 1 "was moved or replaced while the jail was being made"
		[ "$(grep -c 'error:' "$T/race-$what.err")" = 1 ] || fail "race-$what: not exactly one error line"
		expect_untouched "$outside/root"
		[ "$(ls -A "$outside")" = root ] || fail "race-$what: made $(ls -A "$outside" | tr '\n' ' ') outside the base"
		grep -q "$base" /proc/mounts && fail "race-$what: left a mount"
		case $what in
		id)
			[ -L "$jail" ] || fail "race-id: removed the symlink it did not make"
			[ -d "$jail.moved" ] && [ -z "$(ls -A "$jail.moved")" ] ||
				fail "race-id: left what it made in the renamed jail: $(ls -A "$jail.moved" 2>&1 | tr '\n' ' ')"
			;;
		root*)
			[ ! -e "$jail" ] && [ ! -L "$jail" ] || fail "race-$what: left the jail $jail: $(ls -A "$jail" | tr '\n' ' ')"
			[ ! -e "$base" ] || fail "race-$what: left the base it made"
			;;
		esac
	done
}

# Paths that name a FIFO: each refused at once with a clear error (open()
# of a FIFO waits for a writer), and nothing is made.
test_jailer_fifo_paths_refused_without_blocking() {
	need_jailer || return
	local base=$T/jails
	mkfifo "$T/fifo" && echo "not a namespace" > "$T/file"
	local ok=(--uid $JAIL_UID --gid $JAIL_GID)
	jailer_run netns "$JAILER" --id fifo1-$$ "${ok[@]}" --exec-file "$EMBER" --chroot-base-dir "$base" \
		--netns "$T/fifo" -- --version
	expect_jailer netns 1 "--netns $T/fifo: is a FIFO, not a regular file"
	jailer_run netns-file "$JAILER" --id fifo2-$$ "${ok[@]}" --exec-file "$EMBER" --chroot-base-dir "$base" \
		--netns "$T/file" -- --version
	expect_jailer netns-file 1 "--netns $T/file: not a network namespace"
	jailer_run exec "$JAILER" --id fifo3-$$ "${ok[@]}" --exec-file "$T/fifo" --chroot-base-dir "$base" -- --version
	expect_jailer exec 1 "--exec-file $T/fifo: $(realpath "$T/fifo") is not a file (it is a FIFO)"
	jailer_run base "$JAILER" --id fifo4-$$ "${ok[@]}" --exec-file "$EMBER" --chroot-base-dir "$T/fifo" -- --version
	expect_jailer base 1 "--chroot-base-dir $T/fifo: is a FIFO, not a directory"
	[ -p "$T/fifo" ] || fail "the FIFO is gone"
	[ ! -e "$base" ] || fail "a refused run left $base: $(find "$base" | head -4 | tr '\n' ' ')"
}

# stage_jail ROOT: what an orchestrator (or Firecracker's test framework)
# puts in the jail before it starts the jailer: the kernel and a drive
# owned by the jail's uid, a serial log, and /etc/localtime as root's.
stage_jail() {
	mkdir -p "$1/etc" && cp "$BUILD/testvm.elf" "$1/vmlinux.bin" && make_testdisk "$1/disk.img" &&
		: > "$1/serial.log" && cp /etc/localtime "$1/etc/localtime" 2>/dev/null || : > "$1/etc/localtime"
	chown $JAIL_UID:$JAIL_GID "$1/vmlinux.bin" "$1/disk.img" "$1/serial.log" && chmod 600 "$1/disk.img"
}

# short_sock ROOT: a short path to the jail's API socket (its host path
# can be longer than a sun_path); removed with the test's directory.
short_sock() {
	local link=/tmp/ember-jail-$$-$RANDOM.sock
	ln -sfn "$1/run/api.sock" "$link" && echo "$link"
}

# The staged files, as stage_jail left them.
expect_staged() { # root
	[ "$(stat -c %u:%g:%a "$1/vmlinux.bin" "$1/disk.img" "$1/etc/localtime" "$1/etc" 2>&1 | tr '\n' ' ')" = \
		"$JAIL_UID:$JAIL_GID:755 $JAIL_UID:$JAIL_GID:600 0:0:644 0:0:755 " ] ||
		fail "the staged files changed: $(stat -c '%n %u:%g:%a' "$1/vmlinux.bin" "$1/disk.img" "$1/etc/localtime" "$1/etc" 2>&1 | tr '\n' ' ')"
	cmp -s "$BUILD/testvm.elf" "$1/vmlinux.bin" || fail "the staged kernel's content changed"
}

# A jail filled before the jailer starts (Firecracker's getting-started
# and test-framework flow) is used, not refused; the staged files are
# kept; the guest boots from them and reads the drive; the jail's
# directories and nodes have Firecracker's modes and owners.
test_jailer_prestaged_jail_boots_and_keeps_files() {
	need_kvm || return
	need_jailer || return
	local id=staged-$$ base=$T/jails name
	name=$(basename "$EMBER")
	local root=$base/$name/$id/root
	mkdir -p "$root" && stage_jail "$root" || { fail "staging the jail"; return; }
	jailer_run jail "$JAILER" --id $id --exec-file "$EMBER" --uid $JAIL_UID --gid $JAIL_GID --chroot-base-dir "$base" \
		--daemonize --new-pid-ns -- --api-sock /run/api.sock
	expect_jailer jail 0 "copied $name"
	local pid
	pid=$(cat "$root/$name.pid" 2>/dev/null)
	[ -n "$pid" ] && wait_for "[ -S '$root/run/api.sock' ]" 10 || { fail "no API socket in the jail (pid '$pid')"; return; }
	expect_jailed_process "$pid" "$root"
	local want="$JAIL_UID:$JAIL_GID" got
	got=$(cd "$root" && stat -c '%n %F %u:%g %a' . dev dev/net run dev/kvm dev/net/tun "$name" | tr '\n' ',')
	[ "$got" = ". directory $want 700,dev directory $want 700,dev/net directory $want 700,run directory $want 700,dev/kvm character special file $want 600,dev/net/tun character special file $want 600,$name regular file $want 755," ] ||
		fail "modes and owners in the jail: $got"
	cmp -s "$EMBER" "$root/$name" && [ "$(stat -c %h "$root/$name")" = 1 ] ||
		fail "the binary in the jail is not a copy of $EMBER"
	expect_staged "$root"
	local sock
	sock=$(short_sock "$root")
	expect_jail_api 204 "$sock" PUT /serial '{"serial_out_path": "/serial.log"}'
	expect_jail_api 204 "$sock" PUT /boot-source '{"kernel_image_path": "/vmlinux.bin", "boot_args": "testvm.virtio"}'
	expect_jail_api 204 "$sock" PUT /drives/testdisk '{"drive_id": "testdisk", "path_on_host": "/disk.img", "is_root_device": false}'
	expect_jail_api 204 "$sock" PUT /actions '{"action_type": "InstanceStart"}'
	wait_for "! kill -0 $pid 2>/dev/null" 30 || { fail "the test guest did not finish"; kill -9 "$pid"; }
	local serial
	serial=$(tr -d '\r' < "$root/serial.log")
	grep -qx "testvm: PASS virtio.blk.read" <<< "$serial" && grep -qx "testvm: PASS virtio.blk.write-read" <<< "$serial" ||
		fail "the guest did not use the staged drive: $(grep 'blk\.' "$root/serial.log" | head -3)"
	rm -f "$sock"
	# After the VM, the staged files are still there (the drive was written by the guest).
	[ "$(stat -c %u:%g:%a "$root/vmlinux.bin" "$root/disk.img" "$root/etc/localtime" | tr '\n' ' ')" = \
		"$JAIL_UID:$JAIL_GID:755 $JAIL_UID:$JAIL_GID:600 0:0:644 " ] || fail "the staged files did not survive the VM"
	"$JAILER" --cleanup --id $id --exec-file "$EMBER" --chroot-base-dir "$base" > /dev/null 2>&1
}

# <root>/<exec-name>.pid holds the VMM's pid in every mode: with and
# without --daemonize and --new-pid-ns.
test_jailer_pid_file_in_every_mode() {
	need_kvm || return
	need_jailer || return
	local base=$T/jails name mode n=0
	name=$(basename "$EMBER")
	for mode in "" "--daemonize" "--new-pid-ns" "--daemonize --new-pid-ns"; do
		n=$((n + 1))
		local id=pid$n-$$ root=$base/$name/pid$n-$$/root pid bg
		# shellcheck disable=SC2086
		"$JAILER" --id $id --exec-file "$EMBER" --uid $JAIL_UID --gid $JAIL_GID --chroot-base-dir "$base" $mode \
			-- --api-sock /run/api.sock > "$T/pid$n.out" 2> "$T/pid$n.err" < /dev/null &
		bg=$!
		if ! wait_for "[ -S '$root/run/api.sock' ]" 10; then
			fail "mode '$mode': no API socket: $(cat "$T/pid$n.err")"
			kill -9 $bg 2>/dev/null
			continue
		fi
		pid=$(cat "$root/$name.pid" 2>/dev/null)
		if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
			fail "mode '$mode': no pid file or no process ('$pid')"
		else
			[ "$(stat -L -c %d:%i "/proc/$pid/root")" = "$(stat -c %d:%i "$root")" ] &&
				[ "$(cat "/proc/$pid/comm")" = "$name" ] || fail "mode '$mode': pid $pid is not the jailed VMM"
			[ -z "$mode" ] && [ "$pid" != "$bg" ] && fail "without a fork the VMM is the jailer's pid $bg, not $pid"
			kill "$pid"
		fi
		wait_for "! kill -0 '$pid' 2>/dev/null" 10 || kill -9 "$pid" 2>/dev/null
		wait $bg 2>/dev/null
		"$JAILER" --cleanup --id $id --exec-file "$EMBER" --chroot-base-dir "$base" > /dev/null 2>&1
	done
}

# --no-seccomp passed to the VMM: it runs with no filter at all; without
# it, with the jailer's and its own.
test_jailer_no_seccomp_means_no_filter() {
	need_kvm || return
	need_jailer || return
	local base=$T/jails name args
	name=$(basename "$EMBER")
	for args in "--no-seccomp" ""; do
		local id=nosec${args:+1}-$$ root pid want=2
		root=$base/$name/$id/root
		[ -n "$args" ] && want=0
		# shellcheck disable=SC2086
		jailer_run nosec "$JAILER" --id $id --exec-file "$EMBER" --uid $JAIL_UID --gid $JAIL_GID \
			--chroot-base-dir "$base" --daemonize -- --api-sock /run/api.sock $args
		pid=$(cat "$root/$name.pid" 2>/dev/null)
		if [ -n "$pid" ] && wait_for "[ -S '$root/run/api.sock' ]" 10; then
			grep -q "^Seccomp:	$want$" "/proc/$pid/status" ||
				fail "'$args': $(grep ^Seccomp: "/proc/$pid/status"), expected $want"
			kill "$pid"
			wait_for "! kill -0 $pid 2>/dev/null" 10 || kill -9 "$pid"
		else
			fail "'$args': no running VMM: $(cat "$T/nosec.err")"
		fi
		"$JAILER" --cleanup --id $id --exec-file "$EMBER" --chroot-base-dir "$base" > /dev/null 2>&1
	done
}

# --resource-limit fsize=N and a snapshot bigger than N: ember is stopped
# by SIGXFSZ as Firecracker is (its log line, exit status 151), not left
# running with a failed request.
test_jailer_fsize_exceeded_by_snapshot_stops_vmm() {
	need_kvm || return
	need_jailer || return
	local id=fsize-$$ base=$T/jails name bg
	name=$(basename "$EMBER")
	local root=$base/$name/$id/root
	mkdir -p "$root" && stage_jail "$root" && : > "$root/ember.log" && chown $JAIL_UID:$JAIL_GID "$root/ember.log" ||
		{ fail "staging the jail"; return; }
	"$JAILER" --id $id --exec-file "$EMBER" --uid $JAIL_UID --gid $JAIL_GID --chroot-base-dir "$base" \
		--resource-limit fsize=1048576 -- --api-sock /run/api.sock --log-path /ember.log \
		> "$T/fsize.out" 2> "$T/fsize.err" < /dev/null &
	bg=$!
	wait_for "[ -S '$root/run/api.sock' ]" 10 || { fail "no API socket: $(cat "$T/fsize.err")"; kill -9 $bg; return; }
	local sock
	sock=$(short_sock "$root")
	expect_jail_api 204 "$sock" PUT /boot-source '{"kernel_image_path": "/vmlinux.bin", "boot_args": "testvm.hang"}'
	expect_jail_api 204 "$sock" PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
	expect_jail_api 204 "$sock" PUT /actions '{"action_type": "InstanceStart"}'
	expect_jail_api 204 "$sock" PATCH /vm '{"state": "Paused"}'
	local got
	got=$(jail_api "$sock" PUT /snapshot/create '{"snapshot_path": "/vm.vmstate", "mem_file_path": "/vm.mem"}')
	[ "$got" = 000 ] || fail "the snapshot request was answered ($got: $(cat "$T/resp")); the VMM should be gone"
	local status=none
	if wait_for "! kill -0 $bg 2>/dev/null" 20; then
		wait $bg
		status=$?
	else
		kill -9 $bg
	fi
	[ "$status" = 151 ] || fail "exit status $status, expected 151 (stopped by SIGXFSZ)"
	grep -q "Shutting down VM after intercepting signal 25, code 0" "$root/ember.log" ||
		fail "no SIGXFSZ line in the log: $(tail -3 "$root/ember.log")"
	rm -f "$sock"
	"$JAILER" --cleanup --id $id --exec-file "$EMBER" --chroot-base-dir "$base" > /dev/null 2>&1
}

# A run that fails in a jail that existed removes only what it made there:
# the staged files and the directories it found stay. Also refused there,
# touching nothing: a pid file (a VM ran there), and in place of the binary
# a hard link or a symlink to a host file.
test_jailer_failure_in_existing_jail_keeps_staged_files() {
	need_jailer || return
	local base=$T/jails parent=ember-it-$$ name id=kept-$$
	name=$(basename "$EMBER")
	local jail=$base/$name/$id root=$base/$name/$id/root
	local ok=(--id $id --exec-file "$EMBER" --uid $JAIL_UID --gid $JAIL_GID --chroot-base-dir "$base" --parent-cgroup $parent)
	# Fails after the jail's files and the cgroups were made.
	local late=(--cgroup memory.limit_in_bytes=100000000 --cgroup memory.no_such_file=1)
	mkdir -p "$root" && stage_jail "$root" || { fail "staging the jail"; return; }
	jailer_run late "$JAILER" "${ok[@]}" "${late[@]}"
	expect_jailer late 1 "--cgroup memory.no_such_file: no such cgroup file"
	expect_staged "$root"
	[ "$(cd "$root" && ls -A | sort | tr '\n' ' ')" = "disk.img etc serial.log vmlinux.bin " ] ||
		fail "left in the existing root: $(ls -A "$root" | tr '\n' ' ')"
	# <id> existed, root/ did not: root/ goes, <id> stays.
	rm -rf "$root" && touch "$jail/keep"
	jailer_run late-root "$JAILER" "${ok[@]}" "${late[@]}"
	expect_jailer late-root 1 "--cgroup memory.no_such_file: no such cgroup file"
	[ "$(ls -A "$jail")" = keep ] || fail "left in the existing <id>: $(ls -A "$jail" | tr '\n' ' ')"

	mkdir -p "$root" && stage_jail "$root" && echo 4242 > "$root/$name.pid"
	jailer_run pid "$JAILER" "${ok[@]}" -- --version
	expect_jailer pid 1 "Failed to open file $root/$name.pid: File exists"
	[ "$(cat "$root/$name.pid")" = 4242 ] || fail "the pid file was changed"
	rm "$root/$name.pid"

	echo host-file > "$T/host-file" && chmod 644 "$T/host-file"
	ln "$T/host-file" "$root/$name"
	jailer_run hardlink "$JAILER" "${ok[@]}" -- --version
	expect_jailer hardlink 1 "Detected hard link at: $root/$name"
	rm "$root/$name" && ln -s "$T/host-file" "$root/$name"
	jailer_run symlink "$JAILER" "${ok[@]}" -- --version
	expect_jailer symlink 1 "Failed to open $root/$name"
	[ -L "$root/$name" ] || fail "the symlink in the jail was removed"
	[ "$(stat -c %u:%g:%a:%h "$T/host-file")" = 0:0:644:1 ] && [ "$(cat "$T/host-file")" = host-file ] ||
		fail "the host file behind the link was changed: $(stat -c %u:%g:%a:%h "$T/host-file")"
	rm "$root/$name"
	expect_staged "$root"
	[ "$(cd "$root" && ls -A | sort | tr '\n' ' ')" = "disk.img etc serial.log vmlinux.bin " ] ||
		fail "left in the existing root: $(ls -A "$root" | tr '\n' ' ')"
	rmdir /sys/fs/cgroup/*/$parent 2>/dev/null
	true
}

# cgroup v2, --parent-cgroup and no --cgroup: the VMM goes into the parent
# cgroup itself if it exists (no <id> cgroup is made), fails clearly if the
# parent cannot hold processes (a domain controller enabled for its
# children), and goes into none if it does not exist (none is made).
test_jailer_cgroup_v2_parent_without_settings() {
	need_kvm || return
	need_jailer || return
	local v2
	v2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
	[ -n "$v2" ] || { skip "no cgroup2 hierarchy mounted"; return; }
	local base=$T/jails name parent=ember-it-$$-p id=cgp-$$
	name=$(basename "$EMBER")
	local root=$base/$name/$id/root pid
	mkdir "$v2/$parent" || { fail "cannot make $v2/$parent"; return; }
	local args=(--id $id --exec-file "$EMBER" --uid $JAIL_UID --gid $JAIL_GID --chroot-base-dir "$base"
		--cgroup-version 2 --parent-cgroup $parent --daemonize -- --api-sock /run/api.sock)
	jailer_run exists "$JAILER" "${args[@]}"
	expect_jailer exists 0 "copied $name"
	pid=$(cat "$root/$name.pid" 2>/dev/null)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		grep -qx "0::/$parent" "/proc/$pid/cgroup" || fail "not in the parent cgroup: $(grep '^0::' "/proc/$pid/cgroup")"
		[ ! -e "$v2/$parent/$id" ] || fail "a cgroup for the VM was made without --cgroup"
		kill "$pid"
		wait_for "! kill -0 $pid 2>/dev/null" 10 || kill -9 "$pid"
	else
		fail "no running VMM: $(cat "$T/exists.err")"
	fi
	"$JAILER" --cleanup --id $id --exec-file "$EMBER" --chroot-base-dir "$base" > /dev/null 2>&1
	local ctl
	ctl=$(tr ' ' '\n' < "$v2/cgroup.subtree_control" | grep -vx '' | head -1)
	if [ -n "$ctl" ] && echo "+$ctl" > "$v2/$parent/cgroup.subtree_control" 2>/dev/null; then
		jailer_run busy "$JAILER" "${args[@]}"
		expect_jailer busy 1 "Failed to move process to cgroup ($v2/$parent): Device or resource busy (os error 16)"
		echo "-$ctl" > "$v2/$parent/cgroup.subtree_control"
		"$JAILER" --cleanup --id $id --exec-file "$EMBER" --chroot-base-dir "$base" > /dev/null 2>&1
	fi
	rmdir "$v2/$parent"
	jailer_run missing "$JAILER" "${args[@]}"
	expect_jailer missing 0 "copied $name"
	pid=$(cat "$root/$name.pid" 2>/dev/null)
	[ ! -e "$v2/$parent" ] || fail "the missing parent cgroup was made"
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && { wait_for "! kill -0 $pid 2>/dev/null" 10 || kill -9 "$pid"; }
	"$JAILER" --cleanup --id $id --exec-file "$EMBER" --chroot-base-dir "$base" > /dev/null 2>&1
	true
}

# A mount the host makes in the jail's root after the VMM started (an
# orchestrator binding a drive in) reaches the jail, as with Firecracker's
# jailer: the jail's mounts are slaves of the host's. (The base is a
# shared mount of its own, as / is on most hosts.)
test_jailer_host_mounts_reach_the_jail() {
	need_kvm || return
	need_jailer || return
	local base=$T/shared id=mnt-$$ name
	name=$(basename "$EMBER")
	local root=$base/$name/$id/root pid
	mkdir -p "$base" && mount -t tmpfs ember-it "$base" && mount --make-shared "$base" || { fail "cannot mount a shared tmpfs"; return; }
	jailer_run jail "$JAILER" --id $id --exec-file "$EMBER" --uid $JAIL_UID --gid $JAIL_GID --chroot-base-dir "$base" \
		--daemonize -- --api-sock /run/api.sock
	pid=$(cat "$root/$name.pid" 2>/dev/null)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		echo bound-late > "$T/late.img" && : > "$root/late.img" && mount --bind "$T/late.img" "$root/late.img" ||
			fail "cannot bind a file into the jail"
		[ "$(cat "/proc/$pid/root/late.img" 2>&1)" = bound-late ] ||
			fail "the host's bind mount did not reach the jail: '$(cat "/proc/$pid/root/late.img" 2>&1)'"
		umount "$root/late.img"
		kill "$pid"
		wait_for "! kill -0 $pid 2>/dev/null" 10 || kill -9 "$pid"
	else
		fail "no running VMM: $(cat "$T/jail.err")"
	fi
	umount -l "$base"
}

# --exec-file through a symlink: the jail (and the binary in it) is named
# after the file it leads to, as with Firecracker's jailer.
test_jailer_exec_file_symlink_names_jail_after_target() {
	need_jailer || return
	local base=$T/jails id=lnk-$$ name
	name=$(basename "$EMBER")
	ln -s "$(realpath "$EMBER")" "$T/vmm-link"
	jailer_run link "$JAILER" --id $id --exec-file "$T/vmm-link" --uid $JAIL_UID --gid $JAIL_GID \
		--chroot-base-dir "$base" -- --version
	grep -qF "copied $name to $base/$name/$id/root" "$T/link.err" || fail "the jailer failed: $(cat "$T/link.err")"
	[ -f "$base/$name/$id/root/$name" ] && [ ! -e "$base/vmm-link" ] ||
		fail "the jail is not named after the link's target: $(ls "$base" | tr '\n' ' ')"
	"$JAILER" --cleanup --id $id --exec-file "$T/vmm-link" --chroot-base-dir "$base" > "$T/cleanup.err" 2>&1 ||
		fail "--cleanup through the link: $(cat "$T/cleanup.err")"
	[ ! -e "$base/$name/$id" ] || fail "--cleanup through the link left the jail"
}

# --resource-limit no-file=3 leaves the VMM no descriptor beyond stdio: the
# jailer refuses it (exit 1, Firecracker's EMFILE words on stderr) before
# making anything, rather than daemonizing a VMM that fails unseen.
test_jailer_no_file_limit_too_low_refused() {
	need_jailer || return
	local base=$T/jails id=nofile-$$ name
	name=$(basename "$EMBER")
	jailer_run nofile "$JAILER" --id $id --exec-file "$EMBER" --uid $JAIL_UID --gid $JAIL_GID \
		--chroot-base-dir "$base" --daemonize --resource-limit no-file=3 -- --api-sock /run/api.sock
	expect_jailer nofile 1 "No file descriptors available (os error 24)"
	[ ! -e "$base/$name/$id" ] || fail "the refused run left $base/$name/$id"
	"$JAILER" --cleanup --id $id --exec-file "$EMBER" --chroot-base-dir "$base" > /dev/null 2>&1
	# One descriptor more is the VMM's to use (or fail on, as a sanitized
	# one does): the jailer makes the jail and execs it.
	jailer_run nofile4 "$JAILER" --id $id --exec-file "$EMBER" --uid $JAIL_UID --gid $JAIL_GID \
		--chroot-base-dir "$base" --resource-limit no-file=4 -- --version
	grep -qF "copied $name to" "$T/nofile4.err" && ! grep -qF "leaves the VMM" "$T/nofile4.err" ||
		fail "no-file=4 refused: $STATUS $(cat "$T/nofile4.err")"
	"$JAILER" --cleanup --id $id --exec-file "$EMBER" --chroot-base-dir "$base" > /dev/null 2>&1
}

# Started as a session leader with a terminal (as screen starts it), the
# jailer's exit after a --new-pid-ns fork must not hang up the VMM: the
# kernel sends the session SIGHUP when its leader exits.
test_jailer_new_pid_ns_as_session_leader_survives_its_exit() {
	need_kvm || return
	need_jailer || return
	command -v script > /dev/null || { fail "script (bsdutils) is missing"; return; }
	local base=$T/jails id=lead-$$ name pid
	name=$(basename "$EMBER")
	local root=$base/$name/$id/root
	# script runs the command in a new session on a pty; exec makes the
	# jailer that session's leader. script ends when the jailer exits.
	script -qec "exec '$JAILER' --id $id --exec-file '$EMBER' --uid $JAIL_UID --gid $JAIL_GID \
		--chroot-base-dir '$base' --new-pid-ns -- --api-sock /run/api.sock" /dev/null \
		> "$T/lead.out" 2>&1 < /dev/null ||
		{ fail "the jailer failed: $(tail -3 "$T/lead.out")"; return; }
	wait_for "[ -S '$root/run/api.sock' ]" 10 || { fail "no API socket: $(tail -3 "$T/lead.out")"; return; }
	pid=$(cat "$root/$name.pid")
	sleep 1 # a hangup, if any, has arrived by now
	if kill -0 "$pid" 2>/dev/null; then
		[ "$(awk '{ print $6 }' "/proc/$pid/stat")" = "$pid" ] || fail "the VMM does not lead a session of its own"
		kill "$pid"
		wait_for "! kill -0 '$pid' 2>/dev/null" 10 || kill -9 "$pid"
	else
		fail "the VMM died when the jailer exited: $(tail -3 "$T/lead.out")"
	fi
	"$JAILER" --cleanup --id $id --exec-file "$EMBER" --chroot-base-dir "$base" > /dev/null 2>&1
}
