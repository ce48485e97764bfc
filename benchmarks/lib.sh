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
