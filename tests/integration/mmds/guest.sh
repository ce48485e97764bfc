# Run by tests/integration/test_mmds_linux.sh inside a Linux guest (busybox
# sh): fetches MMDS over eth0 with busybox wget (nc for the token PUT,
# which wget cannot send) and prints one "mmds: name=value" line a check.
# (No wget -T: Debian's busybox 1.35 wget crashes with it.)
# $1: V1 or V2, the version the host configured.
M=169.254.169.254
ip addr add 10.0.0.2/24 dev eth0
ip link set eth0 up
ip route add $M dev eth0

# token TTL: a V2 session token (the response's body, its last line).
# busybox nc's first connection here completes its handshake and then
# closes without sending the request (seen in the frames ember exchanged:
# SYN, SYN-ACK, ACK, FIN with no data), and says "timed out"; the next
# one sends. So: up to 6 tries, each retry named on the console.
token() {
	local i=0 t=
	while [ $i -lt 6 ] && [ -z "$t" ]; do
		[ $i -eq 0 ] || echo "mmds: token retry $i" >&2
		t=$(printf 'PUT /latest/api/token HTTP/1.1\r\nHost: %s\r\nX-metadata-token-ttl-seconds: %s\r\n\r\n' $M "$1" |
			nc -w 10 $M 80 | tail -n 1)
		i=$((i + 1))
	done
	echo "$t"
}
# get TOKEN PATH [HEADER]: the body, or wget's error on stderr
get() {
	if [ -n "$3" ]; then
		wget -q -O - --header "X-metadata-token: $1" --header "$3" "http://$M$2"
	else
		wget -q -O - --header "X-metadata-token: $1" "http://$M$2"
	fi
}
# status TOKEN PATH: "served" or wget's error (with the HTTP status)
status() {
	if [ -n "$1" ]; then
		wget -q -O /dev/null --header "X-metadata-token: $1" "http://$M$2" 2>/tmp/err
	else
		wget -q -O /dev/null "http://$M$2" 2>/tmp/err
	fi && echo served || tr '\n' ' ' < /tmp/err
}

# established: how many of this guest's TCP connections to MMDS port 80
# are established (/proc/net/tcp: rem_address FEA9FEA9:0050, st 01).
established() {
	grep -c ' FEA9FEA9:0050 01 ' /proc/net/tcp
}

echo "mmds: version=$1"
if [ "$1" = V1 ]; then
	echo "mmds: v1-plain=$(wget -q -O - http://$M/latest/meta-data/ami-id)"
	echo "mmds: v1-no-token=$(status "" /latest/meta-data/ami-id)"
	echo "mmds: v1-wrong-token=$(status wrong-token /latest/meta-data/ami-id)"
	t=$(token 60)
	echo "mmds: v1-with-token=$(get "$t" /latest/meta-data/ami-id)"
	echo "mmds: v1-json=$(wget -q -O - --header 'Accept: application/json' http://$M/latest/meta-data)"
	# A flood: connections held open until the responder's table is full
	# (30 established as this guest sees them), then more that it must
	# refuse or make room for. The tap (the host at 10.0.0.1) must still
	# answer meanwhile. The clients start 5 at a time (one at a time once
	# 30 are started and some were lost): 45 started at once are 45 execs
	# in an emulated guest kernel, slow enough that some handshakes
	# outlast the responder's retransmissions (4.5 s) and are reset, and
	# the table never fills.
	mkfifo /tmp/hold
	sleep 300 > /tmp/hold &
	clients() { # N: start N more
		local k=0
		while [ $k -lt "$1" ]; do
			nc $M 80 < /tmp/hold > /dev/null 2>&1 &
			k=$((k + 1))
		done
		i=$((i + $1))
	}
	i=0
	end=$(($(date +%s) + 240))
	while [ $i -lt 60 ] && [ $(date +%s) -lt $end ] && [ "$(established)" -lt 30 ]; do
		[ $i -lt 30 ] && clients 5 || clients 1
		sleep 1
	done
	clients 5
	sleep 2
	echo "mmds: flooding established=$(established) clients=$i"
	sleep 5 # the host reads the metrics
	echo "mmds: flood-ping=$(ping -c 3 -W 5 10.0.0.1 > /dev/null 2>&1 && echo ok || echo lost)"
	sleep 5 # the held connections are idle long enough to make room
	echo "mmds: after-flood=$(wget -q -O - http://$M/latest/meta-data/ami-id)"
	echo "mmds: done"
	exit 0
fi

t=$(token 21600) # valid until the restore (the longest TTL)
echo "mmds: token-length=${#t}"
echo "mmds: ami=$(get "$t" /latest/meta-data/ami-id)"
echo "mmds: list=$(get "$t" /latest/meta-data/ | tr '\n' ,)"
echo "mmds: json=$(get "$t" /latest/meta-data 'Accept: application/json')"
echo "mmds: no-token=$(status "" /latest/meta-data/ami-id)"
echo "mmds: wrong-token=$(status "$t"x /latest/meta-data/ami-id)"
printf 'PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 0\r\n\r\n' | nc -w 5 $M 80 > /tmp/bad
echo "mmds: ttl-0=$(head -n 1 /tmp/bad)"
# A token of 10 s: served while fresh, refused once expired. A guest on a
# busy host can spend the 10 s between getting it and using it; when the
# use failed that late, it asks again (a refusal while fresh is reported).
i=0
v=
while [ $i -lt 5 ] && [ -z "$v" ]; do
	start=$(date +%s)
	s=$(token 10)
	v=$(get "$s" /latest/meta-data/ami-id)
	[ -n "$v" ] || [ $(($(date +%s) - start)) -ge 8 ] || break
	[ -n "$v" ] || echo "mmds: short-lived token used too late, retry $i" >&2
	i=$((i + 1))
done
echo "mmds: short-lived=$v"
sleep 11
echo "mmds: expired=$(status "$s" /latest/meta-data/ami-id)"
echo "mmds: phase1-done"

# The host patches the store now (a new token: this guest may be slow
# enough for the first to expire).
i=0
v=
while [ $i -lt 300 ] && [ -z "$v" ]; do
	v=$(get "$(token 60)" /patched 2>/dev/null)
	[ -n "$v" ] || sleep 1
	i=$((i + 1))
done
echo "mmds: patched=$v"
echo "mmds: ready-for-snapshot"

# The host snapshots this VM, restores it in a new ember and marks the
# store; connections open across the snapshot are gone, so ask again.
v=
while [ -z "$v" ]; do
	n=$(token 60)
	v=$(get "$n" /restored 2>/dev/null)
	[ -n "$v" ] || sleep 1
done
echo "mmds: restored=$v"
echo "mmds: after-restore=$(get "$n" /latest/meta-data/ami-id) $(get "$n" /patched)"
echo "mmds: after-restore-no-token=$(status "" /latest/meta-data/ami-id)"
echo "mmds: after-restore-old-token=$(status "$t" /latest/meta-data/ami-id)"
echo "mmds: done"
