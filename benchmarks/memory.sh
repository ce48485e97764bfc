#!/usr/bin/env bash
# Memory benchmark: the VMM's own memory, that is everything in the VMM
# process except guest RAM (the way Firecracker measures its overhead),
# for ember and QEMU's microvm machine, run alternately (A/B/A/B) for each
# vCPU x memory configuration in the same run.
#
# Each run boots the test guest counting over a small memory pattern
# (testvm.counter, testvm.fill), waits for its first "testvm: count" line
# (everything set up, the guest running), then reads /proc/PID/smaps of the
# VMM process (QEMU is started directly, so its main process) and sums Rss
# and Pss over every mapping except guest RAM. Guest RAM is the private
# anonymous mapping of exactly the memory size, or if there is none (QEMU
# may round or align it) the smallest private anonymous mapping at least
# that large; which mapping was excluded is in the log and in the report.
# Also recorded: the totals with guest RAM, and the thread count (which
# includes the kvm-nx-lpage-recovery thread KVM attaches to the process).
#
# usage: benchmarks/memory.sh [RUNS]   (default 5 per VMM and configuration)
#   CONFIGS="1x128 2x128 1x512 1x2048 2x2048"  vCPUs x MiB
#   FILL=1      MiB of guest memory the test guest writes before counting
#   COPY=1      run each VMM from a private copy of its binary (see below)
#   TIMEOUT=60  seconds a run may take to reach the first count line
#   DEVICES="root drives net all"  then ember alone with devices (devices_vm
#               in lib.sh: a Linux guest using 1 drive; 3 drives; + a network
#               interface; + vsock), DEV_RUNS times each (default 3), counted
#               as Firecracker's tests count it; DEVICES="" skips them. Needs
#               root (the tap).
# A smoke run: CONFIGS=1x128 FILL=1 benchmarks/memory.sh 1 (a few seconds).
# Writes benchmarks/results/memory.md (OUT) and prints it, the medians as
# plain data to data/memory.dat next to it (for the plot), the headline rows
# to memory.tsv, and every run's mappings to build/memory.log (LOG). Exits 1 if any run failed (said so on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/lib.sh
RUNS=${1:-5}
DEFAULT_CONFIGS="1x128 2x128 1x512 1x2048 2x2048"
CONFIGS=${CONFIGS:-$DEFAULT_CONFIGS}
BUILD=${BUILD:-build}
EMBER=${EMBER:-$BUILD/ember}
OUT=${OUT:-benchmarks/results/memory.md}
DAT=$(dirname "$OUT")/data/memory.dat
LOG=${LOG:-$BUILD/memory.log}
# Every first touch of a guest page is slow under kvm_pvm (~1-5 ms a
# page), so the pattern stays small; it does not change the overhead.
FILL=${FILL:-1}
GUEST_ARGS="testvm.counter=100000 testvm.fill=$FILL"
TIMEOUT=${TIMEOUT:-60} # seconds until the first count line, per run

for c in $CONFIGS; do
	[[ $c =~ ^[1-9][0-9]*x[1-9][0-9]*$ ]] || { echo "memory.sh: bad configuration '$c' (want VCPUSxMIB)" >&2; exit 2; }
done
[ -f "$BUILD/testvm.elf" ] || { echo "memory.sh: $BUILD/testvm.elf missing (make $BUILD/testvm.elf)" >&2; exit 1; }
[ -x "$EMBER" ] || { echo "memory.sh: $EMBER missing (make $EMBER)" >&2; exit 1; }
KERNEL=$(realpath "$BUILD/testvm.elf")

scratch_dir membench # $tmp, short: socket paths must fit a sun_path

# Each VMM runs from a copy of its binary made here, so that no page of it
# is shared with another ember or QEMU on the host (other VMs, tests
# running at the same time), which would lower its PSS from run to run:
# each is measured as the only one of its kind (Firecracker's jailer, too,
# copies the binary into each jail). COPY=0 runs the binaries in place.
COPY=${COPY:-1}
QEMU=("${QEMU_MICROVM[@]}")
if [ "$COPY" = 1 ]; then
	mkdir "$tmp/bin"
	cp "$EMBER" "$tmp/bin/ember"
	qemu_bin=$(realpath "$(command -v "${QEMU[0]}")")
	cp "$qemu_bin" "$tmp/bin/${QEMU[0]##*/}"
	# QEMU finds its firmware (qboot) and modules relative to itself.
	ln -s "$(dirname "$(dirname "$qemu_bin")")/share" "$tmp/share"
	ln -s "$(dirname "$(dirname "$qemu_bin")")/lib" "$tmp/lib"
	EMBER=$tmp/bin/ember
	QEMU[0]=$tmp/bin/${QEMU[0]##*/}
fi

failed() { # what log-file
	run_failed memory.sh "$1" "$2"
	echo "FAILED: $1" >> "$LOG"
}

# Wait until the console shows the first count line: 0, or 1 if the VMM
# ended first, 2 after TIMEOUT seconds.
wait_count() { # PID CONSOLE
	local deadline=$((SECONDS + TIMEOUT))
	until grep -q "^testvm: count" "$2" 2> /dev/null; do
		kill -0 "$1" 2> /dev/null || return 1
		[ "$SECONDS" -lt "$deadline" ] || return 2
		sleep 0.02
	done
}

# Split a smaps file into the mappings, guest RAM excluded, one line each:
#   M pss rss size category label | header
#   G pss rss size how | header        (the excluded mapping; how: exact or closest)
#   S overhead_pss overhead_rss total_pss total_rss
# (KiB). STACKS lists "SP THREAD" of the threads blocked in a system call,
# so that the anonymous mapping holding a stack pointer is named.
classify() { # SMAPS MEM_MIB BINARY STACKS
	awk -v mem_kib=$(($2 * 1024)) -v bin="$3" -v stacks="$4" '
	function pad(h) { while (length(h) < 16) h = "0" h; return h }
	function base(p) { sub(/.*\//, "", p); return p }
	BEGIN {
		while ((getline line < stacks) > 0) {
			split(line, f, " ")
			nsp++; sp[nsp] = pad(f[1]); spname[nsp] = substr(line, length(f[1]) + 2)
		}
	}
	/^[0-9a-f]+-[0-9a-f]+ / {
		n++
		hdr[n] = $0; perms[n] = $2
		split($1, r, "-"); lo[n] = pad(r[1]); hi[n] = pad(r[2])
		p = ""
		for (i = 6; i <= NF; i++) p = p (p == "" ? "" : " ") $i
		sub(/ \(deleted\)$/, "", p)
		path[n] = p
		next
	}
	/^Size:/ { size[n] = $2 }
	/^Rss:/ { rss[n] = $2 }
	/^Pss:/ { pss[n] = $2 }
	END {
		g = 0
		for (i = 1; i <= n; i++) {
			if (path[i] != "" || perms[i] !~ /^rw.p/ || size[i] < mem_kib) continue
			if (g == 0 || size[i] < size[g]) g = i
		}
		for (i = 1; i <= n; i++) {
			tp += pss[i]; tr += rss[i]
			if (i == g) continue
			op += pss[i]; or += rss[i]
			p = path[i]
			if (p == bin) {
				cat = "binary"
				label = base(p) (perms[i] ~ /x/ ? " text" : perms[i] ~ /w/ ? " data" : " read-only data")
			} else if (p == "" && i > 1 && path[i - 1] == bin && lo[i] == hi[i - 1]) {
				cat = "binary"; label = base(bin) " .bss"
			} else if (p == "" && i > 1 && path[i - 1] ~ /\.so(\.[0-9.]*)?$/ && lo[i] == hi[i - 1]) {
				cat = "shared libraries"; label = base(path[i - 1]) " .bss"
			} else if (p == "[heap]") {
				cat = "heap"; label = "[heap] (brk)"
			} else if (p == "[stack]") {
				cat = "thread stacks"; label = "[stack] (main thread)"
			} else if (p ~ /^\[(vdso|vvar|vvar_vclock|vsyscall)\]$/) {
				cat = "vdso/vvar"; label = p
			} else if (p ~ /^anon_inode:\[io_uring\]/) {
				cat = "io_uring rings"; label = p
			} else if (p ~ /^anon_inode:kvm-vcpu/) {
				cat = "kvm_run"; label = p
			} else if (p ~ /^anon_inode:/) {
				cat = "other"; label = p
			} else if (p ~ /\.so(\.[0-9.]*)?$/) {
				cat = "shared libraries"; label = base(p)
			} else if (p == "") {
				cat = "other anonymous"; label = "anonymous " perms[i]
				for (k = 1; k <= nsp; k++)
					if (sp[k] >= lo[i] && sp[k] < hi[i]) { cat = "thread stacks"; label = "stack of " spname[k] }
				# A stack of a thread running at that moment (or a
				# coroutine): a guard page without access right below.
				if (cat == "other anonymous" && i > 1 && path[i - 1] == "" && perms[i - 1] ~ /^---/ &&
				    hi[i - 1] == lo[i] && size[i - 1] <= 64 && perms[i] ~ /^rw/)
					{ cat = "thread stacks"; label = "stack (guard page below)" }
				# A glibc malloc arena of another thread: 64 MiB aligned,
				# the rest of its 64 MiB reserved without access.
				if (cat == "other anonymous" && lo[i] ~ /[048c]000000$/ && i < n && path[i + 1] == "" &&
				    perms[i + 1] ~ /^---/ && lo[i + 1] == hi[i])
					{ cat = "malloc arenas"; label = "malloc arena of a thread" }
			} else {
				cat = "other files"; label = p
			}
			printf "M %d %d %d %s | %s | %s\n", pss[i], rss[i], size[i], cat, label, hdr[i]
		}
		if (g) printf "G %d %d %d %s | %s\n", pss[g], rss[g], size[g],
			size[g] == mem_kib ? "exact" : "closest", hdr[g]
		if (g) printf "S %d %d %d %d\n", op, or, tp, tr
		else print "S -1 -1 -1 -1"
	}' "$1"
}

# One run: boot, wait for the first count line, read smaps, stop. Appends
# "overhead_pss overhead_rss total_pss total_rss threads" (KiB; -1 when
# the run failed) to RESULTS and keeps the mapping list in RESULTS.maps.
run_once() { # VMM VCPUS MEM_MIB RESULTS RUN
	local vmm=$1 vcpus=$2 mem=$3 results=$4 run=$5 dir=$tmp/run pid bin rc=0 t sc
	rm -rf "$dir"
	mkdir -p "$dir"
	case $vmm in
	ember)
		cat > "$dir/vm.json" <<-EOF
		{"boot-source": {"kernel_image_path": "$KERNEL", "boot_args": "$GUEST_ARGS"},
		 "machine-config": {"vcpu_count": $vcpus, "mem_size_mib": $mem}}
		EOF
		"$EMBER" --no-api --config-file "$dir/vm.json" < /dev/null > "$dir/console" 2> "$dir/stderr" &
		;;
	qemu)
		# -pidfile only so that the command line names $tmp (see scratch_cleanup in lib.sh)
		# when the binary is not the copy there.
		"${QEMU[@]}" -m "$mem" -smp "$vcpus" -kernel "$KERNEL" -append "$GUEST_ARGS" \
			-serial stdio -pidfile "$dir/qemu.pidfile" < /dev/null > "$dir/console" 2> "$dir/stderr" &
		;;
	esac
	pid=$!
	echo "$pid" > "$dir/vmm.pid"
	wait_count "$pid" "$dir/console" || rc=$?
	if [ "$rc" -eq 0 ]; then
		bin=$(readlink "/proc/$pid/exe" 2> /dev/null || true)
		bin=${bin% (deleted)}
		: > "$dir/stacks"
		for t in /proc/"$pid"/task/*; do
			# "nr args... sp pc" while blocked in a system call
			read -r -a sc < "$t/syscall" 2> /dev/null || continue
			[ "${#sc[@]}" -ge 9 ] && echo "${sc[7]#0x} $(cat "$t/comm" 2> /dev/null) (tid ${t##*/})" >> "$dir/stacks"
		done
		ls "/proc/$pid/task" > "$dir/tasks" 2> /dev/null || rc=1
		for t in $(cat "$dir/tasks"); do cat "/proc/$pid/task/$t/comm"; done 2> /dev/null | sort | uniq -c |
			awk '{ $1 = $1 "x"; print }' | paste -sd, > "$dir/names" || true
		cp "/proc/$pid/smaps" "$dir/smaps" 2> /dev/null || rc=1
	fi
	kill -9 "$pid" 2> /dev/null || true
	wait "$pid" 2> /dev/null || true
	rm -f "$dir/vmm.pid"
	case $rc in
	1) failed "$vmm ${vcpus}x$mem: the VMM ended before the guest counted" "$dir/stderr" ;;
	2) failed "$vmm ${vcpus}x$mem: no count line within $TIMEOUT s" "$dir/console" ;;
	esac
	if [ "$rc" -ne 0 ]; then
		echo "-1 -1 -1 -1 -1" >> "$results"
		return
	fi
	classify "$dir/smaps" "$mem" "$bin" "$dir/stacks" > "$dir/maps"
	local s threads
	s=$(grep '^S ' "$dir/maps" | cut -d' ' -f2-)
	threads=$(wc -l < "$dir/tasks")
	{
		echo "== $vmm ${vcpus}x$mem run $run: overhead PSS/RSS, total PSS/RSS (KiB): $s;" \
		     "$threads threads ($(cat "$dir/names"))"
		echo "   excluded as guest RAM: $(grep '^G ' "$dir/maps" | cut -c3- || echo "nothing found")"
		if [ "$run" -eq 1 ]; then
			echo "   non-guest mappings by PSS (pss rss size KiB, category | name | smaps header):"
			grep '^M ' "$dir/maps" | cut -c3- | sort -k1,1nr -k2,2nr | sed 's/^/   /'
		fi
	} >> "$LOG"
	if [ -z "$s" ] || [ "${s%% *}" -lt 0 ]; then
		failed "$vmm ${vcpus}x$mem: no anonymous mapping of at least $mem MiB (guest RAM) found" "$dir/maps"
		echo "-1 -1 -1 -1 -1" >> "$results"
		return
	fi
	echo "$s $threads" >> "$results"
	cp "$dir/maps" "$results.maps"
}

# ---- runs ---------------------------------------------------------------
mkdir -p "$(dirname "$LOG")"
echo "benchmarks/memory.sh $RUNS: CONFIGS=\"$CONFIGS\" $GUEST_ARGS, $(machine_line)" > "$LOG"
for c in $CONFIGS; do
	: > "$tmp/ember-$c"; : > "$tmp/qemu-$c"
	for i in $(seq "$RUNS"); do
		run_once ember "${c%x*}" "${c#*x}" "$tmp/ember-$c" "$i"
		run_once qemu "${c%x*}" "${c#*x}" "$tmp/qemu-$c" "$i"
	done
done

DEVICES=${DEVICES-root drives net all}
DEV_RUNS=${DEV_RUNS:-3}
for set in $DEVICES; do
	: > "$tmp/dev-$set"
	for i in $(seq "$DEV_RUNS"); do
		if devices_vm "$EMBER" "$set" "$tmp/dev"; then
			fc_overhead "$tmp/dev/smaps" 128 >> "$tmp/dev-$set"
			echo "== ember devices $set run $i: overhead RSS/PSS (KiB): $(tail -n 1 "$tmp/dev-$set")" >> "$LOG"
			cp "$tmp/dev/smaps" "$tmp/dev-$set.smaps"
		else
			failed "ember devices $set: the guest did not get ready" "$tmp/dev/err"
			echo "-1 -1" >> "$tmp/dev-$set"
		fi
	done
done

# ---- report -------------------------------------------------------------
kib() { awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }
cell() { # median p90 n
	[ "$3" -gt 0 ] && echo "$(kib "$1") / $(kib "$2")" || echo "-"
}
ratio() { # ember-median ember-n qemu-median qemu-n
	[ "$2" -gt 0 ] && [ "$4" -gt 0 ] && awk -v a="$1" -v b="$3" 'BEGIN { printf "%.3f", a / b }' || echo "-"
}
row() { # config label column
	read -r em ep en <<< "$(stats "$tmp/ember-$1" "$3")"
	read -r qm qp qn <<< "$(stats "$tmp/qemu-$1" "$3")"
	echo "| ${1%x*} × ${1#*x} MiB | $2 | $(cell "$em" "$ep" "$en") | $(cell "$qm" "$qp" "$qn") |" \
	     "$(ratio "$em" "$en" "$qm" "$qn") | $en / $qn |"
}
# Where the non-guest memory goes, by category: PSS / RSS KiB (mappings)
# of the last run, ember's largest first.
breakdown() { # config
	local e=$tmp/ember-$1.maps q=$tmp/qemu-$1.maps
	[ -f "$e" ] || e=/dev/null
	[ -f "$q" ] || q=/dev/null
	awk -v e="$e" '
		/^M / { f = FILENAME == e ? 1 : 2
		        split($0, a, " \\| "); split(a[1], w, " ")
		        c = substr(a[1], length(w[1] w[2] w[3] w[4]) + 5)
		        if (!(c in seen)) { seen[c] = 1; order[++k] = c }
		        p[c, f] += w[2]; r[c, f] += w[3]; n[c, f]++ }
		END { for (i = 1; i <= k; i++) { c = order[i]
		        printf "%d\t%d\t| %s | %d / %d (%d) | %d / %d (%d) |\n", p[c, 1], p[c, 2], c,
		               p[c, 1], r[c, 1], n[c, 1], p[c, 2], r[c, 2], n[c, 2] } }' "$e" "$q" |
		sort -t"$(printf '\t')" -k1,1nr -k2,2nr | cut -f3-
}

# One line per configuration: overhead PSS and RSS medians, ember then QEMU.
dat_rows() {
	local c v m mp mr rp n line
	for c in $CONFIGS; do
		line=$c
		for v in ember qemu; do
			read -r m mp n <<< "$(stats "$tmp/$v-$c" 1)"
			read -r mr rp n <<< "$(stats "$tmp/$v-$c" 2)"
			[ "$n" -gt 0 ] || { m=-1; mr=-1; }
			line+=" $(kib "$m") $(kib "$mr")"
		done
		echo "$line"
	done
}

cmd="benchmarks/memory.sh $RUNS"
[ "$CONFIGS" = "$DEFAULT_CONFIGS" ] || cmd="CONFIGS=\"$CONFIGS\" $cmd"
[ "$FILL" = 1 ] || cmd="FILL=$FILL $cmd"
[ "$COPY" = 1 ] || cmd="COPY=$COPY $cmd"
first=${CONFIGS%% *}
headline_init memory
for c in $CONFIGS; do
	headline "VMM memory overhead PSS, ${c%x*} vCPU × ${c#*x} MiB" KiB "$tmp/ember-$c" 1 "$tmp/qemu-$c" 1
done
headline "VMM memory overhead RSS, ${first%x*} vCPU × ${first#*x} MiB" KiB "$tmp/ember-$first" 2 "$tmp/qemu-$first" 2
[ -f "$tmp/dev-all" ] && headline "VMM memory overhead RSS, 3 drives + net + vsock (Linux guest)" KiB "$tmp/dev-all" 1
{
	echo "# Memory benchmark"
	echo
	echo "\`$cmd\` $(machine_line)"
	echo "The VMM's own memory: KiB of Pss and Rss summed over every mapping of the VMM process" \
	     "in /proc/PID/smaps except guest RAM, read once the test guest (\`$GUEST_ARGS\`)" \
	     "printed its first count line (set up and running). ember: \`ember --no-api --config-file\`;" \
	     "QEMU: \`-M microvm\` with \`-kernel -append -m -smp -serial stdio\`. Pss counts a shared" \
	     "page in part (shared libraries), Rss in full. Totals include guest RAM, for reference;" \
	     "threads include the kvm-nx-lpage-recovery thread KVM adds to each VM's process." \
	     "$RUNS runs per VMM and configuration, alternately." \
	     "$( [ "$COPY" = 1 ] && echo "Each VMM ran from a fresh copy of its binary, so no page of the binary was shared with another process (other ember or QEMU processes on the host would lower the PSS); its libraries were shared as usual." )"
	echo
	echo "| vCPUs × memory | metric | ember median / p90 | QEMU microvm median / p90 | ratio ember/QEMU | runs ember / QEMU |"
	echo "|---|---|---|---|---|---|"
	for c in $CONFIGS; do
		row "$c" "overhead PSS (KiB)" 1
		row "$c" "overhead RSS (KiB)" 2
		row "$c" "total PSS (KiB)" 3
		row "$c" "total RSS (KiB)" 4
		row "$c" "threads" 5
	done
	echo
	echo "Excluded as guest RAM (last run; every run's choice is in \`$LOG\`):"
	for c in $CONFIGS; do
		for v in ember qemu; do
			[ -f "$tmp/$v-$c.maps" ] || continue
			grep '^G ' "$tmp/$v-$c.maps" | awk -v c="$c" -v v="$v" '{
				split($0, a, " \\| "); split(a[2], h, " ")
				printf "%s %s: %s %s, %d KiB (%s match), Rss %d KiB\n", v, c, h[1], h[2], $4, $5, $3 }'
		done
	done | sed 's/^/- /'
	echo
	echo "Where the non-guest memory goes at ${first%x*} vCPU × ${first#*x} MiB (last run): PSS / RSS KiB (mappings)."
	echo
	echo "| category | ember | QEMU microvm |"
	echo "|---|---|---|"
	breakdown "$first"
	echo
	if [ -f "$tmp/ember-$first.maps" ]; then
		echo "ember's largest non-guest mappings there, by PSS (KiB):"
		echo
		echo "| PSS | RSS | size | mapping |"
		echo "|---|---|---|---|"
		grep '^M ' "$tmp/ember-$first.maps" | cut -c3- | sort -k1,1nr -k2,2nr | head -n 12 |
			awk '{ split($0, a, " \\| "); printf "| %d | %d | %d | %s |\n", $1, $2, $3, a[2] }'
		echo
	fi
	if [ -n "$DEVICES" ]; then
		echo "## With devices"
		echo
		echo "ember alone, $DEV_RUNS runs each: a Linux guest (1 vCPU × 128 MiB; \`build/vmlinux\`, root drive" \
		     "a copy of \`build/rootfs.ext4\`) that reads every drive (16 direct 64 KiB reads at once on each)," \
		     "pings the host over a tap and sends a line over vsock; then Rss and Pss of every mapping smaller" \
		     "than guest RAM, as Firecracker's tests count it (its bound: 5 MiB RSS; ember's: 3 MiB RSS," \
		     "asserted by tests/integration/test_memory.sh). Each set adds to the one before; \"added\" is the" \
		     "difference of the medians."
		echo
		echo "| devices | RSS median / p90 KiB | PSS median / p90 KiB | RSS added | runs |"
		echo "|---|---|---|---|---|"
		prev=
		for set in $DEVICES; do
			read -r rm rp rn <<< "$(stats "$tmp/dev-$set" 1)"
			read -r pm pp pn <<< "$(stats "$tmp/dev-$set" 2)"
			case $set in
			root) label="1 drive (root)" ;; drives) label="3 drives" ;;
			net) label="3 drives + net" ;; all) label="3 drives + net + vsock" ;;
			esac
			added=-
			[ -n "$prev" ] && [ "$rn" -gt 0 ] && added=$(awk -v a="$rm" -v b="$prev" 'BEGIN { printf "%+.0f", a - b }')
			[ "$rn" -gt 0 ] && prev=$rm
			echo "| $label | $(cell "$rm" "$rp" "$rn") | $(cell "$pm" "$pp" "$pn") | $added | $rn |"
		done
		echo
	fi
	failures_line "No run failed."
	echo
	echo "The whole run took ${SECONDS} s."
} > "$OUT"
mkdir -p "$(dirname "$DAT")"
{
	echo "# config ember_pss_kib ember_rss_kib qemu_pss_kib qemu_rss_kib (overhead medians)"
	dat_rows
} > "$DAT"
cat "$OUT"
[ ! -s "$tmp/failures" ]
