# Snapshots: pause, Full and Diff snapshots, restore in a new ember from
# the memory file (File) or through the page-fault handler (Uffd), clones,
# and snapshot files that must be refused.

UFFD=${UFFD:-$(dirname "$EMBER")/ember-uffd}

# A guest memory file's size: 64 MiB of guest memory and its identity page.
MEM_FILE_BYTES=$(((64 << 20) + 4096))

# testvm_boot NAME [TAP]: a test guest that fills 4 MiB with a pattern and
# counts, booted through the API (ember NAME) with dirty-page tracking, a
# vsock device and, given a tap name, a network interface on it; running.
testvm_boot() {
	start_api "$1" || return 1
	[ -n "${2:-}" ] && expect_api 204 PUT /network-interfaces/eth0 "{\"iface_id\": \"eth0\", \"host_dev_name\": \"$2\"}"
	expect_api 204 PUT /boot-source "{\"kernel_image_path\": \"$(realpath "$BUILD/testvm.elf")\", \"boot_args\": \"testvm.counter=1000 testvm.fill=4\"}"
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64, "track_dirty_pages": true}'
	expect_api 204 PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$T/v.sock\"}"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out "$1" 'testvm: count 3' 60 || return 1
}

# testvm_boot src, then paused and snapshotted to $T/state + $T/mem.
# Leaves COUNT = its last count.
testvm_snapshot() {
	testvm_boot src "${1:-}" || return 1
	expect_api 400 PUT /snapshot/create "{\"snapshot_path\": \"$T/state\", \"mem_file_path\": \"$T/mem\"}"
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	expect_api 200 GET /
	grep -q '"state":"Paused"' "$T/resp" || fail "GET / does not say Paused: $(cat "$T/resp")"
	COUNT=$(last_count src)
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/state\", \"mem_file_path\": \"$T/mem\"}"
	sleep 0.5
	[ "$(last_count src)" = "$COUNT" ] || fail "the paused guest kept counting"
	kill -9 "$API_PID"
	wait "$API_PID" 2>/dev/null
	rm -f "$API_SOCK" # what it leaves behind refuses the next start there
	[ -f "$T/state" ] && [ -f "$T/mem" ] || { fail "snapshot files missing"; return 1; }
	[ "$(stat -c %s "$T/mem")" -eq $MEM_FILE_BYTES ] || fail "memory file is not 64 MiB and its identity page"
	# Sparse: about the 4 MiB the guest filled, not all 64.
	[ "$(du -k "$T/mem" | cut -f1)" -lt 16384 ] || fail "memory file is not sparse ($(du -k "$T/mem"))"
}

# restore_testvm NAME STATE MEM_BACKEND_JSON EXPECTED_FIRST_COUNT [EXTRA_JSON]
restore_testvm() {
	start_api "$1" || return 1
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$2\", \"mem_backend\": $3, \"resume_vm\": true${5:+, $5}}"
	wait_out "$1" "testvm: count $(($4 + 1))" 60 || return 1
	[ "$(first_count "$1")" = "$4" ] || fail "$1: counting resumed at $(first_count "$1"), expected $4"
	! grep -q 'FAIL memory' "$T/$1.out" || fail "$1: guest memory came back wrong"
}

test_snapshot_testvm_file_diff_uffd() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	need_file "$UFFD" || return
	testvm_snapshot || return
	local n=$COUNT

	# File: the memory file mapped copy-on-write; counting goes on from n+1.
	restore_testvm file "$T/state" "{\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}" $((n + 1)) \
		'"track_dirty_pages": true' || return
	[ -S "$T/v.sock" ] || fail "the restored vsock device does not listen on $T/v.sock"
	# Diff: more work, then only the pages written since the restore.
	wait_out file "testvm: count $((n + 6))" 60 || return
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	local m
	m=$(last_count file)
	expect_api 204 PUT /snapshot/create "{\"snapshot_type\": \"Diff\", \"snapshot_path\": \"$T/state2\", \"mem_file_path\": \"$T/diff\"}"
	kill -9 "$API_PID"
	wait "$API_PID" 2>/dev/null
	[ "$(du -k "$T/diff" | cut -f1)" -lt "$(du -k "$T/mem" | cut -f1)" ] ||
		fail "the diff ($(du -k "$T/diff" | cut -f1) KiB) is not smaller than the full memory file"
	cp --sparse=always "$T/mem" "$T/merged"
	"$EMBER" merge-memory "$T/merged" "$T/diff" || fail "merge-memory failed"
	restore_testvm diff "$T/state2" "{\"backend_type\": \"File\", \"backend_path\": \"$T/merged\"}" $((m + 1)) || return
	stop_api
	# The diff alone is not a memory image: refused, and so is the diff
	# merged onto a base it does not apply onto (the merged file is of the
	# diff's generation now), or merged twice.
	start_api diffonly || return
	expect_api 400 PUT /snapshot/load "{\"snapshot_path\": \"$T/state2\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/diff\"}, \"resume_vm\": true}"
	grep -q "is a Diff snapshot's" "$T/resp" || fail "loading a bare diff: $(cat "$T/resp")"
	stop_api
	cp --sparse=always "$T/merged" "$T/merged-again"
	"$EMBER" merge-memory "$T/merged-again" "$T/diff" 2> "$T/merge2.err" && fail "merge-memory merged a diff twice"
	grep -q "not its base" "$T/merge2.err" || fail "merging twice: $(cat "$T/merge2.err")"
	"$EMBER" merge-memory "$T/diff" "$T/mem" 2> "$T/merge3.err" && fail "merge-memory took a Full file as a diff"
	cmp -s "$T/merged" "$T/merged-again" || fail "a refused merge changed its base"
	timeout 20 "$UFFD" --socket "$T/dh.sock" --mem-file "$T/diff" 2> "$T/diffhandler.err"
	[ $? -eq 1 ] && grep -q "is a Diff snapshot's" "$T/diffhandler.err" ||
		fail "ember-uffd served a bare diff: $(cat "$T/diffhandler.err")"

	# Uffd: ember-uffd serves the pages, the working set first.
	"$UFFD" --socket "$T/handler.sock" --mem-file "$T/mem" --working-set "$T/mem.ws" 2> "$T/handler.err" &
	local handler=$!
	local i
	for i in $(seq 50); do [ -S "$T/handler.sock" ] && break; sleep 0.1; done
	restore_testvm uffd "$T/state" "{\"backend_type\": \"Uffd\", \"backend_path\": \"$T/handler.sock\"}" $((n + 1)) || {
		kill "$handler"; return; }
	# A dead handler is reported, not a guest hung forever on its faults.
	kill -9 "$handler"
	wait "$handler" 2>/dev/null
	for i in $(seq 100); do kill -0 "$API_PID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$API_PID" 2>/dev/null; then
		fail "ember kept running after its page-fault handler died"
		stop_api
	else
		wait "$API_PID"
		[ $? -eq 1 ] || fail "ember's exit status after the handler died is not 1"
		expect_err uffd "page-fault handler"
	fi
}

# The tap ember holds open for clone k, from its fds' tun info.
holds_tap() { grep -qs "iff:[[:space:]]*$2\$" /proc/"$1"/fdinfo/*; }

test_snapshot_three_clones_at_once() {
	need_kvm || return
	need_netns || return
	need_file "$BUILD/testvm.elf" || return
	# A tap takes one owner at a time: clones need their own (overrides).
	local tap=embs$$ k
	for k in 0 1 2 3; do
		ip tuntap add dev "$tap-$k" mode tap || { fail "cannot create tap $tap-$k"; return; }
	done
	testvm_snapshot "$tap-0"
	local n=$COUNT pids=()
	for k in 1 2 3; do
		"$EMBER" --api-sock "$T/c$k.sock" > "$T/c$k.out" 2> "$T/c$k.err" < /dev/null &
		pids+=($!)
	done
	for k in 1 2 3; do
		local i
		for i in $(seq 100); do [ -S "$T/c$k.sock" ] && break; sleep 0.05; done
	done
	# All three loads in flight together, each with its own tap and vsock
	# socket; the third stays paused until it is resumed.
	local loads=()
	for k in 1 2 3; do
		local resume=true
		[ $k = 3 ] && resume=false
		API_SOCK="$T/c$k.sock" api PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}, \"resume_vm\": $resume, \"network_overrides\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"$tap-$k\"}], \"vsock_override\": {\"uds_path\": \"$T/c$k-v.sock\"}}" > "$T/c$k.status" &
		loads+=($!)
	done
	wait "${loads[@]}"
	for k in 1 2 3; do
		[ "$(cat "$T/c$k.status")" = 204 ] || fail "clone $k: load answered $(cat "$T/c$k.status")"
		[ -S "$T/c$k-v.sock" ] || fail "clone $k: no vsock socket at its override"
		holds_tap "${pids[$((k - 1))]}" "$tap-$k" || fail "clone $k does not hold its tap $tap-$k"
	done
	sleep 1
	! grep -q 'testvm: count' "$T/c3.out" || fail "clone 3 ran before it was resumed"
	API_SOCK="$T/c3.sock" expect_api 204 PATCH /vm '{"state": "Resumed"}'
	for k in 1 2 3; do
		wait_out "c$k" "testvm: count $((n + 2))" 60
		[ "$(first_count "c$k")" = "$((n + 1))" ] || fail "clone $k resumed at $(first_count "c$k")"
	done
	kill "${pids[@]}" 2>/dev/null
	wait "${pids[@]}" 2>/dev/null
	for k in 0 1 2 3; do
		ip link del "$tap-$k" 2>/dev/null
	done
}

# Each bad snapshot is refused with a clear message, and ember then exits
# with status 1 as Firecracker does; requests refused before a restore is
# tried leave it serving, and it still loads a good one.
test_snapshot_bad_files_refused() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	testvm_snapshot || return
	local n=$COUNT mem="{\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}"
	cp "$T/state" "$T/corrupt"
	printf '\xff' | dd of="$T/corrupt" bs=1 seek=200 conv=notrunc 2>/dev/null
	head -c 1000 "$T/state" > "$T/truncated"
	cp "$T/state" "$T/version"
	printf '\x63' | dd of="$T/version" bs=1 seek=8 conv=notrunc 2>/dev/null
	cp "$T/state" "$T/version1"
	printf '\x01' | dd of="$T/version1" bs=1 seek=8 conv=notrunc 2>/dev/null
	head -c $((32 << 20)) "$T/mem" > "$T/halfmem"
	head -c 4096 /dev/urandom > "$T/garbage"
	local cases=(
		"$T/corrupt|$mem|checksum mismatch"
		"$T/truncated|$mem|size mismatch"
		"$T/version|$mem|format version 99"
		"$T/version1|$mem|format version 1; this ember reads version 2 only"
		"$T/garbage|$mem|not an ember snapshot"
		"$T/missing|$mem|No such file"
		"$T/state|{\"backend_type\": \"File\", \"backend_path\": \"$T/halfmem\"}|has 33554432 bytes; the snapshot's memory file has $MEM_FILE_BYTES"
		"$T/state|{\"backend_type\": \"Uffd\", \"backend_path\": \"$T/no-handler.sock\"}|no-handler.sock"
	)
	local c k=0
	for c in "${cases[@]}"; do
		IFS='|' read -r state backend want <<< "$c"
		load_fails bad$((k++)) "{\"snapshot_path\": \"$state\", \"mem_backend\": $backend}" "$want"
	done
	# Requests that break the rules: refused, and ember keeps serving.
	start_api bad || return
	expect_api 400 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_file_path\": \"$T/mem\", \"mem_backend\": $mem}"
	expect_api 400 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"Disk\", \"backend_path\": \"$T/mem\"}}"
	expect_api 400 PATCH /vm '{"state": "Paused"}'
	expect_api 400 PATCH /vm '{"state": "Sleeping"}'
	# The same process still restores a good snapshot.
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_file_path\": \"$T/mem\", \"resume_vm\": true}"
	wait_out bad "testvm: count $((n + 1))" 60
	expect_api 400 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_file_path\": \"$T/mem\"}"
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	expect_api 400 PUT /snapshot/create "{\"snapshot_type\": \"Diff\", \"snapshot_path\": \"$T/s3\", \"mem_file_path\": \"$T/m3\"}"
	grep -q 'track_dirty_pages' "$T/resp" || fail "Diff without tracking: $(cat "$T/resp")"
	# A snapshot onto the memory file this VM is mapped from replaces the
	# file (a new one is renamed over it): the VM keeps its memory.
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/s3\", \"mem_file_path\": \"$T/mem\"}"
	expect_api 204 PATCH /vm '{"state": "Resumed"}'
	local c
	c=$(last_count bad)
	wait_out bad "testvm: count $((c + 20))" 60 # every pattern page checked again
	! grep -q 'FAIL memory' "$T/bad.out" || fail "the VM's memory changed when its memory file was replaced"
	stop_api
	# Configured first: not a fresh ember.
	start_api used || return
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
	expect_api 400 PUT /snapshot/load "{\"snapshot_path\": \"$T/state\", \"mem_backend\": $mem}"
	stop_api
}

# api_within SECONDS METHOD PATH [BODY]: api() with a time limit, so a hung
# ember shows as status 000 instead of hanging the test; body in $T/resp.
api_within() {
	local limit=$1
	shift
	local args=(-s -m "$limit" -o "$T/resp" -w "%{http_code}" --unix-socket "$API_SOCK" -X "$1" "http://localhost$2")
	[ $# -ge 3 ] && args+=(-H "Content-Type: application/json" -d "$3")
	: > "$T/resp"
	curl "${args[@]}"
}

# load_pair NAME STATE MEM: a fresh ember NAME loads STATE with the memory
# file MEM and resumes; LOADED is the answer's status, the body in $T/resp.
load_pair() {
	start_api "$1" || return 1
	LOADED=$(api_within 60 PUT /snapshot/load "{\"snapshot_path\": \"$2\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$3\"}, \"resume_vm\": true}")
}

# The files of two snapshots of the same guest size, mixed: each state file
# refuses the other's memory file, by its generation id, in ember and in
# ember-uffd told the state file; ember-uffd also drops a VM whose regions
# do not add up to the guest memory in its memory file.
test_snapshot_another_snapshots_memory_file_is_refused() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	need_file "$UFFD" || return
	local client=${UFFD_CLIENT:-$(dirname "$EMBER")/uffd-client}
	need_file "$client" || return
	testvm_snapshot || return
	local n=$COUNT pair
	mv "$T/state" "$T/state1"
	mv "$T/mem" "$T/mem1"
	testvm_snapshot || return
	[ "$(stat -c %s "$T/mem")" = "$(stat -c %s "$T/mem1")" ] || fail "the two memory files differ in size"
	for pair in "state1 mem" "state mem1"; do
		set -- $pair
		load_fails "mix-$1" "{\"snapshot_path\": \"$T/$1\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/$2\"}, \"resume_vm\": true}" \
			"is not this snapshot's: its generation id is"
	done
	restore_testvm own "$T/state1" "{\"backend_type\": \"File\", \"backend_path\": \"$T/mem1\"}" $((n + 1))
	stop_api

	# ember-uffd told the state file refuses another snapshot's memory file ...
	"$UFFD" --socket "$T/h.sock" --mem-file "$T/mem" --snapshot-path "$T/state1" 2> "$T/mixed-handler.err"
	[ $? -eq 1 ] || fail "ember-uffd started with another snapshot's memory file"
	grep -q "is not this snapshot's" "$T/mixed-handler.err" || fail "ember-uffd: $(cat "$T/mixed-handler.err")"
	[ ! -e "$T/h.sock" ] || fail "ember-uffd listened all the same"
	# ... serves its own ...
	"$UFFD" --socket "$T/h.sock" --mem-file "$T/mem1" --snapshot-path "$T/state1" 2> "$T/handler.err" &
	local handler=$! i
	for i in $(seq 50); do [ -S "$T/h.sock" ] && break; sleep 0.1; done
	restore_testvm uffd "$T/state1" "{\"backend_type\": \"Uffd\", \"backend_path\": \"$T/h.sock\"}" $((n + 1))
	stop_api
	# ... and drops a VM of 8 MiB: its memory file holds a 64 MiB guest.
	timeout 30 "$client" hup "$T/h.sock" 8 > "$T/small-vm.out" 2> "$T/small-vm.err" < /dev/null ||
		fail "the 8 MiB VM was not dropped"
	grep -q "regions hold 8388608 bytes, the memory file 67108864 bytes of guest memory" "$T/handler.err" ||
		fail "no reason logged for the 8 MiB VM"
	kill "$handler"
	wait "$handler" 2>/dev/null
}

# kill -9 at each step of a snapshot written over an earlier one (strace
# kills ember as it enters the Nth fsync or rename, so each point is hit
# exactly): whatever is then at the paths loads as the earlier snapshot,
# or as the new one, or is refused; never a state file with a memory file
# that is not its own.
test_snapshot_killed_create_never_pairs_wrong() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	command -v strace > /dev/null || { skip "strace is needed to kill ember at a chosen system call"; return; }
	testvm_snapshot || return
	local n=$COUNT point k=0
	mv "$T/state" "$T/orig-state"
	mv "$T/mem" "$T/orig-mem"
	local orig="{\"backend_type\": \"File\", \"backend_path\": \"$T/orig-mem\"}"
	for point in fsync:1 fsync:2 rename:1 rename:2 rename:3; do
		k=$((k + 1))
		local call=${point%:*} nth=${point#*:}
		cp "$T/orig-state" "$T/state"
		cp --sparse=always "$T/orig-mem" "$T/mem"
		# A VM restored from the copies moves on, then is snapshotted
		# onto the earlier snapshot's paths.
		restore_testvm "run$k" "$T/orig-state" "$orig" $((n + 1)) || return
		wait_out "run$k" "testvm: count $((n + 3))" 60 || return
		expect_api 204 PATCH /vm '{"state": "Paused"}'
		strace -f -p "$API_PID" -e trace="$call" -e inject="$call:signal=KILL:when=$nth" \
			-o "$T/strace$k.log" 2> "$T/strace$k.err" &
		local tracer=$! i
		for i in $(seq 100); do grep -qs attached "$T/strace$k.err" && break; sleep 0.05; done
		local got
		got=$(api_within 60 PUT /snapshot/create "{\"snapshot_path\": \"$T/state\", \"mem_file_path\": \"$T/mem\"}")
		[ "$got" = 204 ] && kill "$API_PID" # the point lies past this build's last such call
		wait "$API_PID" 2>/dev/null
		local status=$?
		kill "$tracer" 2>/dev/null
		wait "$tracer" 2>/dev/null
		[ $status -eq 137 ] || [ "$got" = 204 ] || fail "$point: the create answered $got, ember exited with $status"

		load_pair "check$k" "$T/state" "$T/mem" || return
		if cmp -s "$T/state" "$T/orig-state"; then
			if [ "$LOADED" = 204 ]; then
				cmp -s "$T/mem" "$T/orig-mem" ||
					fail "killed at $point: the earlier state file loaded with a memory file that is not its own"
			else
				[ "$LOADED" = 400 ] && grep -q "is not this snapshot's" "$T/resp" ||
					fail "killed at $point: load answered $LOADED: $(cat "$T/resp")"
			fi
		else
			[ "$LOADED" = 204 ] || fail "killed at $point: the new snapshot did not load: $(cat "$T/resp")"
		fi
		if [ "$LOADED" = 204 ]; then
			local first
			wait_out "check$k" "testvm: count [0-9]+" 60
			first=$(first_count "check$k")
			wait_out "check$k" "testvm: count $((first + 20))" 60 # every pattern page checked again
			! grep -q 'FAIL memory' "$T/check$k.out" || fail "killed at $point: guest memory came back wrong"
		fi
		stop_api
	done
}

# A disk that fills up while a snapshot is written over an earlier one: the
# create fails, the earlier snapshot is untouched and still loads, and no
# temporary is left behind.
test_snapshot_full_disk_keeps_the_earlier_snapshot() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	[ "$(id -u)" = 0 ] || { skip "mounting a small tmpfs needs root"; return; }
	mkdir -p "$T/small"
	mount -t tmpfs -o size=16m tmpfs "$T/small" || { fail "cannot mount a tmpfs"; return; }
	full_disk_steps
	umount -l "$T/small"
}

full_disk_steps() {
	local d=$T/small path="{\"snapshot_path\": \"$T/small/state\", \"mem_file_path\": \"$T/small/mem\"}"
	testvm_boot src || return
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	local n
	n=$(last_count src)
	expect_api 204 PUT /snapshot/create "$path"
	cp "$d/state" "$T/orig-state"
	cp --sparse=always "$d/mem" "$T/orig-mem"
	expect_api 204 PATCH /vm '{"state": "Resumed"}'
	wait_out src "testvm: count $((n + 3))" 60 || return
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	dd if=/dev/zero of="$d/filler" bs=4k 2> /dev/null
	expect_api 400 PUT /snapshot/create "$path"
	grep -q "No space left on device" "$T/resp" || fail "the failed create says: $(cat "$T/resp")"
	expect_api 204 PATCH /vm '{"state": "Resumed"}'
	stop_api
	local left
	left=$(cd "$d" && ls | grep -v -x -e state -e mem -e mem.ws -e filler | tr '\n' ' ')
	[ -z "$left" ] || fail "left behind on the full disk: $left"
	cmp -s "$d/state" "$T/orig-state" || fail "the earlier state file changed"
	cmp -s "$d/mem" "$T/orig-mem" || fail "the earlier memory file changed"
	restore_testvm after "$d/state" "{\"backend_type\": \"File\", \"backend_path\": \"$d/mem\"}" $((n + 1))
	wait_out after "testvm: count $((n + 20))" 60 # every pattern page checked again
	! grep -q 'FAIL memory' "$T/after.out" || fail "the earlier snapshot's memory came back wrong"
	stop_api
}

# FIFOs where a load or a create wants a regular file are refused at once,
# and ember goes on serving; the temporary names of an earlier ember
# (<snapshot_path>.tmp, <mem>.ws.tmp) are never opened, whatever is there.
test_snapshot_fifos_and_planted_temporaries() {
	need_kvm || return
	need_file "$BUILD/testvm.elf" || return
	testvm_snapshot || return
	local n=$COUNT got
	mkfifo "$T/fifo-state" "$T/fifo-mem" "$T/s2.tmp"
	echo victim > "$T/victim"
	ln -s "$T/victim" "$T/m2.ws.tmp"
	ln -s "$T/victim" "$T/link-state"
	# A page-fault handler that never accepts: its connect must not wait.
	busy_listener "$T/busy.sock" || return
	# A refused load ends ember: one each.
	load_fails f1 "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"Uffd\", \"backend_path\": \"$T/busy.sock\"}}" \
		"the page-fault handler at $T/busy.sock is not accepting connections"
	load_fails f2 "{\"snapshot_path\": \"$T/fifo-state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}}" \
		"snapshot_path $T/fifo-state: is a FIFO"
	load_fails f3 "{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/fifo-mem\"}}" \
		"memory file $T/fifo-mem: is a FIFO"
	start_api f || return
	local cases=(
		"load|{\"snapshot_path\": \"$T/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem\"}, \"resume_vm\": true}|"
		"pause|{\"state\": \"Paused\"}|"
		"create|{\"snapshot_path\": \"$T/fifo-state\", \"mem_file_path\": \"$T/m1\"}|snapshot_path $T/fifo-state: is a FIFO, not a regular file"
		"create|{\"snapshot_path\": \"$T/s1\", \"mem_file_path\": \"$T/fifo-mem\"}|mem_file_path $T/fifo-mem: is a FIFO, not a regular file"
		"create|{\"snapshot_path\": \"$T/link-state\", \"mem_file_path\": \"$T/m1\"}|snapshot_path $T/link-state: is a symbolic link"
		"create|{\"snapshot_path\": \"$T/s2\", \"mem_file_path\": \"$T/m2\"}|"
	)
	local c what body want
	for c in "${cases[@]}"; do
		IFS='|' read -r what body want <<< "$c"
		case $what in
		load) got=$(api_within 20 PUT /snapshot/load "$body") ;;
		pause) got=$(api_within 20 PATCH /vm "$body") ;;
		create) got=$(api_within 20 PUT /snapshot/create "$body") ;;
		esac
		if [ -z "$want" ]; then
			[ "$got" = 204 ] || fail "$what $body: status $got ($(cat "$T/resp"))"
		else
			[ "$got" = 400 ] || fail "$what $body: status $got, expected 400 ($(cat "$T/resp"))"
			grep -qF -- "$want" "$T/resp" || fail "$what: fault lacks '$want': $(cat "$T/resp")"
		fi
		[ "$(api_within 20 GET /)" = 200 ] || { fail "ember stopped answering after $what $body"; break; }
	done
	kill "$BUSY_PID"
	wait "$BUSY_PID" 2>/dev/null
	[ -p "$T/s2.tmp" ] || fail "the FIFO at s2.tmp was replaced"
	[ "$(cat "$T/victim")" = victim ] || fail "a symlink at a temporary name was written through"
	[ -L "$T/link-state" ] && [ -L "$T/m2.ws.tmp" ] || fail "a planted symlink was replaced"
	[ -f "$T/s2" ] && [ -f "$T/m2" ] && [ -f "$T/m2.ws" ] || fail "the snapshot beside the planted files is missing"
	kill -9 "$API_PID"
	wait "$API_PID" 2>/dev/null
	local m
	m=$(last_count f)
	restore_testvm s2 "$T/s2" "{\"backend_type\": \"File\", \"backend_path\": \"$T/m2\"}" $((${m:-$n} + 1)) || return
	stop_api
}

# Linux with a counter that prints to the console and appends to a file on
# its root drive, and a vsock echo server: snapshotted (with a host
# connection open), killed, restored in a new ember (File, then a Diff
# after more work, then Uffd); the count and the file go on from where
# they were, and the vsock device works again at its overridden socket.
linux_counts() { grep -oE 'count-[0-9]+ lines-[0-9]+' "$T/$1.out"; }

# check_linux NAME FIRST: counting resumed at FIRST and every line's file
# length matches its count (the file on the root drive is intact).
check_linux() {
	local first
	first=$(linux_counts "$1" | head -1 | sed -E 's/count-([0-9]+).*/\1/')
	[ "$first" = "$2" ] || fail "$1: counting resumed at '$first', expected $2"
	linux_counts "$1" | awk '{split($1, c, "-"); split($2, l, "-"); if (c[2] != l[2]) bad = 1} END {exit bad}' ||
		fail "$1: the counter file on the root drive does not match the count"
}

linux_last() { linux_counts "$1" | tail -1 | sed -E 's/count-([0-9]+).*/\1/'; }

test_snapshot_linux_counter() {
	need_kvm || return
	need_file "$BUILD/vmlinux" || return
	need_file "$BUILD/rootfs.ext4" || return
	need_file "$UFFD" || return
	cp --sparse=always "$BUILD/rootfs.ext4" "$T/rootfs.ext4"
	start_api lsrc || return
	cat > "$T/boot.json" <<JSON
{"kernel_image_path": "$(realpath "$BUILD/vmlinux")",
 "boot_args": "console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"(while true; do ember-vsock listen 5000; done) & rm -f /root/counter; i=0; while true; do i=\$((i+1)); echo \$i >> /root/counter; echo count-\$i lines-\$(wc -l < /root/counter); sleep 0.2; done\""}
JSON
	expect_api 204 PUT /boot-source "$(cat "$T/boot.json")"
	expect_api 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 128, "track_dirty_pages": true}'
	expect_api 204 PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$T/rootfs.ext4\", \"is_root_device\": true, \"is_read_only\": false}"
	expect_api 204 PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$T/lv.sock\"}"
	expect_api 204 PUT /actions '{"action_type": "InstanceStart"}'
	wait_out lsrc 'count-5 ' "$LINUX_TIMEOUT" || { stop_api; return; }
	# A guest connection open across the snapshot: it cannot survive.
	(printf 'CONNECT 5000\nbefore-snapshot\n'; sleep 60) | socat - UNIX-CONNECT:"$T/lv.sock" > "$T/lbefore.out" 2>&1 &
	local held=$! i
	for i in $(seq 100); do grep -q before-snapshot "$T/lbefore.out" && break; sleep 0.1; done
	grep -q before-snapshot "$T/lbefore.out" || fail "no vsock echo before the snapshot"
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	local n
	n=$(linux_last lsrc)
	expect_api 204 PUT /snapshot/create "{\"snapshot_path\": \"$T/lstate\", \"mem_file_path\": \"$T/lmem\"}"
	kill -9 "$API_PID"
	wait "$API_PID" 2>/dev/null
	kill "$held" 2>/dev/null

	start_api lfile --level Debug || return
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/lstate\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/lmem\"}, \"track_dirty_pages\": true, \"resume_vm\": true, \"vsock_override\": {\"uds_path\": \"$T/lv2.sock\"}}"
	wait_out lfile "count-$((n + 5)) " 120 || { stop_api; return; }
	check_linux lfile $((n + 1))
	# The transport reset dropped the old connection, so the guest's echo
	# server listens again, reached through the new socket.
	for i in $(seq 10); do
		(printf 'CONNECT 5000\nafter-restore\n'; sleep 1) | socat -t 3 - UNIX-CONNECT:"$T/lv2.sock" > "$T/lafter.out" 2>&1
		grep -q '^after-restore$' "$T/lafter.out" && break
		sleep 0.5
	done
	grep -q '^after-restore$' "$T/lafter.out" || fail "no vsock echo after the restore: $(cat "$T/lafter.out")"
	expect_api 204 PATCH /vm '{"state": "Paused"}'
	local m
	m=$(linux_last lfile)
	expect_api 204 PUT /snapshot/create "{\"snapshot_type\": \"Diff\", \"snapshot_path\": \"$T/lstate2\", \"mem_file_path\": \"$T/ldiff\"}"
	# The drive as the Diff snapshot saw it (the VM is paused), for the
	# restores below; then a clean exit, for the device counters.
	cp --sparse=always "$T/rootfs.ext4" "$T/rootfs.at-diff"
	expect_api 204 PATCH /vm '{"state": "Resumed"}'
	stop_api
	grep -q 'transport_resets=1' "$T/lfile.err" || fail "the restored vsock device sent no transport reset"
	cp --sparse=always "$T/rootfs.at-diff" "$T/rootfs.ext4"
	cp --sparse=always "$T/lmem" "$T/lmerged"
	"$EMBER" merge-memory "$T/lmerged" "$T/ldiff" || fail "merge-memory failed"

	start_api ldiff || return
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/lstate2\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/lmerged\"}, \"resume_vm\": true}"
	wait_out ldiff "count-$((m + 3)) " 120
	check_linux ldiff $((m + 1))
	stop_api

	# Again from the Diff snapshot, through ember-uffd, with the drive put
	# back as it was when the snapshot was taken.
	cp --sparse=always "$T/rootfs.at-diff" "$T/rootfs.ext4"
	"$UFFD" --socket "$T/lhandler.sock" --mem-file "$T/lmerged" 2> "$T/lhandler.err" &
	local handler=$! i
	for i in $(seq 50); do [ -S "$T/lhandler.sock" ] && break; sleep 0.1; done
	start_api luffd || { kill "$handler"; return; }
	expect_api 204 PUT /snapshot/load "{\"snapshot_path\": \"$T/lstate2\", \"mem_backend\": {\"backend_type\": \"Uffd\", \"backend_path\": \"$T/lhandler.sock\"}, \"resume_vm\": true}"
	wait_out luffd "count-$((m + 3)) " 120
	check_linux luffd $((m + 1))
	stop_api
	kill "$handler"
	wait "$handler" 2>/dev/null
}

# A snapshot restored inside ember-jailer's jail, by an unprivileged ember:
# from the memory file (copied into the jail) and through ember-uffd, whose
# socket the host puts inside the jail's /run; the vsock socket moves into
# the jail with vsock_override. Uses test_jailer.sh's helpers (need_jailer,
# wait_for, expect_jail_api).
test_snapshot_restored_in_a_jail() {
	need_kvm || return
	need_jailer || return
	need_file "$BUILD/testvm.elf" || return
	need_file "$UFFD" || return
	testvm_snapshot || return
	local n=$COUNT base=$T/jails backend k
	for backend in File Uffd; do
		local id=snap-$backend-$$ root
		root=$base/$(basename "$EMBER")/$id/root
		"$JAILER" --id "$id" --exec-file "$EMBER" --uid $JAIL_UID --gid $JAIL_GID --chroot-base-dir "$base" \
			-- --api-sock /run/api.sock > "$T/j$backend.out" 2> "$T/j$backend.err" < /dev/null &
		local pid=$! handler=
		wait_for "[ -S '$root/run/api.sock' ]" 10 || { fail "$backend: the jailed API never came up"; kill $pid; return; }
		cp "$T/state" "$root/state"
		chown $JAIL_UID:$JAIL_GID "$root/state"
		if [ $backend = File ]; then
			cp --sparse=always "$T/mem" "$root/mem"
			chown $JAIL_UID:$JAIL_GID "$root/mem"
			local path=/mem
		else
			"$UFFD" --socket "$root/run/handler.sock" --mem-file "$T/mem" 2> "$T/jhandler.err" &
			handler=$!
			wait_for "[ -S '$root/run/handler.sock' ]" 10 || fail "ember-uffd did not listen"
			chown $JAIL_UID:$JAIL_GID "$root/run/handler.sock"
			local path=/run/handler.sock
		fi
		expect_jail_api 204 "$root/run/api.sock" PUT /snapshot/load "{\"snapshot_path\": \"/state\", \"mem_backend\": {\"backend_type\": \"$backend\", \"backend_path\": \"$path\"}, \"resume_vm\": true, \"vsock_override\": {\"uds_path\": \"/run/v.sock\"}}"
		wait_out "j$backend" "testvm: count $((n + 2))" 60
		[ "$(first_count "j$backend")" = "$((n + 1))" ] || fail "$backend: the jailed restore resumed at $(first_count "j$backend")"
		! grep -q 'FAIL memory' "$T/j$backend.out" || fail "$backend: guest memory came back wrong in the jail"
		# And the jailed VM snapshots itself again, inside its jail.
		expect_jail_api 204 "$root/run/api.sock" PATCH /vm '{"state": "Paused"}'
		expect_jail_api 204 "$root/run/api.sock" PUT /snapshot/create '{"snapshot_path": "/again", "mem_file_path": "/again.mem"}'
		[ -s "$root/again" ] && [ -f "$root/again.mem" ] || fail "$backend: no snapshot written inside the jail"
		kill $pid
		wait $pid 2>/dev/null
		[ -n "$handler" ] && { kill $handler; wait $handler 2>/dev/null; }
		"$JAILER" --cleanup --id "$id" --exec-file "$EMBER" --chroot-base-dir "$base" > /dev/null 2>&1 ||
			fail "$backend: --cleanup failed"
	done
}
