#!/usr/bin/env python3
"""One end of an ember live migration, right or wrong on purpose, for the
tests (the stream: vmm/migration/stream.h).

  peer.py listen PATH MODE   a destination on the Unix socket PATH:
      close-after N  read N bytes of the stream, then close
      refuse         read up to END, then answer that the VM is refused
      silent         read up to END, then hold the connection, answering nothing
      slow           read 16 KiB a second until the source goes
  peer.py relay PATH TARGET RATE  a slow link: takes one connection on PATH,
      passes it on to the Unix socket TARGET at RATE bytes a second (the
      answers back at full speed), and closes each side when the other does
  peer.py send PATH MODE     a source connecting to the Unix socket PATH:
      garbage, bad-crc, eof-in-begin, wrong-size, bad-config
    then prints the destination's answer: "result ERRNO REASON", or
    "no answer".
Prints "ready" once listening or connected, and what it read.
"""
import os
import socket
import struct
import sys
import threading
import time

MAGIC = b"EMBERMIG"
BEGIN, PAGES, STATE, END, RESULT = 1, 2, 3, 4, 5


def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


TABLE = _table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def hello():
    return MAGIC + struct.pack("<II", 1, 16)


def message(kind, payload, bad_crc=False):
    head = struct.pack("<III", kind, len(payload), crc32c(payload) ^ (1 if bad_crc else 0))
    return head + struct.pack("<I", crc32c(head)) + payload


def begin(mem_size, config):
    return message(BEGIN, struct.pack("<QII", mem_size, 4096, 0) + config)


def read_exactly(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_to_end(conn):
    """Read the source's messages up to END; returns their types."""
    if read_exactly(conn, 16) is None:
        return None
    kinds = []
    while True:
        head = read_exactly(conn, 16)
        if head is None:
            return kinds
        kind, length = struct.unpack("<II", head[:8])
        if read_exactly(conn, length) is None:
            return kinds
        kinds.append(kind)
        if kind == END:
            return kinds


def accept_one(path):
    """Listen on the Unix socket PATH, say "ready", take one connection."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    print("ready", flush=True)
    return srv.accept()[0]


def listen(path, mode, arg):
    conn = accept_one(path)
    if mode == "close-after":
        got = read_exactly(conn, int(arg))
        print("read", 0 if got is None else len(got), flush=True)
        conn.close()
    elif mode in ("refuse", "silent"):
        kinds = read_to_end(conn)
        print("messages", " ".join(str(k) for k in kinds or []), flush=True)
        if mode == "refuse":
            reason = b"refused by the test"
            conn.sendall(hello() + message(RESULT, struct.pack("<I", 1) + reason))
            time.sleep(1)
        else:
            time.sleep(3600)
    elif mode == "slow":
        while conn.recv(16384):
            time.sleep(1)
    else:
        sys.exit("unknown mode " + mode)


def relay(path, target, rate):
    src = accept_one(path)
    dst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dst.connect(target)

    def pump(a, b, limit):
        start, sent = time.monotonic(), 0
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
                sent += len(data)
                if limit:
                    ahead = sent / limit - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            pass
        for sock, how in ((b, socket.SHUT_WR), (a, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass

    back = threading.Thread(target=pump, args=(dst, src, 0), daemon=True)
    back.start()
    pump(src, dst, rate)
    print("source closed", flush=True)
    back.join(5)


CONFIG = b'{"boot-source": {"kernel_image_path": "/nonexistent"}, "machine-config": {"vcpu_count": 1, "mem_size_mib": 32}}'


def send(path, mode):
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    print("ready", flush=True)
    if mode == "garbage":
        data = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    elif mode == "bad-crc":
        data = hello() + message(BEGIN, struct.pack("<QII", 32 << 20, 4096, 0) + CONFIG, bad_crc=True)
    elif mode == "eof-in-begin":
        data = hello() + begin(32 << 20, CONFIG)[:40]
    elif mode == "wrong-size":
        data = hello() + begin(16 << 20, CONFIG)
    elif mode == "bad-config":
        data = hello() + begin(32 << 20, b'{"machine-config": {"vcpu_count": 0}}')
    else:
        sys.exit("unknown mode " + mode)
    conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(30)
    try:
        answer = b""
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    except socket.timeout:
        pass
    if len(answer) < 36 or answer[:8] != MAGIC:
        print("no answer", flush=True)
        return
    kind, length = struct.unpack("<II", answer[16:24])
    payload = answer[32:32 + length]
    err = struct.unpack("<I", payload[:4])[0] if kind == RESULT else -1
    print("result", err, payload[4:].decode(errors="replace"), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    if sys.argv[1] == "listen":
        listen(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "0")
    elif sys.argv[1] == "relay":
        relay(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "send":
        send(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
