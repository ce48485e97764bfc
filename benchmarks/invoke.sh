#!/usr/bin/env bash
# Invocation benchmark: build/ember-fn end to end, from POST
# /functions/NAME/invoke to its answer, on the Linux guest (build/vmlinux,
# busybox rootfs, ember-agent), for each way of getting a guest to run
# the request in:
#
#   restore  a clone restored from the template per invocation (pool_size 0)
#   pooled   a pre-restored paused clone from the pool (pool_size 16),
#            resumed per invocation; each round starts with the pool full
#   reuse    a warm clone kept running between invocations
#            ("clone_policy": "reuse"; said so when ember-fn refuses the key)
#   fresh    a VM booted per invocation: ember started with the template's
#            kernel, rootfs and agent command line, timed from its start to
#            the agent's answer (agent-client over the vsock socket);
#            concurrency 1, FRESH_RUNS times
#
# Two handlers, one function (the body's first line picks): "echo" sends
# the payload back (cat); "mib" reads a 1 MiB file the function's init
# wrote into the guest's /tmp (tmpfs, so in the template's memory: the
# clone reads it from the restored memory) and answers its size.
#
# Each (path, handler, concurrency N) cell runs rounds of N invocations
# sent at once (curl), at least MIN_SAMPLES invocations and ROUNDS rounds;
# latency is curl's, throughput the invocations over the rounds' time
# (first sent to last answered). ember-fn's X-Ember-Fn-* headers say
# where each invocation's time went. Every answer is checked.
#
# The cold path's peer: QEMU cannot run this Linux guest here (a KVM
# internal error on cmpxchg16b), so benchmarks/snapshot.sh runs in the
# same run on the test guest (firmware/testvm, 128 MiB): ember's snapshot
# restore against QEMU microvm's migrate-incoming, to the guest's first
# console line after the restore; its ratio stands next to ember-fn's.
#
# usage: benchmarks/invoke.sh [ROUNDS] [FRESH_RUNS]   (defaults 1 and 2)
#   CONCURRENCY="1 4 16" MODES="restore pooled reuse" HANDLERS="echo mib"
#   MIN_SAMPLES=6 PEER_RUNS=10
# Writes benchmarks/results/invoke.md (and invoke.tsv, data/invoke.dat)
# and prints it. Exits 1 if any invocation failed (said so on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/lib.sh
ROUNDS=${1:-1}
FRESH_RUNS=${2:-2}
CONCURRENCY=${CONCURRENCY:-1 4 16}
MODES=${MODES:-restore pooled reuse}
HANDLERS=${HANDLERS:-echo mib}
MIN_SAMPLES=${MIN_SAMPLES:-6}
PEER_RUNS=${PEER_RUNS:-10}
BUILD=${BUILD:-build}
EMBER=${EMBER:-$BUILD/ember}
FN=${FN:-$BUILD/ember-fn}
AGENT_CLIENT=${AGENT_CLIENT:-$BUILD/obj/agent-client}
OUT=${OUT:-benchmarks/results/invoke.md}
TIMEOUT=${TIMEOUT:-900} # seconds, for a template build, a boot, one invocation
POOL=16                 # ember-fn's largest pool, >= the largest N

for f in "$EMBER" "$FN" "$AGENT_CLIENT" "$BUILD/vmlinux" "$BUILD/rootfs.ext4"; do
	[ -e "$f" ] || { echo "invoke.sh: $f missing (make all $AGENT_CLIENT)" >&2; exit 1; }
done
scratch_dir invbench # $tmp: short, the clones' sockets live under it

HANDLER='read -r op; case $op in echo) cat;; mib) cat /tmp/mib | wc -c;; esac'
# The file is numbers, not /dev/urandom: urandom's generator runs in the
# guest kernel, which this host emulates (a minute or more for 1 MiB);
# seq runs in user mode. Not zeros either, so every page is in the memory file.
INIT='seq 200000 | head -c 1048576 > /tmp/mib'
PAYLOAD=ember-invoke-benchmark-payload-0123456789abcdef # the echo's body after its first line
cp --sparse=always "$BUILD/rootfs.ext4" "$tmp/root.ext4"

# ---- ember-fn ---------------------------------------------------------------
"$FN" --api-sock "$tmp/fn.sock" --state-dir "$tmp/s" --ember "$EMBER" > "$tmp/fn.log" 2>&1 &
echo $! > "$tmp/fn.pid"
disown # ended by scratch_cleanup, without a word from bash
for i in $(seq 100); do [ -S "$tmp/fn.sock" ] && break; sleep 0.1; done
[ -S "$tmp/fn.sock" ] || { echo "invoke.sh: ember-fn did not start: $(cat "$tmp/fn.log")" >&2; exit 1; }

fn_call() { # METHOD PATH [BODY] -> status on stdout, body in $tmp/reply
	curl -s -m "$TIMEOUT" --unix-socket "$tmp/fn.sock" -X "$1" "http://localhost$2" \
		${3+--data-binary "$3"} -o "$tmp/reply" -w '%{http_code}' || echo 000
}

body_file() { # HANDLER -> the file holding that handler's request body
	[ -f "$tmp/body.$1" ] || { [ "$1" = echo ] && printf 'echo\n%s' "$PAYLOAD" || printf '%s\n' "$1"; } > "$tmp/body.$1"
	echo "$tmp/body.$1"
}

expected() { # HANDLER -> the answer it must give
	[ "$1" = echo ] && echo "$PAYLOAD" || echo 1048576
}

# Register the function for MODE: 0 registered, 1 failed, 2 ember-fn does
# not know the mode's key.
register() { # MODE NAME
	local extra="" code
	case $1 in
	pooled) extra=", \"pool_size\": $POOL" ;;
	reuse) extra=', "clone_policy": "reuse"' ;;
	esac
	code=$(fn_call PUT "/functions/$2" "{\"kernel_image_path\": \"$(realpath "$BUILD/vmlinux")\",
		\"rootfs_path\": \"$tmp/root.ext4\", \"handler\": \"$HANDLER\", \"init\": \"$INIT\",
		\"timeout_ms\": 600000, \"max_concurrency\": $POOL, \"max_queued\": $POOL,
		\"boot_timeout_s\": $TIMEOUT$extra}")
	[ "$code" = 204 ] && return 0
	[ "$code" = 400 ] && grep -q 'unknown field' "$tmp/reply" && return 2
	run_failed invoke.sh "registering $1 (HTTP $code: $(cat "$tmp/reply"))" "$tmp/fn.log"
	return 1
}

pool_full() { # NAME: wait until its pool holds POOL clones
	local i
	for i in $(seq $((TIMEOUT * 5))); do
		[ "$(curl -s --unix-socket "$tmp/fn.sock" "http://localhost/functions/$1" | jq .pool)" = $POOL ] && return 0
		sleep 0.2
	done
	return 1
}

# One invocation; appends its line to $tmp/samples: mode handler N
# client_ms load resume connect agent handler destroy (ember-fn's split,
# ms) pooled http_code ok.
invoke_once() { # MODE NAME HANDLER N ID
	local d=$tmp/inv.$5 w
	w=$(curl -s -m "$TIMEOUT" --unix-socket "$tmp/fn.sock" -X POST "http://localhost/functions/$2/invoke" \
		--data-binary @"$(body_file "$3")" -D "$d.h" -o "$d.o" -w '%{http_code} %{time_total}') || w="000 -1"
	local ok=0
	[ -f "$d.h" ] || : > "$d.h"
	[ "${w%% *}" = 200 ] && [ "$(cat "$d.o")" = "$(expected "$3")" ] && ok=1
	awk -v m="$1" -v h="$3" -v n="$4" -v w="$w" -v ok="$ok" '
		BEGIN { FS = ": *" }
		{ sub(/\r$/, ""); v[tolower($1)] = $2 }
		function ms(k) { return (k in v) ? sprintf("%.3f", v[k] / 1000) : -1 }
		END { split(w, c, " ")
		      printf "%s %s %d %.3f %s %s %s %s %s %s %s %s %d\n", m, h, n, c[2] * 1000,
		             ms("x-ember-fn-load-us"), ms("x-ember-fn-resume-us"), ms("x-ember-fn-connect-us"),
		             ms("x-ember-fn-agent-us"), ms("x-ember-fn-handler-us"), ms("x-ember-fn-destroy-us"),
		             ("x-ember-fn-pooled" in v) ? v["x-ember-fn-pooled"] : -1, c[1], ok }' "$d.h" 2> /dev/null >> "$tmp/samples" ||
		echo "$1 $3 $4 -1 -1 -1 -1 -1 -1 -1 -1 ${w%% *} 0" >> "$tmp/samples"
	[ $ok = 1 ] || run_failed invoke.sh "$1 $3 N=$4: HTTP ${w%% *}, answer $(head -c 200 "$d.o" 2> /dev/null)" "$tmp/fn.log"
	[ $ok = 0 ] || grep -qi '^X-Ember-Fn-Agent-Us:' "$d.h" ||
		run_failed invoke.sh "ember-fn's answer does not say where the time went (no X-Ember-Fn-Agent-Us)" "$d.h"
	rm -f "$d.h" "$d.o"
}

# N invocations at once; appends "mode handler N wall_ms" to $tmp/rounds.
round() { # MODE NAME HANDLER N
	local i t0 pids=()
	t0=$(date +%s%N)
	for i in $(seq "$4"); do
		invoke_once "$@" "$i" &
		pids+=($!)
	done
	wait "${pids[@]}"
	echo "$1 $3 $4 $((($(date +%s%N) - t0) / 1000)) " | awk '{ printf "%s %s %s %.3f\n", $1, $2, $3, $4 / 1000 }' >> "$tmp/rounds"
}

: > "$tmp/samples"; : > "$tmp/rounds"; : > "$tmp/unsupported"
# Every path's function registered first; then their rounds alternate
# (A/B/C/A/B/C), so a change in the host's load falls on all of them.
modes=""
for mode in $MODES; do
	rc=0
	register "$mode" "bench-$mode" || rc=$?
	[ $rc = 2 ] && echo "$mode" >> "$tmp/unsupported"
	[ $rc = 0 ] && modes+=" $mode"
done
# Before each round the pool is full again: its refill (restores in the
# background) then never runs during another path's round.
settled() {
	case " $modes " in *" pooled "*) pool_full bench-pooled ;; esac
}
for h in $HANDLERS; do
	for n in $CONCURRENCY; do
		rounds=$(( (MIN_SAMPLES + n - 1) / n ))
		[ "$rounds" -lt "$ROUNDS" ] && rounds=$ROUNDS
		# A warm clone per concurrent invocation before the measured rounds.
		case " $modes " in *" reuse "*)
			cp "$tmp/samples" "$tmp/samples.keep"; cp "$tmp/rounds" "$tmp/rounds.keep"
			round reuse bench-reuse "$h" "$n"
			mv "$tmp/samples.keep" "$tmp/samples"; mv "$tmp/rounds.keep" "$tmp/rounds" ;;
		esac
		for r in $(seq "$rounds"); do
			for mode in $modes; do
				settled || { run_failed invoke.sh "the pool did not fill" "$tmp/fn.log"; break 4; }
				round "$mode" "bench-$mode" "$h" "$n"
			done
		done
	done
done
for mode in $modes; do fn_call DELETE "/functions/bench-$mode" > /dev/null; done

# ---- a VM booted per invocation ---------------------------------------------
# The template's command line (ember-fn's build_template) and devices.
fresh_once() {
	local d=$tmp/fresh t0 t1 tr=-1 i
	rm -rf "$d" && mkdir -p "$d"
	local args="console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"ember-agent --init '$INIT' 1024 '$HANDLER'\""
	jq -n --arg k "$(realpath "$BUILD/vmlinux")" --arg a "$args" --arg r "$tmp/root.ext4" --arg v "$d/v.sock" \
		'{"boot-source": {kernel_image_path: $k, boot_args: $a},
		  "machine-config": {vcpu_count: 1, mem_size_mib: 128},
		  drives: [{drive_id: "rootfs", path_on_host: $r, is_root_device: true, is_read_only: true}],
		  vsock: {guest_cid: 3, uds_path: $v}}' > "$d/vm.json"
	t0=$(date +%s%N)
	"$EMBER" --no-api --config-file "$d/vm.json" < /dev/null > "$d/out" 2>&1 &
	echo $! > "$d/vmm.pid"
	for i in $(seq $((TIMEOUT * 20))); do
		grep -q 'ember-agent: ready' "$d/out" && { tr=$(date +%s%N); break; }
		kill -0 "$(cat "$d/vmm.pid")" 2> /dev/null || break
		sleep 0.05
	done
	local ok=0
	if [ "$tr" != -1 ] && "$AGENT_CLIENT" "$d/v.sock" 1024 120000 < "$(body_file echo)" > "$d/got" 2> "$d/meta" &&
		[ "$(cat "$d/got")" = "$PAYLOAD" ]; then
		ok=1
	fi
	t1=$(date +%s%N)
	kill -9 "$(cat "$d/vmm.pid")" 2> /dev/null; wait "$(cat "$d/vmm.pid")" 2> /dev/null || true
	# mode handler N client_ms; the split: boot to ready as "load", then the agent's round trip
	local hus
	hus=$(sed -n 's/.*duration_us=\([0-9]*\).*/\1/p' "$d/meta" 2> /dev/null | head -1)
	if [ $ok = 1 ]; then
		awk -v a="$t0" -v r="$tr" -v b="$t1" -v h="${hus:-0}" 'BEGIN {
			printf "fresh echo 1 %.3f %.3f -1 -1 %.3f %.3f -1 0 200 1\n", (b - a) / 1e6, (r - a) / 1e6, (b - r) / 1e6, h / 1000 }' >> "$tmp/samples"
	else
		echo "fresh echo 1 -1 -1 -1 -1 -1 -1 -1 0 000 0" >> "$tmp/samples"
		run_failed invoke.sh "a fresh boot's invocation: $(cat "$d/meta" 2> /dev/null)" "$d/out"
	fi
}
for i in $(seq "$FRESH_RUNS"); do fresh_once; done

# ---- the cold path's peer: QEMU microvm, the test guest -----------------------
mkdir -p "$tmp/peer"
OUT=$tmp/peer/snapshot.md SIZES=128 FILL=1 CONCURRENCY="" EMBER=$EMBER BUILD=$BUILD \
	benchmarks/snapshot.sh "$PEER_RUNS" > "$tmp/peer/log" 2>&1 ||
	run_failed invoke.sh "benchmarks/snapshot.sh (the QEMU peer)" "$tmp/peer/log"
# Its table's row for METRIC: "file_median file_p90 qemu_median qemu_p90 runs_file runs_qemu"
peer_row() { # METRIC (running, progress)
	awk -F'|' -v m="$1" '$2 == " 128 MiB " && $3 == " " m " " {
		split($4, f, " / "); split($6, q, " / "); split($9, n, " / ")
		if (n[1] + 0 == 0) { f[1] = "-"; f[2] = "-" }
		if (n[3] + 0 == 0) { q[1] = "-"; q[2] = "-" }
		gsub(/ /, "", f[1]); gsub(/ /, "", f[2]); gsub(/ /, "", q[1]); gsub(/ /, "", q[2])
		printf "%s %s %s %s %d %d\n", f[1], f[2], q[1], q[2], n[1], n[3]; found = 1 }
		END { if (!found) print "- - - - 0 0" }' "$tmp/peer/snapshot.md" 2> /dev/null || echo "- - - - 0 0"
}

# ---- results ------------------------------------------------------------------
# percentiles over the ok invocations of a cell (column 4: client ms, or another)
cell_values() { # MODE HANDLER N COLUMN -> the values, one a line
	awk -v m="$1" -v h="$2" -v n="$3" -v c="$4" '$1 == m && $2 == h && $3 == n && $13 == 1 && $c >= 0 { print $c }' "$tmp/samples"
}
cell_pct() { # MODE HANDLER N COLUMN -> "p50 p90 p99 count"
	cell_values "$@" > "$tmp/cell"
	percentiles "$tmp/cell" 1
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }

mkdir -p "$(dirname "$OUT")/data"
echo "# path handler N client_ms load resume connect agent handler destroy (ms) pooled http ok" \
	> "$(dirname "$OUT")/data/invoke.dat"
cat "$tmp/samples" >> "$(dirname "$OUT")/data/invoke.dat"
label() {
	case $1 in
	restore) echo "restored per invocation" ;;
	pooled) echo "pooled (pre-restored, paused)" ;;
	reuse) echo "warm clone reused" ;;
	fresh) echo "fresh VM booted per invocation" ;;
	esac
}
read -r pfm pfp pqm pqp pfn pqn <<< "$(peer_row progress)"
read -r rfm rfp rqm rqp rfn rqn <<< "$(peer_row running)"
read -r xfm xfp xqm xqp xfn xqn <<< "$(peer_row "exec → running")"

headline_init invoke
{
	echo "# Invocation benchmark"
	echo
	echo "\`MIN_SAMPLES=$MIN_SAMPLES benchmarks/invoke.sh $ROUNDS $FRESH_RUNS\` $(machine_line)"
	echo "ember-fn (\`build/ember-fn\`) on the Linux guest (\`build/vmlinux\`, 128 MiB, 1 vCPU, the busybox rootfs" \
	     "read-only, \`ember-agent\` running the handler \`$HANDLER\` with /bin/sh per invocation; the function's init" \
	     "\`$INIT\`). **echo** sends a ${#PAYLOAD}-byte payload back; **1 MiB read** reads a 1 MiB file that init" \
	     "wrote into the guest's /tmp (tmpfs: the clone reads it from the template's restored memory)." \
	     "N invocations are sent at once (curl on ember-fn's socket), in rounds (at least $MIN_SAMPLES invocations and" \
	     "$ROUNDS rounds per row); latency is the client's, from sending the request to the whole answer;" \
	     "throughput is the invocations over the rounds' time (first sent to last answered). Every answer is checked."
	echo "The guest kernel runs emulated on this host (kvm_pvm, see \"Software-virtualized KVM hosts\"):" \
	     "a shell handler alone takes about a second in the guest, so these are this host's numbers, not a" \
	     "fast machine's."
	echo
	echo "| path | handler | N at once | p50 ms | p90 ms | p99 ms | throughput /s | invocations (failed) |"
	echo "|---|---|---|---|---|---|---|---|"
	for mode in $MODES fresh; do
		if grep -qx "$mode" "$tmp/unsupported"; then
			echo "| $(label "$mode") | - | - | not supported by this ember-fn | - | - | - | - |"
			continue
		fi
		hs=$HANDLERS ns=$CONCURRENCY
		[ "$mode" = fresh ] && { hs=echo ns=1; [ "$FRESH_RUNS" -gt 0 ] || continue; }
		for h in $hs; do
			for n in $ns; do
				read -r p50 p90 p99 cnt <<< "$(cell_pct "$mode" "$h" "$n" 4)"
				bad=$(awk -v m="$mode" -v h="$h" -v n="$n" '$1 == m && $2 == h && $3 == n && $13 != 1' "$tmp/samples" | wc -l)
				if [ "$mode" = fresh ]; then
					tput=$(awk -v t="$p50" 'BEGIN { if (t + 0 > 0) printf "%.3f", 1000 / t; else print "-" }')
				else
					tput=$(awk -v m="$mode" -v h="$h" -v n="$n" -v ok="$cnt" '$1 == m && $2 == h && $3 == n { s += $4 }
						END { if (s > 0 && ok > 0) printf(ok / (s / 1000) < 10 ? "%.2f" : "%.1f", ok / (s / 1000)); else print "-" }' "$tmp/rounds")
				fi
				hl=$([ "$h" = echo ] && echo echo || echo "1 MiB read")
				echo "| $(label "$mode") | $hl | $n | $p50 | $p90 | $p99 | $tput | $cnt ($bad) |"
				cell_values "$mode" "$h" "$n" 4 > "$tmp/cell"
				[ -s "$tmp/cell" ] && headline "ember-fn invoke, $(label "$mode"), $hl, N=$n" ms "$tmp/cell" 1
			done
		done
	done
	echo
	echo "Where the time goes, from ember-fn's own clock (its \`X-Ember-Fn-*-Us\` headers), median ms per invocation:" \
	     "**load** starting the clone's ember and loading the template snapshot into it, resumed (restored path);" \
	     "**resume** resuming a pooled paused clone; **connect** the vsock connection to the clone's agent up to its" \
	     "READY frame (the guest's vsock driver takes in the transport reset first); **agent** the INVOKE-to-RESULT" \
	     "round trip, of it **handler** the handler process in the guest and **vsock** the rest; **destroy** killing" \
	     "the clone; **other** the client's latency minus all of these (HTTP, ember-fn). For the fresh boot, load is" \
	     "ember's start to the agent's \"ready\" on the console and agent the rest up to the answer."
	echo
	echo "| path | handler | N | client | load | resume | connect | agent | handler | vsock | destroy | other |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
	for mode in $MODES fresh; do
		grep -qx "$mode" "$tmp/unsupported" && continue
		hs=$HANDLERS ns=$CONCURRENCY
		[ "$mode" = fresh ] && { hs=echo ns=1; }
		for h in $hs; do
			for n in $ns; do
				cell_values "$mode" "$h" "$n" 4 | grep -q . || continue
				awk -v m="$mode" -v h="$h" -v n="$n" '$1 == m && $2 == h && $3 == n && $13 == 1' "$tmp/samples" |
					awk -v label="| $(label "$mode") | $([ "$h" = echo ] && echo echo || echo "1 MiB read") | $n |" '
					function med(col,   i, j, k, t, a) {
						k = 0
						for (i = 1; i <= NR; i++) if (x[i, col] >= 0) a[++k] = x[i, col]
						if (k == 0) return "-"
						for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
						t = (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
						return t >= 100 ? sprintf("%.0f", t) : t >= 10 ? sprintf("%.1f", t) : sprintf("%.2f", t)
					}
					{ for (c = 4; c <= 10; c++) x[NR, c] = $c
					  # vsock: the round trip minus the handler; other: the client minus every step
					  x[NR, 14] = ($8 >= 0 && $9 >= 0) ? $8 - $9 : -1
					  o = $4; for (c = 5; c <= 10; c++) if (c != 9 && $c > 0) o -= $c
					  x[NR, 15] = o }
					END { printf "%s %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", label, med(4), med(5), med(6),
					      med(7), med(8), med(9), med(14), med(10), med(15) }' | sed 's/| -1\b/| -/g'
			done
		done
	done
	echo
	echo "### The cold path next to QEMU"
	echo
	echo "QEMU cannot run this Linux guest on this host (a KVM internal error on cmpxchg16b, see the boot" \
	     "benchmark), so its cold path is measured on the test guest (\`firmware/testvm\`, 128 MiB) by" \
	     "\`benchmarks/snapshot.sh $PEER_RUNS\` (SIZES=128 FILL=1), run by this script in the same run: ember" \
	     "(PUT /snapshot/load, the memory file mapped) against QEMU \`-M microvm\` (migrate-incoming from a file)," \
	     "from the VMM's exec or from the restore request to the VM running, and to the guest's first console" \
	     "line after the restore (its next line comes after a fixed amount of guest work, the same under both)." \
	     "ratio = ember / QEMU."
	echo
	echo "| test guest restore | ember median / p90 ms | QEMU median / p90 ms | ratio ember/QEMU | runs ember / QEMU |"
	echo "|---|---|---|---|---|"
	echo "| VMM exec → running (a new VMM per restore, as ember-fn's load) | $xfm / $xfp | $xqm / $xqp | $(ratio "$xfm" "$xqm") | $xfn / $xqn |"
	echo "| restore request → VMM says running | $rfm / $rfp | $rqm / $rqp | $(ratio "$rfm" "$rqm") | $rfn / $rqn |"
	echo "| restore request → first console line (first sign of life) | $pfm / $pfp | $pqm / $pqp | $(ratio "$pfm" "$pqm") | $pfn / $pqn |"
	echo
	read -r lm _ _ ln <<< "$(cell_pct restore echo "${CONCURRENCY%% *}" 5)"
	read -r em _ _ en <<< "$(cell_pct restore echo "${CONCURRENCY%% *}" 4)"
	echo "ember-fn's own cold path on the Linux guest, N=${CONCURRENCY%% *}, echo: the clone's load (ember started," \
	     "snapshot loaded, resumed) median $lm ms, the whole invocation $em ms (over $en invocations)."
	echo
	echo "Published anchors, measured on other hardware with other guests (not a same-machine comparison):" \
	     "vHive/REAP restore-and-answer 232 ms vanilla Firecracker snapshots, 60 ms with working-set prefetch," \
	     "1 ms warm; E2B advertises ~150 ms to start a sandbox."
	echo
	failures_line "No invocation failed; every answer was right."
	echo
	echo "The whole run took ${SECONDS} s."
} > "$OUT"
# The peer rows: the parsed medians (snapshot.sh keeps no samples of its own here).
for m in "exec → running" "running" "progress"; do
	read -r fm fp qm qp fn qn <<< "$(peer_row "$m")"
	case $m in
	running) what="restore request → running" ;;
	progress) what="restore request → first console line" ;;
	*) what=$m ;;
	esac
	printf "%s\tms\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "cold path peer, test guest 128 MiB: $what" \
		"$fm" "$fp" "$qm" "$qp" "$(ratio "$fm" "$qm")" "$fn" "$qn" >> "$HEADLINES"
done
cat "$OUT"
[ ! -s "$tmp/failures" ]
