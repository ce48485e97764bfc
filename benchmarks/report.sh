#!/usr/bin/env bash
# Gathers the headline rows every benchmark wrote (NAME.tsv) into one
# table, DIR/latest.md, and draws the plots (DIR/*.png, gnuplot) from the
# raw data the benchmarks kept (DIR/data/*.dat).
#
# usage: benchmarks/report.sh [DIR]   (default benchmarks/results)
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/lib.sh
DIR=${1:-benchmarks/results}
OUT=$DIR/latest.md
ORDER="span api boot density snapshot memory clones io jailer invoke migrate"
# What each benchmark measured, and its command in `make bench`.
declare -A TITLE=(
	[span]="benchmarks/span.sh" [api]="benchmarks/api.sh" [boot]="benchmarks/boot.sh"
	[density]="benchmarks/density.sh" [snapshot]="benchmarks/snapshot.sh" [clones]="benchmarks/clones.sh"
	[memory]="benchmarks/memory.sh" [io]="benchmarks/io.sh" [jailer]="benchmarks/jailer.sh"
	[invoke]="benchmarks/invoke.sh" [migrate]="benchmarks/migrate.sh"
)

missing=()
{
	echo "# ember benchmarks: the headline numbers"
	echo
	echo "\`make bench\` $(machine_line)"
	echo "Peer: QEMU's \`-M microvm\` from Debian, run alternately with ember (A/B/A/B) in the same run,"
	echo "on the same guest. Lower is better for every row; ratio = ember median / QEMU median."
	echo "Each benchmark's own page (linked) says how it measures and has the full table."
	echo
	echo "| metric | unit | ember median | ember p90 | QEMU median | QEMU p90 | ratio | runs ember / QEMU | from |"
	echo "|---|---|---|---|---|---|---|---|---|"
	for name in $ORDER; do
		if [ ! -s "$DIR/$name.tsv" ]; then
			missing+=("$name")
			continue
		fi
		while IFS=$'\t' read -r metric unit em ep qm qp ratio en qn; do
			[ "$qn" = 0 ] && { qm="-"; qp="-"; }
			echo "| $metric | $unit | $em | $ep | $qm | $qp | $ratio | $en / $qn | [${TITLE[$name]}]($name.md) |"
		done < "$DIR/$name.tsv"
	done
	echo
	if [ ${#missing[@]} -gt 0 ]; then
		echo "Not measured in this run: ${missing[*]}."
		echo
	fi
} > "$OUT"

# ---- plots -----------------------------------------------------------------
# Each plot is drawn when its data is there; a missing one is said, not fatal.
plot() { # NAME needed-data-files... (gnuplot script on stdin)
	local name=$1 f
	shift
	rm -f "$DIR/$name.png"
	for f in "$@"; do
		if [ ! -s "$DIR/data/$f" ]; then
			echo "report.sh: no $name.png: $DIR/data/$f missing" >&2
			cat > /dev/null
			return 0
		fi
	done
	gnuplot -e "data='$DIR/data/'; out='$DIR/$name.png'" /dev/stdin
}

# Boot to init, test guest under both VMMs and Linux under ember: every run
# as a point, sorted (an empirical distribution).
plot boot-distribution boot-testvm-ember.dat boot-testvm-qemu.dat <<'GP'
set terminal pngcairo size 900,420 font ",10"
set output out
set multiplot layout 1,2 title "Boot: start → init marker, every run (sorted)"
set xlabel "fraction of runs"
set ylabel "ms"
set key bottom right
set grid
set title "test guest (console marker)"
plot "< awk '$1 >= 0 {print $1}' ".data."boot-testvm-ember.dat | sort -n | awk '{v[NR]=$1} END {for (i = 1; i <= NR; i++) print i / NR, v[i]}'" \
       with linespoints pt 7 ps 0.6 title "ember", \
     "< awk '$1 >= 0 {print $1}' ".data."boot-testvm-qemu.dat | sort -n | awk '{v[NR]=$1} END {for (i = 1; i <= NR; i++) print i / NR, v[i]}'" \
       with linespoints pt 7 ps 0.6 title "QEMU microvm"
set title "Linux (ember; QEMU cannot boot it on this host)"
set ylabel "s"
linux_runs = system("awk '$1 >= 0' ".data."boot-linux-ember.dat 2> /dev/null | wc -l") + 0
if (linux_runs > 0) {
	set xrange [0:1.05]
	plot "< awk '$1 >= 0 {print $1 / 1000}' ".data."boot-linux-ember.dat | sort -n | awk '{v[NR]=$1} END {for (i = 1; i <= NR; i++) print i / NR, v[i]}'" \
	       with linespoints pt 7 ps 0.8 title "ember"
} else {
	set label 1 "no Linux runs in this run" at graph 0.5, 0.5 center
	plot [0:1] [0:1] NaN notitle
}
unset multiplot
GP

plot restore-vs-memory restore.dat <<'GP'
set terminal pngcairo size 700,420 font ",10"
set output out
set title "Snapshot restore: request → guest running (median, p90 as bar)"
set xlabel "guest memory (MiB)"
set ylabel "ms"
set logscale x 2
set key top left
set grid
set logscale y
set yrange [1:*]
set xrange [96:5500]
plot data."restore.dat" using 1:2:2:3 with yerrorbars notitle lc 1, "" using 1:2 with lines lw 2 lc 1 title "ember (File)", \
     "" using 1:4:4:5 with yerrorbars notitle lc 2, "" using 1:4 with lines lw 2 lc 2 title "ember (Uffd)", \
     "" using 1:6:6:7 with yerrorbars notitle lc 3, "" using 1:6 with lines lw 2 lc 3 title "QEMU microvm"
GP

plot memory-overhead memory.dat <<'GP'
set terminal pngcairo size 700,420 font ",10"
set output out
set title "VMM memory overhead (all but guest RAM), median"
set xlabel "vCPUs x guest MiB"
set ylabel "KiB"
set logscale y
set yrange [100:100000]
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key outside top center horizontal
set grid y
plot data."memory.dat" using 2:xtic(1) title "ember PSS", "" using 3 title "ember RSS", \
     "" using 4 title "QEMU PSS", "" using 5 title "QEMU RSS"
GP

plot concurrent-starts density-start.dat <<'GP'
set terminal pngcairo size 700,420 font ",10"
set output out
set title "VMs started (booted) or restored (running) per second, N at once"
set xlabel "N VMs launched together"
set ylabel "VMs per second"
set logscale x 2
set key top left
set grid
restore = data."density-restore.dat"
has_restore = system("test -s ".restore." && echo 1 || echo 0") + 0
if (has_restore) {
	plot data."density-start.dat" using 1:4 with linespoints lw 2 pt 7 title "ember starts", \
	     "" using 1:5 with linespoints lw 2 pt 7 title "QEMU starts", \
	     restore using 1:4 with linespoints lw 2 pt 5 dt 2 title "ember restores (File)", \
	     restore using 1:5 with linespoints lw 2 pt 5 dt 2 title "QEMU restores"
} else {
	plot data."density-start.dat" using 1:4 with linespoints lw 2 pt 7 title "ember starts", \
	     "" using 1:5 with linespoints lw 2 pt 7 title "QEMU starts"
}
GP

plot clone-memory clones-memory.dat <<'GP'
set terminal pngcairo size 800,420 font ",10"
set output out
set title "Host memory of N idle Linux clones of one snapshot (benchmarks/clones.sh)"
set ylabel "MiB"
set yrange [0:*]
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key outside top center horizontal
set grid y
set xtics rotate by -20
plot data."clones-memory.dat" using 5:xtic(sprintf("%s N=%d", strcol(1), $2)) title "host (file pages once)", \
     "" using 4 title "sum of PSS", "" using 3 title "sum of RSS", "" using 6 title "KSM merged"
GP

# Invocation latency through ember-fn, every invocation as a point, sorted:
# one line per path and handler, at N = 1 and at the largest N run.
plot invoke-latency invoke.dat <<'GP'
set terminal pngcairo size 1000,440 font ",10"
set output out
f = data."invoke.dat"
series(n) = system(sprintf("awk '!/^#/ && $13 == 1 && $3 == %d {print $1 \"/\" $2}' %s | sort -u | tr '\\n' ' '", n, f))
lat(s, n) = sprintf("< awk '!/^#/ && $13 == 1 && $3 == %d && $1 \"/\" $2 == \"%s\" {print $4 / 1000}' %s | sort -g | awk '{v[NR]=$1} END {for (i = 1; i <= NR; i++) print i / NR, v[i]}'", n, s, f)
nmax = system(sprintf("awk '!/^#/ && $13 == 1 {print $3}' %s | sort -n | tail -1", f)) + 0
# One colour per path, solid for echo and dashed for the 1 MiB read, in both panels.
colour(s) = strstrt(s, "restore/") == 1 ? 1 : strstrt(s, "pooled/") == 1 ? 2 : strstrt(s, "reuse/") == 1 ? 3 : 4
dash(s) = strstrt(s, "/mib") ? 2 : 1
set multiplot layout 1,2 title "ember-fn: invoke → answer, every invocation (sorted); path/handler"
set xlabel "fraction of invocations"
set ylabel "s"
set logscale y
set key top left
set grid
set xrange [0:1.05]
set title "N = 1 at once"
s1 = series(1)
plot for [s in s1] lat(s, 1) with linespoints pt 7 ps 0.6 lc colour(s) dt dash(s) title s
set title sprintf("N = %d at once", nmax)
sn = series(nmax)
plot for [s in sn] lat(s, nmax) with linespoints pt 7 ps 0.6 lc colour(s) dt dash(s) title s
unset multiplot
GP

# Live migration: total time and downtime (the VMM's own figure) against
# guest memory, idle and dirtying, ember and QEMU (medians).
plot migration migrate.dat <<'GP'
set terminal pngcairo size 1000,420 font ",10"
set output out
f = data."migrate.dat"
sel(load, col) = sprintf("< awk '!/^#/ && $2 == \"%s\" && $%d != \"?\" {print $1, $%d}' %s", load, col, col, f)
set multiplot layout 1,2 title "Live migration over TCP between two network namespaces (median)"
set xlabel "guest memory (MiB)"
set logscale x 2
set logscale y
set xrange [96:5500]
set key top left
set grid
set title "total: request → source reports complete"
set ylabel "ms"
plot sel("idle", 3) with linespoints lw 2 pt 7 lc 1 title "ember, idle", \
     sel("dirty", 3) with linespoints lw 2 pt 5 lc 1 dt 2 title "ember, dirtying", \
     sel("idle", 6) with linespoints lw 2 pt 7 lc 3 title "QEMU, idle", \
     sel("dirty", 6) with linespoints lw 2 pt 5 lc 3 dt 2 title "QEMU, dirtying"
set title "downtime (the VMM's own figure)"
plot sel("idle", 4) with linespoints lw 2 pt 7 lc 1 title "ember, idle", \
     sel("dirty", 4) with linespoints lw 2 pt 5 lc 1 dt 2 title "ember, dirtying", \
     sel("idle", 7) with linespoints lw 2 pt 7 lc 3 title "QEMU, idle", \
     sel("dirty", 7) with linespoints lw 2 pt 5 lc 3 dt 2 title "QEMU, dirtying"
unset multiplot
GP

{
	echo "Plots (\`benchmarks/report.sh\`, gnuplot):"
	echo
	for p in boot-distribution restore-vs-memory memory-overhead concurrent-starts clone-memory invoke-latency migration; do
		[ -f "$DIR/$p.png" ] && echo "- [$p.png]($p.png)"
	done
	true
} >> "$OUT"
cat "$OUT"
