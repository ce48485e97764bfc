# ember-fn's jailed clones: a function with a "jail" has each clone's
# ember started by ember-jailer as the function's uid:gid, chrooted in a
# jail of its own that holds links of the template's files and its own
# scratch copy, with its own tap, in cgroups with the function's limits (a limit no clone
# can start under refuses the registration); the jail and the cgroups go
# with the clone, the clones with ember-fn, and what a killed ember-fn
# left with the next one started on its state directory.
# Uses fn_start, fn_call, EMBER_FN and LINUX_TIMEOUT from test_fn.sh.

# The handler: "net" brings the guest's eth0 up and sends on it (an ARP
# request at least), then prints its MAC and packets sent; anything else
# comes back upper-cased.
FN_JAIL_HANDLER='read -r op; case $op in
net) ip link set eth0 up && ip addr add 192.0.2.2/24 dev eth0 && ping -c 1 -W 2 192.0.2.1 > /dev/null 2>&1
     cat /sys/class/net/eth0/address /sys/class/net/eth0/statistics/tx_packets;;
*) echo "$op" | tr a-z A-Z;;
esac'
FN_JAIL_UID=64123

# jail_taps: the host's taps a jail's user owns.
jail_taps() {
	local t
	for t in /sys/class/net/efn*; do
		[ "$(cat "$t/owner" 2>/dev/null)" = $FN_JAIL_UID ] && echo "${t##*/}"
	done
}

# jail_pids FN_PID: the pids of the jailed embers ember-fn FN_PID started
# (their argv is /ember --id FN_PID-SEQ ...).
jail_pids() {
	pgrep -f -- "^/ember --id $1-[0-9]+ " || true
}

test_fn_jail_uid_chroot_cgroups() {
	need_kvm || return
	need_file "$EMBER_FN" || return
	need_file "$JAILER" || return
	local cg=/sys/fs/cgroup
	[ -d $cg/memory ] && [ -d $cg/pids ] || { skip "no cgroup v1 memory and pids hierarchies"; return; }
	fn_start /tmp/efj.$$ || return
	local state=$FN_STATE fn=$FN_PID i

	# Bad jails answer 400 with the field named, and register nothing.
	fn_call PUT /functions/fj '{"kernel_image_path": "/k", "rootfs_path": "/r", "handler": "a", "jail": {"gid": 1}}'
	[ "$(cat "$T/code")" = 400 ] && grep -q 'jail.uid: missing' "$T/body" || fail "no uid: $(cat "$T/code" "$T/body")"
	fn_call PUT /functions/fj '{"kernel_image_path": "/k", "rootfs_path": "/r", "handler": "a",
		"jail": {"uid": 1, "gid": 1, "cgroups": {"memory": "1"}}}'
	[ "$(cat "$T/code")" = 400 ] && grep -q 'jail.cgroups: a name must be a cgroup file' "$T/body" ||
		fail "a bad cgroup name: $(cat "$T/code" "$T/body")"
	fn_call PUT /functions/fj '{"kernel_image_path": "/k", "rootfs_path": "/r", "handler": "a",
		"jail": {"uid": 1, "gid": 1, "netns": "x"}}'
	[ "$(cat "$T/code")" = 400 ] && grep -q 'unknown field: jail.netns' "$T/body" || fail "jail.netns: $(cat "$T/body")"

	local k sum_before reg
	k=$(realpath "$BUILD/vmlinux")
	sum_before=$(sha256sum < "$T/root.ext4")
	# A limit no clone can start under (ember runs more than 2 threads):
	# the registration says so (its trial clone's reason), and leaves no
	# function, jail or cgroup behind.
	reg=$(jq -nc --arg k "$k" --arg r "$T/root.ext4" --arg h "$FN_JAIL_HANDLER" --argjson u $FN_JAIL_UID \
		'{kernel_image_path: $k, rootfs_path: $r, handler: $h, jail: {uid: $u, gid: $u, cgroups: {"pids.max": "2"}}}')
	fn_call PUT /functions/fbad "$reg"
	[ "$(cat "$T/code")" = 400 ] && grep -q 'jail: a clone could not start in it' "$T/body" ||
		fail "pids.max 2: $(cat "$T/code" "$T/body")"
	fn_call GET /functions/fbad
	[ "$(cat "$T/code")" = 404 ] || fail "the refused function is registered: $(cat "$T/code")"
	[ -z "$(jail_pids $fn)" ] || fail "the refused jail's ember still runs"
	[ -z "$(ls -d $cg/pids/ember/"$fn"-* 2>/dev/null)" ] || fail "the refused jail's cgroup is left"
	[ -z "$(ls "$state/fbad" | grep -v '\.log$')" ] || fail "the refused function left more than logs: $(ls -R "$state/fbad")"

	reg=$(jq -nc --arg k "$k" --arg r "$T/root.ext4" --arg h "$FN_JAIL_HANDLER" --argjson u $FN_JAIL_UID \
		'{kernel_image_path: $k, rootfs_path: $r, handler: $h, timeout_ms: 120000, max_concurrency: 2,
		  pool_size: 1, clone_policy: "reuse", max_warm: 1, network: true,
		  jail: {uid: $u, gid: $u, cgroups: {"memory.limit_in_bytes": "268435456", "pids.max": "64"}}}')
	fn_call PUT /functions/fj "$reg"
	[ "$(cat "$T/code")" = 204 ] || { fail "register: $(cat "$T/code" "$T/body")"; fn_keep_logs "$state"; kill $fn; wait $fn; return; }
	local dir=$state/fj sums
	sums=$(cd "$dir" && sha256sum template.mem template.state rootfs.ext4)

	# The pooled clone: jailed, as the uid, in its cgroups with the limits.
	local pid id
	for i in $(seq 300); do pid=$(jail_pids $fn); [ -n "$pid" ] && break; sleep 0.1; done
	[ "$(echo "$pid" | wc -w)" = 1 ] || { fail "not one pooled jailed clone: '$pid'"; kill $fn; wait $fn; return; }
	id=$(tr '\0' ' ' < "/proc/$pid/cmdline" | awk '{ print $3 }')
	local root=$dir/jail/ember/$id/root
	[ -d "$root" ] || fail "no jail at $root"
	grep -Eq "^Uid:[[:space:]]+$FN_JAIL_UID[[:space:]]+$FN_JAIL_UID[[:space:]]" "/proc/$pid/status" &&
		grep -Eq "^Gid:[[:space:]]+$FN_JAIL_UID[[:space:]]" "/proc/$pid/status" ||
		fail "the clone's ember does not run as $FN_JAIL_UID: $(grep -E '^(Uid|Gid)' "/proc/$pid/status")"
	[ "$(stat -L -c %d:%i "/proc/$pid/root")" = "$(stat -c %d:%i "$root")" ] ||
		fail "the clone's ember is not chrooted in $root"
	[ "$(stat -c %u:%g "$root/scratch.ext4")" = "$FN_JAIL_UID:$FN_JAIL_UID" ] || fail "the scratch copy is not the jail's"
	[ "$(stat -c %h:%u:%a "$root/template.mem")" = "$(stat -c %h "$dir/template.mem"):0:440" ] &&
		[ "$(stat -c %i "$root/template.mem")" = "$(stat -c %i "$dir/template.mem")" ] ||
		fail "the jail's memory file is not a read-only link of the template's: $(stat -c '%h %u %a %i' "$root/template.mem")"
	grep -q ":memory:/ember/$id\$" "/proc/$pid/cgroup" && grep -q ":pids:/ember/$id\$" "/proc/$pid/cgroup" ||
		fail "not in its cgroups: $(cat "/proc/$pid/cgroup")"
	# Its own tap, which the jail's user owns, attached to its ember.
	local tap
	tap=$(grep -h '^iff:' /proc/$pid/fdinfo/* 2>/dev/null | awk '{ print $2 }')
	case $tap in efn*) ;; *) fail "the pooled clone has no efn tap: '$tap'" ;; esac
	[ "$(cat /sys/class/net/$tap/owner 2>/dev/null)" = $FN_JAIL_UID ] || fail "$tap is not the jail user's"
	[ "$(cat $cg/memory/ember/$id/memory.limit_in_bytes)" = 268435456 ] &&
		[ "$(cat $cg/pids/ember/$id/pids.max)" = 64 ] || fail "the cgroup limits are not set"

	# Invocations are answered from the jail, 2 at a time; each clone's
	# jail and cgroups are gone with it.
	fn_call POST /functions/fj/invoke 'jailed'
	[ "$(cat "$T/code")" = 200 ] && [ "$(cat "$T/body")" = JAILED ] || fail "invoke: $(cat "$T/code" "$T/body")"
	seq 8 | xargs -P 2 -I{} sh -c "curl -s -m 300 --unix-socket '$T/fn.sock' -X POST \
		http://localhost/functions/fj/invoke --data-binary 'j {}' -o '$T/jinv.{}' -w '%{http_code}\n' \
		>> '$T/jcodes'"
	[ "$(grep -c '^200$' "$T/jcodes")" = 8 ] || fail "of 8 invocations: $(sort "$T/jcodes" | uniq -c | tr '\n' ' ')"
	for i in $(seq 8); do [ "$(cat "$T/jinv.$i")" = "J $i" ] || fail "answer $i: $(cat "$T/jinv.$i")"; done
	# The guest's eth0 sends through the clone's tap.
	fn_call POST /functions/fj/invoke net
	[ "$(cat "$T/code")" = 200 ] && [ "$(head -1 "$T/body")" = 06:00:ac:10:00:02 ] &&
		[ "$(sed -n 2p "$T/body")" -ge 1 ] || fail "net: $(cat "$T/code" "$T/body")"

	# Left: the pooled clone and the warm one, each with its jail and its
	# cgroups; those of every destroyed clone are gone.
	local kept jails cgs
	fn_call GET /functions/fj
	kept=$(jq '.pool + .warm' "$T/body")
	[ "$kept" = 2 ] || fail "not a pooled and a warm clone: $(cat "$T/body")"
	jails=$(ls "$dir/jail/ember")
	[ "$(echo "$jails" | wc -w)" = "$kept" ] || fail "jails left by destroyed clones: $jails"
	cgs=$(cd $cg/memory/ember && ls -d "$fn"-* 2>/dev/null)
	[ "$(echo "$cgs" | wc -w)" = "$kept" ] || fail "cgroups left by destroyed clones: $cgs"
	local taps
	taps=$(jail_taps)
	[ "$(echo "$taps" | wc -w)" = "$kept" ] || fail "taps left by destroyed clones: $taps"
	# Their memory is charged to their own cgroups (at least the 1 MiB a
	# restored guest surely writes), where the limit holds it.
	local c
	for c in $cgs; do
		[ "$(cat $cg/memory/ember/$c/memory.max_usage_in_bytes)" -gt 1048576 ] ||
			fail "$c was charged nothing: $(cat $cg/memory/ember/$c/memory.max_usage_in_bytes)"
	done
	[ "$(sha256sum < "$T/root.ext4")" = "$sum_before" ] || fail "the rootfs image changed"
	[ "$(cd "$dir" && sha256sum template.mem template.state rootfs.ext4)" = "$sums" ] ||
		fail "the template's files changed"

	# The jailed clones die with ember-fn (ember-jailer keeps ember-fn's
	# parent-death signal across its uid switch).
	local pids
	pids=$(jail_pids $fn)
	kill -KILL $fn
	wait $fn 2>/dev/null
	local p alive
	for i in $(seq 100); do
		alive=
		for p in $pids; do kill -0 $p 2>/dev/null && alive=$p; done
		[ -z "$alive" ] && break
		sleep 0.1
	done
	[ -n "$pids" ] || fail "no jailed clone to outlive ember-fn"
	[ -z "$alive" ] || { fail "a jailed clone outlived ember-fn"; kill -KILL $pids 2>/dev/null; }

	# A new ember-fn on the same state directory removes what the killed
	# one left (functions are not kept across runs): the jails, through
	# ember-jailer, with their cgroups, and the files.
	fn_keep_logs "$state"
	[ -n "$(ls "$dir/jail/ember")" ] || fail "the killed ember-fn left no jail"
	local old=$fn
	"$EMBER_FN" --api-sock "$T/fn2.sock" --state-dir "$state" --ember "$EMBER" --jailer "$JAILER" \
		> "$T/fn2.out" 2> "$T/fn2.err" &
	fn=$!
	for i in $(seq 100); do [ -S "$T/fn2.sock" ] && break; sleep 0.1; done
	[ -S "$T/fn2.sock" ] || fail "the second ember-fn never listened: $(cat "$T/fn2.err")"
	grep -q "removing the jail $dir/jail/ember/$old-" "$T/fn2.err" || fail "no sweep said: $(cat "$T/fn2.err")"
	[ ! -e "$dir" ] || fail "the earlier run's function is left: $(ls -R "$dir" | head -20)"
	[ -z "$(ls -d $cg/*/ember/"$old"-* 2>/dev/null)" ] || fail "the earlier run's cgroups are left: $(ls -d $cg/*/ember/"$old"-*)"
	[ -z "$(jail_taps)" ] || fail "the earlier run's taps are left: $(jail_taps)"
	kill $fn
	wait $fn 2>/dev/null
	rmdir $cg/*/ember/"$old"-* 2>/dev/null
	for tap in $(jail_taps); do ip link delete "$tap"; done
	fn_keep_logs "$state"
	rm -rf "$state"
}
