# Shared by the benchmark scripts (sourced).

# The QEMU peer: the microvm machine as it runs on this host (see README).
QEMU_MICROVM=(qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=off,acpi=off -enable-kvm
              -cpu host,-arch-capabilities -nodefaults -no-user-config -nographic -no-reboot)

# stats FILE COLUMN -> "median p90 n" over that column's values >= 0
# (-1 marks a run that never got there).
stats() {
	awk -v c="$2" '$c >= 0 {print $c}' "$1" | sort -n | awk '
		{ v[NR] = $1 }
		END { if (NR == 0) { print "- - 0"; exit }
		      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		      p = v[int(NR * 0.9 + 0.999)]; if (p == "") p = v[NR]
		      printf "%.1f %.1f %d\n", m, p, NR }'
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
