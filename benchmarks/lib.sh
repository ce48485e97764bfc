# Shared by the benchmark scripts (sourced).

# The QEMU peer: the microvm machine as it runs on this host (see README).
QEMU_MICROVM=(qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=off,acpi=off -enable-kvm
              -cpu host,-arch-capabilities -nodefaults -no-user-config -nographic -no-reboot)

# stats FILE COLUMN [PRECISION] -> "median p90 n" over that column's
# values >= 0 (-1 marks a run that never got there). PRECISION: "fixed"
# (one decimal, the default) or "auto" (three significant digits or so).
stats() {
	awk -v c="$2" '$c >= 0 {print $c}' "$1" | sort -n | awk -v prec="${3:-fixed}" '
		function f(x) {
			if (prec == "fixed" || x >= 100) return sprintf(prec == "fixed" ? "%.1f" : "%.0f", x)
			return sprintf(x >= 10 ? "%.1f" : x >= 1 ? "%.2f" : "%.3f", x)
		}
		{ v[NR] = $1 }
		END { if (NR == 0) { print "- - 0"; exit }
		      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		      p = v[int(NR * 0.9 + 0.999)]; if (p == "") p = v[NR]
		      printf "%s %s %d\n", f(m), f(p), NR }'
}

# percentiles FILE COLUMN -> "median p90 p99 n" over that column's values
# >= 0, as stats with "auto" precision, and the 99th percentile (nearest
# rank, as the 90th: with fewer than 100 values it is the largest).
percentiles() {
	awk -v c="$2" '$c >= 0 {print $c}' "$1" | sort -n | awk '
		function f(x) { return sprintf(x >= 100 ? "%.0f" : x >= 10 ? "%.1f" : x >= 1 ? "%.2f" : "%.3f", x) }
		function rank(q,   i) { i = int(NR * q + 0.999); return v[i > NR ? NR : i] }
		{ v[NR] = $1 }
		END { if (NR == 0) { print "- - - 0"; exit }
		      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		      printf "%s %s %s %d\n", f(m), f(rank(0.9)), f(rank(0.99)), NR }'
}

# Headline results, gathered by benchmarks/report.sh into latest.md: each
# benchmark writes NAME.tsv next to its OUT, one row per metric with the
# columns metric, unit, ember median, ember p90, peer median, peer p90,
# ratio ember/peer, runs ember, runs peer ("-" where there is no peer).
headline_init() {
	HEADLINES=$(dirname "$OUT")/$1.tsv
	mkdir -p "$(dirname "$OUT")"
	: > "$HEADLINES"
}

# headline METRIC UNIT EMBER_SAMPLES COLUMN [PEER_SAMPLES COLUMN]
headline() {
	local em ep en qm=- qp=- qn=0 ratio=-
	read -r em ep en <<< "$(stats "$3" "$4" auto)"
	if [ $# -ge 6 ] && [ -f "$5" ]; then
		read -r qm qp qn <<< "$(stats "$5" "$6" auto)"
	fi
	[ "$en" -gt 0 ] && [ "$qn" -gt 0 ] && ratio=$(awk -v a="$em" -v b="$qm" 'BEGIN { r = b > 0 ? a / b : 0; printf(r < 0.1 ? "%.3f" : "%.2f", r) }')
	printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$1" "$2" "$em" "$ep" "$qm" "$qp" "$ratio" "$en" "$qn" >> "$HEADLINES"
}

# keep_samples NAME FILE: keep a run's raw samples, for the plots, as
# data/NAME.dat next to OUT.
keep_samples() {
	mkdir -p "$(dirname "$OUT")/data"
	cp "$2" "$(dirname "$OUT")/data/$1.dat"
}

# batch_span N COLUMN < lines: for N VMs launched together, each line
# (bootbench or restorebench with BENCH_ABSOLUTE) having its fork time in
# COLUMN and its completion time in the next one, print the milliseconds
# from the first fork to the last completion; -1 if any line is missing or
# did not complete.
batch_span() {
	awk -v n="$1" -v c="$2" '
		NF < c + 1 || $(c + 1) < 0 { bad = 1 }
		{ if (first == "" || $c < first) first = $c; if ($(c + 1) > last) last = $(c + 1) }
		END { if (bad || NR != n) print -1; else printf "%.2f\n", last - first }'
}

# per_second N MEDIAN_MS RUNS: N over the median in seconds, or "-" without runs.
per_second() {
	[ "$3" -gt 0 ] && awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / (t / 1000) }' || echo -
}

# A failed run: said on stderr (with the tail of its log) and counted in
# $tmp/failures for failures_line.
run_failed() { # SCRIPT WHAT LOG-FILE
	echo "$1: FAILED: $2" >&2
	[ -f "$3" ] && tail -n 15 "$3" | sed 's/^/    /' >&2
	echo "$2" >> "$tmp/failures"
}

# The report's line on failures: each distinct one with its count, or
# NONE_TEXT if there were none.
failures_line() { # NONE_TEXT
	if [ -s "$tmp/failures" ]; then
		echo "**Failed: $(wc -l < "$tmp/failures")**: $(sort "$tmp/failures" | uniq -c |
			sed 's/^ *\([0-9]*\) /\1× /' | paste -sd ';' | sed 's/;/; /g')."
	else
		echo "$1"
	fi
}

# One line describing where the numbers come from.
machine_line() {
	echo "on $(date -u +%Y-%m-%d), $(nproc) CPUs, $(uname -r)," \
	     "/dev/kvm: $( [ -d /sys/module/kvm_pvm ] && echo kvm_pvm || echo kvm )," \
	     "QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}')."
}

# scratch_dir PREFIX: a fresh directory in $tmp (under /tmp, so socket
# paths in it stay short), removed when the script ends, however it ends,
# together with every process whose pid is in a NAME.pid file in it.
scratch_dir() {
	tmp=$(mktemp -d "/tmp/$1.XXXX")
	trap scratch_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

scratch_cleanup() {
	local f pid
	for f in $(find "$tmp" -name '*.pid' 2> /dev/null); do
		pid=$(cat "$f" 2> /dev/null) || continue
		# Only a process that is still ours (its command line names $tmp).
		if [ -n "$pid" ] && tr "\0" " " 2> /dev/null < "/proc/$pid/cmdline" | grep -qF "$tmp"; then
			kill -9 "$pid" 2> /dev/null || true
		fi
	done
	rm -rf "$tmp"
}
# fc_overhead SMAPS MEM_MIB -> "rss pss" in KiB: the VMM's memory outside
# guest RAM counted as Firecracker's tests count it (every mapping but
# those at least as large as guest RAM).
fc_overhead() {
	awk -v mem=$(($2 * 1024)) '/^Size:/ { s = $2 } /^Rss:/ { r = $2 }
		/^Pss:/ { if (s < mem) { R += r; P += $2 } } END { print R + 0, P + 0 }' "$1"
}
# devices_vm EMBER SET DIR: boot the Linux guest (build/vmlinux, a copy of
# build/rootfs.ext4 as the root drive) with the devices of SET, cumulative:
#   root    the root drive alone
#   drives  + two more drives (3 in all)
#   net     + a network interface on a tap in a network namespace of its own
#   all     + vsock
# The guest reads every drive (16 direct reads at once on each), pings the
# host over the tap and sends a line over vsock, then says "mem-ready";
# then DIR/smaps is a copy of the VMM's /proc/PID/smaps. 128 MiB, 1 vCPU;
# ember serves its API socket, as under an orchestrator.
# Needs root for the tap. Returns non-zero (with DIR/err) if it failed.
DEVICES_GUEST_CMD='for d in /dev/vd?; do for i in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do dd if=$d of=/dev/null bs=64k count=4 skip=$((i*4)) iflag=direct 2>/dev/null & done; done; wait; if [ -e /sys/class/net/eth0 ]; then ip addr add 172.30.0.2/24 dev eth0; ip link set eth0 up; ping -c 2 -W 10 172.30.0.1 >/dev/null || echo ping-failed; fi; grep -qx 0x0013 /sys/bus/virtio/devices/*/device && { ember-vsock send 2 6000 hello-vsock || echo vsock-failed; }; echo mem-ready; sleep 600'
devices_vm() { # EMBER SET DIR
	local ember=$1 set=$2 dir=$3 ns="" pid rc=0 i drives net="" vsock="" root
	rm -rf "$dir" && mkdir -p "$dir"
	cp "$ember" "$dir/ember" # a private copy, as Firecracker's jailer makes
	cp --sparse=always "${BUILD:-build}/rootfs.ext4" "$dir/root.ext4"
	root=$(realpath "$dir/root.ext4")
	drives="{\"drive_id\": \"rootfs\", \"path_on_host\": \"$root\", \"is_root_device\": true}"
	if [ "$set" != root ]; then
		for i in 1 2; do
			truncate -s 16M "$dir/data$i.img"
			drives+=", {\"drive_id\": \"data$i\", \"path_on_host\": \"$(realpath "$dir/data$i.img")\", \"is_root_device\": false}"
		done
	fi
	if [ "$set" = net ] || [ "$set" = all ]; then
		ns=ember-mem-$$-$RANDOM
		ip netns add "$ns" && ip netns exec "$ns" ip tuntap add dev tap0 mode tap &&
			ip netns exec "$ns" ip addr add 172.30.0.1/24 dev tap0 && ip netns exec "$ns" ip link set tap0 up ||
			{ echo "cannot make a tap in a network namespace (needs root)" > "$dir/err"; [ -n "$ns" ] && ip netns del "$ns" 2> /dev/null; return 1; }
		net=', "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:1e:00:02"}]'
	fi
	if [ "$set" = all ]; then
		vsock=", \"vsock\": {\"guest_cid\": 3, \"uds_path\": \"$(realpath "$dir")/v.sock\"}"
		socat -u UNIX-LISTEN:"$dir/v.sock_6000" OPEN:"$dir/vsock.got",creat < /dev/null &
		echo $! > "$dir/socat.pid"
	fi
	local args="console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"$DEVICES_GUEST_CMD\""
	args=${args//\\/\\\\}; args=${args//\"/\\\"}
	cat > "$dir/vm.json" <<-EOF
	{"boot-source": {"kernel_image_path": "$(realpath "${BUILD:-build}/vmlinux")", "boot_args": "$args"},
	 "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
	 "drives": [$drives]$net$vsock}
	EOF
	${ns:+ip netns exec "$ns"} "$dir/ember" --api-sock "$dir/api.sock" --config-file "$dir/vm.json" < /dev/null > "$dir/out" 2> "$dir/err" &
	pid=$!
	echo "$pid" > "$dir/vmm.pid"
	for i in $(seq 6000); do # 600 s: a busy host's Linux boots can take minutes
		grep -q '^mem-ready' "$dir/out" 2> /dev/null && break
		kill -0 "$pid" 2> /dev/null || break
		sleep 0.1
	done
	grep -q '^mem-ready' "$dir/out" || rc=1
	grep -qE '^(ping|vsock)-failed' "$dir/out" && rc=1
	[ $rc -eq 0 ] && { sleep 1; cp "/proc/$pid/smaps" "$dir/smaps" || rc=1; }
	kill -9 "$pid" 2> /dev/null; wait "$pid" 2> /dev/null
	[ -f "$dir/socat.pid" ] && { kill "$(cat "$dir/socat.pid")" 2> /dev/null; wait "$(cat "$dir/socat.pid")" 2> /dev/null; }
	rm -f "$dir/vmm.pid" "$dir/socat.pid" "$dir/root.ext4" "$dir"/data*.img "$dir/ember"
	[ -n "$ns" ] && ip netns del "$ns"
	return $rc
}
