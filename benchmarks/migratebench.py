#!/usr/bin/env python3
"""migratebench: one live migration of the counting test guest, between two
ember processes or two QEMU processes, each in a network namespace of its
own, timed from outside and by the VMMs' own reports.

  migratebench.py ember DIR MEM_MIB GUEST_ARGS SRC_NS DST_NS DST_IP PORT EMBER
  migratebench.py qemu  DIR MEM_MIB GUEST_ARGS SRC_NS DST_NS DST_IP PORT -- QEMU_COMMAND...

The guest is build/testvm.elf counting (testvm.counter), optionally writing
testvm.dirty MiB of its memory at every step: it prints "testvm: count N"
on its serial port, and "FAIL" when a page it wrote came back wrong. Both
VMMs' consoles are read here and each line stamped on arrival. Once the
source counted to 3, the migration starts (downtime limit 300 ms, the
default of both). Prints one line:

  total_ms downtime_ms gap_ms bytes rounds step_ms

  total_ms     the request to the source reporting the migration complete
  downtime_ms  the VMM's own figure: ember, from its log, the source's
               vCPUs paused to the destination's resumed (the realtime
               stamps of both, on one host); QEMU, query-migrate's downtime
  gap_ms       the guest's view: the longest time between two count lines
               around the migration (the last at the source, the first at
               the destination), less the median time between lines before
  bytes        bytes the source sent (ember: bytes_sent; QEMU: ram.transferred)
  rounds       passes over memory (ember: rounds; QEMU: ram.dirty-sync-count)
  step_ms      the guest's usual time between two count lines before the
               move (with testvm.dirty, it writes that much per step)

Exit status 0, or 1 with the reason on stderr (the logs are in DIR).
"""

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

COUNT = re.compile(rb"testvm: count (\d+)")
TIMEOUT = float(os.environ.get("MIGRATEBENCH_TIMEOUT", "300"))


class Console:
    """A VMM's stdout, its count lines stamped (CLOCK_REALTIME, seconds) on
    arrival; everything it printed goes to LOG too."""

    def __init__(self, proc, log):
        self.lines = []  # (time, count)
        self.failed = None
        self.cond = threading.Condition()
        self.log = open(log, "wb")
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, f):
        for line in iter(f.readline, b""):
            t = time.time()
            self.log.write(line)
            self.log.flush()
            m = COUNT.search(line)
            with self.cond:
                if m:
                    self.lines.append((t, int(m.group(1))))
                if b"FAIL" in line:
                    self.failed = line.decode(errors="replace").strip()
                self.cond.notify_all()
        with self.cond:
            self.lines.append((time.time(), None))  # EOF
            self.cond.notify_all()

    def wait_count(self, above, deadline):
        """The time of the first count line with a number above ABOVE."""
        with self.cond:
            while True:
                for t, n in self.lines:
                    if n is not None and n > above:
                        return t
                if self.failed:
                    raise RuntimeError("the guest said: " + self.failed)
                if self.lines and self.lines[-1][1] is None:
                    raise RuntimeError("the VMM's console ended")
                left = deadline - time.time()
                if left <= 0:
                    raise RuntimeError("no count above %d in time" % above)
                self.cond.wait(left)


def spawn(argv, log_dir, name):
    err = open(os.path.join(log_dir, name + ".err"), "wb")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
    return p, Console(p, os.path.join(log_dir, name + ".out"))


def wait_socket(path, proc, deadline):
    while not os.path.exists(path):
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError("%s never appeared" % path)
        time.sleep(0.01)


# ---- ember: its HTTP API on a Unix socket ---------------------------------
def ember_api(sock, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(sock)
    s.sendall(("%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\nConnection: close\r\n\r\n" % (method, path, len(data))).encode() + data)
    resp = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        resp += chunk
    s.close()
    head, _, payload = resp.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if status >= 300:
        raise RuntimeError("%s %s: %d %s" % (method, path, status, payload.decode(errors="replace")))
    return json.loads(payload) if payload.strip() else None


def realtime_stamp(log, pattern):
    with open(log, errors="replace") as f:
        m = re.search(pattern + r" (\d+)\.(\d+) \(realtime\)", f.read())
    if not m:
        raise RuntimeError("no '%s' in %s" % (pattern, log))
    return int(m.group(1)) + int(m.group(2)) / 1e6


def run_ember(d, mem, args, src_ns, dst_ns, dst_ip, port, ember):
    deadline = time.time() + TIMEOUT
    dst_sock, src_sock = os.path.join(d, "dst.sock"), os.path.join(d, "src.sock")
    dst, dst_con = spawn(["ip", "netns", "exec", dst_ns, ember, "--api-sock", dst_sock,
                          "--migration-listen", "tcp:%s:%d" % (dst_ip, port)], d, "dst")
    src, src_con = spawn(["ip", "netns", "exec", src_ns, ember, "--api-sock", src_sock], d, "src")
    try:
        wait_socket(src_sock, src, deadline)
        wait_socket(dst_sock, dst, deadline)
        kernel = os.path.realpath(os.path.join(os.environ.get("BUILD", "build"), "testvm.elf"))
        ember_api(src_sock, "PUT", "/boot-source", {"kernel_image_path": kernel, "boot_args": args})
        ember_api(src_sock, "PUT", "/machine-config",
                  {"vcpu_count": 1, "mem_size_mib": mem, "track_dirty_pages": True})
        ember_api(src_sock, "PUT", "/actions", {"action_type": "InstanceStart"})
        src_con.wait_count(2, deadline)
        t0 = time.time()
        ember_api(src_sock, "PUT", "/ember/migration",
                  {"destination": "tcp:%s:%d" % (dst_ip, port), "downtime_ms": 300})
        st = wait_complete(lambda: ember_api(src_sock, "GET", "/ember/migration"), "state", deadline)
        total, gap, step = moved(t0, src_con, dst_con, deadline)
        downtime = (realtime_stamp(os.path.join(d, "dst.err"), "migration: resumed at") -
                    realtime_stamp(os.path.join(d, "src.err"), "migration: vCPUs paused at")) * 1000
        return total, downtime, gap, st["bytes_sent"], st["rounds"], step
    finally:
        for p in (src, dst):
            p.kill()
            p.wait()


# ---- QEMU: QMP on a Unix socket -------------------------------------------
class Qmp:
    def __init__(self, path, proc, deadline):
        wait_socket(path, proc, deadline)
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(path)
        self.f = self.s.makefile("rb")
        self._reply()  # the greeting
        self.do("qmp_capabilities")

    def _reply(self):
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("QMP closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def do(self, cmd, args=None):
        self.s.sendall((json.dumps({"execute": cmd, "arguments": args or {}}) + "\n").encode())
        r = self._reply()
        if "error" in r:
            raise RuntimeError("QMP %s: %s" % (cmd, r["error"]))
        return r["return"]


def run_qemu(d, mem, args, src_ns, dst_ns, dst_ip, port, qemu):
    deadline = time.time() + TIMEOUT
    kernel = os.path.join(os.environ.get("BUILD", "build"), "testvm.elf")
    common = qemu + ["-serial", "stdio", "-m", str(mem), "-kernel", kernel, "-append", args]
    dst_qmp, src_qmp = os.path.join(d, "dst.qmp"), os.path.join(d, "src.qmp")
    dst, dst_con = spawn(["ip", "netns", "exec", dst_ns] + common +
                         ["-qmp", "unix:%s,server=on,wait=off" % dst_qmp,
                          "-incoming", "tcp:%s:%d" % (dst_ip, port)], d, "dst")
    src, src_con = spawn(["ip", "netns", "exec", src_ns] + common +
                         ["-qmp", "unix:%s,server=on,wait=off" % src_qmp], d, "src")
    try:
        Qmp(dst_qmp, dst, deadline)  # the destination listens once QMP answers
        q = Qmp(src_qmp, src, deadline)
        q.do("migrate-set-parameters", {"downtime-limit": 300})
        src_con.wait_count(2, deadline)
        t0 = time.time()
        q.do("migrate", {"uri": "tcp:%s:%d" % (dst_ip, port)})
        st = wait_complete(lambda: q.do("query-migrate"), "status", deadline)
        total, gap, step = moved(t0, src_con, dst_con, deadline)
        ram = st.get("ram", {})
        return total, st["downtime"], gap, ram.get("transferred", 0), ram.get("dirty-sync-count", 0), step
    finally:
        for p in (src, dst):
            p.kill()
            p.wait()


def wait_complete(status, key, deadline):
    """Poll the source's status() until its KEY says the migration is
    complete: the last status. Fails on a migration that ended otherwise."""
    while True:
        st = status()
        if st.get(key) == "completed":
            return st
        if st.get(key) in ("failed", "cancelled", "none"):
            raise RuntimeError("the migration is %s: %s" % (st[key], st))
        if time.time() > deadline:
            raise RuntimeError("the migration did not end in time: %s" % st)
        time.sleep(0.005)


def moved(t0, src_con, dst_con, deadline):
    """Once the source says complete: the total time since T0, and the
    guest's gap and usual step (gap_ms), once it counted on at the
    destination (all in ms)."""
    total = (time.time() - t0) * 1000
    last_src = max(n for _, n in src_con.lines if n is not None)
    dst_con.wait_count(last_src, deadline)
    gap, step = gap_ms(src_con, dst_con, last_src)
    return total, gap, step


def gap_ms(src_con, dst_con, last_src):
    """The stall the guest saw: its time between the last count at the
    source and the next at the destination, less its usual step; and that
    step (both in ms)."""
    before = [t for t, n in src_con.lines if n is not None]
    steps = [b - a for a, b in zip(before, before[1:])]
    usual = statistics.median(steps) if steps else 0
    t_last = max(t for t, n in src_con.lines if n == last_src)
    t_next = dst_con.wait_count(last_src, time.time() + TIMEOUT)
    if dst_con.failed:
        raise RuntimeError("the guest said: " + dst_con.failed)
    return max(0.0, (t_next - t_last - usual) * 1000), usual * 1000


def main(argv):
    if len(argv) < 10:
        sys.exit(__doc__)
    vmm, d, mem, args, src_ns, dst_ns, dst_ip, port = argv[1:9]
    try:
        if vmm == "ember":
            r = run_ember(d, int(mem), args, src_ns, dst_ns, dst_ip, int(port), argv[9])
        elif vmm == "qemu" and argv[9] == "--":
            r = run_qemu(d, int(mem), args, src_ns, dst_ns, dst_ip, int(port), argv[10:])
        else:
            sys.exit(__doc__)
    except (RuntimeError, OSError, KeyError, ValueError) as e:
        print("migratebench: %s %s MiB: %s" % (vmm, mem, e), file=sys.stderr)
        return 1
    print("%.1f %.1f %.1f %d %d %.2f" % r)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
