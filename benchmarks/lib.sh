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
