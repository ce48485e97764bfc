# Helpers for the integration tests (sourced by run.sh).

# run.sh makes $EMBER_IT_ROOT and removes it at the end; each test gets a
# fresh directory in it, $T, and reports through these.
TMP_ROOT=$EMBER_IT_ROOT
fail() { echo "    $*" >&2; TEST_RESULT=fail; }
skip() { TEST_SKIP_REASON="$*"; TEST_RESULT=skip; }

# run_test NAME: run the test, print its line (and on failure the tail of
# each output it left), and add "RESULT NAME SECONDS" to the results.
run_test() {
	local name=$1
	T="$TMP_ROOT/$name"
	mkdir -p "$T"
	TEST_RESULT=pass
	TEST_SKIP_REASON=
	local start=$SECONDS
	"$name"
	local took=$((SECONDS - start))
	case $TEST_RESULT in
	pass) echo "PASS    $name (${took}s)"; echo "PASS $name $took" >> "$TMP_ROOT/results" ;;
	skip) echo "SKIPPED $name: $TEST_SKIP_REASON  <<<<<<<<<< NOT RUN"; echo "SKIPPED $name $took" >> "$TMP_ROOT/results" ;;
	*) echo "FAIL    $name (${took}s)"; echo "FAIL $name $took" >> "$TMP_ROOT/results"
	   for f in "$T"/*.out "$T"/*.err; do
		   [ -f "$f" ] && { echo "    --- $f (last 30 lines)"; tail -n 30 "$f" | sed 's/^/    | /'; }
	   done ;;
	esac
}

# exclusive WHAT: from here to the end of the test, no other test that
# says the same WHAT runs (for what the whole host shares: KSM's
# counters, the huge page pool). The lock goes when the test's process ends.
exclusive() {
	exec {EXCLUSIVE_FD}> "$TMP_ROOT/lock.$1"
	flock "$EXCLUSIVE_FD"
}

need_kvm() {
	if [ ! -c /dev/kvm ] || [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
		skip "/dev/kvm is not available"
		return 1
	fi
}

need_file() {
	if [ ! -f "$1" ]; then
		fail "missing $1 (run make)"
		return 1
	fi
}

# write_config FILE KERNEL INITRD BOOT_ARGS VCPUS MEM_MIB
write_config() {
	local initrd=""
	[ -n "$3" ] && initrd=", \"initrd_path\": \"$(realpath "$3")\""
	cat > "$1" <<JSON
{
  "boot-source": { "kernel_image_path": "$(realpath "$2")"$initrd, "boot_args": "$4" },
  "machine-config": { "vcpu_count": $5, "mem_size_mib": $6 }
}
JSON
}

# run_ember NAME TIMEOUT ARGS...: stdout to $T/NAME.out, stderr to
# $T/NAME.err; sets STATUS to ember's exit status (124 on timeout).
run_ember() {
	local name=$1 limit=$2
	shift 2
	timeout --kill-after=10 "$limit" "$EMBER" "$@" > "$T/$name.out" 2> "$T/$name.err" < /dev/null
	STATUS=$?
}

expect_status() {
	[ "$STATUS" -eq "$1" ] || fail "ember exited with $STATUS, expected $1"
}

expect_out() {
	grep -qF -- "$2" "$T/$1.out" || fail "guest output lacks '$2'"
}

expect_err() {
	grep -qF -- "$2" "$T/$1.err" || fail "ember's stderr lacks '$2'"
}

# The exact line count of ember's stderr, for "one clear error line".
expect_err_lines() {
	local n
	n=$(wc -l < "$T/$1.err")
	[ "$n" -eq "$2" ] || fail "ember printed $n lines on stderr, expected $2"
}

# ---- the API socket, driven with curl as orchestrators drive it ----

# start_api NAME [ARGS...]: ember serving $T/NAME.sock in the background
# (run through the command in API_PREFIX, if set: see start_api_in).
start_api() {
	local name=$1
	shift
	API_SOCK="$T/$name.sock"
	# shellcheck disable=SC2086 # API_PREFIX is a command and its words
	${API_PREFIX:-} "$EMBER" --api-sock "$API_SOCK" "$@" > "$T/$name.out" 2> "$T/$name.err" < /dev/null &
	API_PID=$!
	local i
	for i in $(seq 100); do
		[ -S "$API_SOCK" ] && curl -s --unix-socket "$API_SOCK" http://localhost/ > /dev/null && return 0
		sleep 0.05
	done
	fail "the API socket never accepted"
	return 1
}

stop_api() {
	kill "$API_PID" 2>/dev/null
	wait "$API_PID" 2>/dev/null
}

# api METHOD PATH [BODY]: the status on stdout, the body in $T/resp.
api() {
	local args=(-s -o "$T/resp" -w "%{http_code}" --unix-socket "$API_SOCK" -X "$1" "http://localhost$2")
	[ $# -ge 3 ] && args+=(-H "Content-Type: application/json" -d "$3")
	curl "${args[@]}"
}

# expect_api STATUS METHOD PATH [BODY]
expect_api() {
	local want=$1
	shift
	local got
	got=$(api "$@")
	[ "$got" = "$want" ] || fail "$1 $2: status $got, expected $want ($(cat "$T/resp" 2>/dev/null))"
}

# ---- shared by several test files ----

# load_fails NAME BODY WANT: a fresh ember answers PUT /snapshot/load BODY
# with 400 and a fault containing WANT, then exits with status 1 (as
# Firecracker, a failed restore ends the process).
load_fails() {
	start_api "$1" || return
	expect_api 400 PUT /snapshot/load "$2"
	grep -qF -- "$3" "$T/resp" || fail "$1: the fault lacks '$3': $(cat "$T/resp")"
	local i
	for i in $(seq 200); do
		grep -qs '^State:.*Z' "/proc/$API_PID/status" || [ ! -d "/proc/$API_PID" ] && break
		sleep 0.05
	done
	if ! grep -qs '^State:.*Z' "/proc/$API_PID/status" && [ -d "/proc/$API_PID" ]; then
		fail "$1: ember still runs 10 s after a failed load"
		stop_api
		return 1
	fi
	wait "$API_PID"
	local st=$?
	[ "$st" -eq 1 ] || fail "$1: ember exited with $st after a failed load, expected 1"
}

# wait_out NAME PATTERN SECONDS: until the guest output has a line
# matching PATTERN (grep -E).
wait_out() {
	local i
	for i in $(seq $(($3 * 10))); do
		grep -qE -- "$2" "$T/$1.out" 2>/dev/null && return 0
		sleep 0.1
	done
	fail "$1: no output matching '$2' within $3 s"
	return 1
}

# The number in the last (first) "testvm: count N" line of NAME's output.
last_count() { grep -oE 'testvm: count [0-9]+' "$T/$1.out" | tail -1 | awk '{print $3}'; }
first_count() { grep -oE 'testvm: count [0-9]+' "$T/$1.out" | head -1 | awk '{print $3}'; }

# busy_listener PATH: a process listening on the Unix socket PATH that never
# accepts, with its backlog full (a blocking connect() there would wait
# forever). Sets BUSY_PID.
busy_listener() {
	perl -MSocket -MFcntl -e '
		my $p = $ARGV[0];
		socket(my $l, PF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
		bind($l, pack_sockaddr_un($p)) && listen($l, 0) or die "listen $p: $!";
		my @held;
		for (1 .. 16) {
			socket(my $c, PF_UNIX, SOCK_STREAM, 0) or die;
			fcntl($c, F_SETFL, O_NONBLOCK);
			connect($c, pack_sockaddr_un($p)) or last;
			push @held, $c;
		}
		open(my $r, ">", "$p.ready") or die;
		close($r);
		sleep;
	' "$1" &
	BUSY_PID=$!
	local i
	for i in $(seq 100); do [ -e "$1.ready" ] && return 0; sleep 0.05; done
	fail "the busy listener at $1 did not start"
	return 1
}
