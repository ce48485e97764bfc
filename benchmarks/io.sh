#!/usr/bin/env bash
# I/O benchmark: the test guest moves the same data through virtio-blk and
# virtio-net under ember and under QEMU's microvm machine, run alternately
# (A/B/A/B) in one run, timed from outside between the guest's markers.
#
#   block: read a 64 MiB raw image sequentially, 64 KiB requests, one at a time
#   IOPS:  10,000 4 KiB reads of the same image at pseudo-random offsets, one at a time
#   net:   transmit 20,000 full-size frames (1514 bytes) into a tap, queue kept full
#
# usage: benchmarks/io.sh [RUNS]   (default 10; the net part needs root for a tap)
# Writes benchmarks/results/io.md (and the headline rows, io.tsv) and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/lib.sh
RUNS=${1:-10}
BUILD=${BUILD:-build}
EMBER=${EMBER:-$BUILD/ember}
OUT=${OUT:-benchmarks/results/io.md}
BENCH=$BUILD/bootbench
IOPS_REQUESTS=10000 # BLKIOPS_REQUESTS in firmware/testvm/virtio.c
headline_init io
scratch_dir iobench
TAP=embench$$
cleanup() { ip link del "$TAP" 2>/dev/null || true; scratch_cleanup; }
trap cleanup EXIT # replaces scratch_dir's trap, and still calls its cleanup

gcc -O2 -Wall -o "$BENCH" benchmarks/bootbench.c
QEMU=("${QEMU_MICROVM[@]}" -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 -m 64
      -global virtio-mmio.force-legacy=false -kernel "$BUILD/testvm.elf")

truncate -s 64M "$tmp/disk.img"
cat > "$tmp/blk.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath $BUILD/testvm.elf)", "boot_args": "testvm.blkbench"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
 "drives": [{"drive_id": "bench", "path_on_host": "$tmp/disk.img", "is_root_device": false}]}
JSON
# One block benchmark (a test guest mode), RUNS times under each VMM,
# alternately, into $tmp/ember-NAME and $tmp/qemu-NAME.
block_runs() { # NAME (blkbench or blkiops)
	sed "s/testvm.blkbench/testvm.$1/" "$tmp/blk.json" > "$tmp/$1.json"
	: > "$tmp/ember-$1"; : > "$tmp/qemu-$1"
	for i in $(seq "$RUNS"); do
		BOOTBENCH_FROM="$1 start" "$BENCH" "$1 done" "" 60 -- \
			"$EMBER" --no-api --config-file "$tmp/$1.json" >> "$tmp/ember-$1"
		BOOTBENCH_FROM="$1 start" "$BENCH" "$1 done" "KVM internal error" 60 -- \
			"${QEMU[@]}" -append "testvm.$1" \
			-drive id=d0,file="$tmp/disk.img",format=raw,if=none -device virtio-blk-device,drive=d0 \
			>> "$tmp/qemu-$1"
	done
}
block_runs blkbench
block_runs blkiops

: > "$tmp/ember-net"; : > "$tmp/qemu-net"
net_note=""
if ip tuntap add dev "$TAP" mode tap 2>/dev/null && ip link set "$TAP" up; then
	cat > "$tmp/net.json" <<JSON
{"boot-source": {"kernel_image_path": "$(realpath $BUILD/testvm.elf)", "boot_args": "testvm.netbench"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
 "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "$TAP"}]}
JSON
	for i in $(seq "$RUNS"); do
		BOOTBENCH_FROM="netbench start" "$BENCH" "netbench done" "" 60 -- \
			"$EMBER" --no-api --config-file "$tmp/net.json" >> "$tmp/ember-net"
		BOOTBENCH_FROM="netbench start" "$BENCH" "netbench done" "KVM internal error" 60 -- \
			"${QEMU[@]}" -append "testvm.netbench" \
			-netdev tap,id=n0,ifname="$TAP",script=no,downscript=no \
			-device virtio-net-device,netdev=n0 >> "$tmp/qemu-net"
	done
else
	net_note="(net skipped: creating a tap needs root)"
fi

row() { # label ember-file qemu-file amount unit: the rate is amount per median second
	read -r em ep en <<< "$(stats "$2" 1)"
	read -r qm qp qn <<< "$(stats "$3" 1)"
	[ "$en" -gt 0 ] && [ "$qn" -gt 0 ] || { echo "| $1 | - | - | - | - | $en / $qn |"; return; }
	local ratio=$(awk -v a="$em" -v b="$qm" 'BEGIN { printf "%.2f", a / b }')
	local erate=$(awk -v t="$em" -v n="$4" 'BEGIN { printf "%.0f", n / (t / 1000) }')
	local qrate=$(awk -v t="$qm" -v n="$4" 'BEGIN { printf "%.0f", n / (t / 1000) }')
	echo "| $1 | $em / $ep ms ($erate $5) | $qm / $qp ms ($qrate $5) | $ratio | $en / $qn |"
}

mkdir -p "$(dirname "$OUT")"
{
	echo "# I/O benchmark"
	echo
	echo "\`benchmarks/io.sh $RUNS\` $(machine_line)"
	echo "Same test guest (firmware/testvm) under both; time between its start and done markers, measured outside the VMM. Lower is better."
	echo
	echo "| transfer | ember median / p90 | QEMU microvm median / p90 | ratio ember/QEMU | runs ember / QEMU |"
	echo "|---|---|---|---|---|"
	row "virtio-blk: read 64 MiB, 64 KiB requests, QD1" "$tmp/ember-blkbench" "$tmp/qemu-blkbench" 67.1 MB/s
	row "virtio-blk: 10,000 random 4 KiB reads, QD1" "$tmp/ember-blkiops" "$tmp/qemu-blkiops" "$IOPS_REQUESTS" IOPS
	row "virtio-net: transmit 20,000 × 1514 B into a tap" "$tmp/ember-net" "$tmp/qemu-net" 30.3 MB/s
	[ -n "$net_note" ] && echo && echo "$net_note"
	true
} > "$OUT"
headline "block: sequential read of 64 MiB, 64 KiB requests" ms "$tmp/ember-blkbench" 1 "$tmp/qemu-blkbench" 1
headline "block: 10,000 random 4 KiB reads, QD1 (IOPS = 10,000 / time)" ms "$tmp/ember-blkiops" 1 "$tmp/qemu-blkiops" 1
if [ -z "$net_note" ]; then
	headline "net: transmit 20,000 frames of 1514 B into a tap" ms "$tmp/ember-net" 1 "$tmp/qemu-net" 1
fi
cat "$OUT"
