#!/usr/bin/env python3
"""TLS figures for scripts/bench.sh: POP3 sessions per second straight to pop3d or through a
TLS front, with one client for all three so that only the path differs, and what one TLS
handshake costs. Prints one tab-separated line per figure for bench.sh to show.

  tls.py sessions LABEL HOST:PORT USER_PREFIX USERS PASSWORD CLIENTS SECONDS [CAFILE]
      CLIENTS threads each loop over: connect, (TLS handshake, certificate checked against
      CAFILE), greeting, USER/PASS, STAT, QUIT. The ssl module releases the GIL in the
      handshake and in socket calls, so the threads overlap where the time goes.
      Prints: sessions LABEL SESSIONS_PER_SECOND ERRORS
  tls.py handshake LABEL HOST:PORT COUNT CAFILE [FRONT_PID]
      COUNT sequential TCP connects plus TLS handshakes, then COUNT plain TCP connects to the
      same port, and the front's CPU time over the TLS ones (from /proc, when FRONT_PID).
      Prints: handshake LABEL MS_PER_HANDSHAKE_WALL MS_CPU_IN_FRONT
"""
import os
import socket
import ssl
import sys
import threading
import time


def split(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


# Every connection leaves from 127.0.0.2: the fronts are not the client, and pop3d trusts
# 127.0.0.1 (where stunnel and nginx connect from) to send a PROXY header first.
SOURCE = ("127.0.0.2", 0)


def session(addr, ctx, user, password):
    sock = socket.create_connection(addr, timeout=10, source_address=SOURCE)
    # Without it, the first command written right after the handshake's last message waits
    # for that message's delayed ACK (Nagle), some 40 ms, and the figure measures that.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if ctx:
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    f = sock.makefile("rb")
    ok = f.readline().startswith(b"+OK")
    for command in (b"USER " + user.encode(), b"PASS " + password.encode(), b"STAT", b"QUIT"):
        sock.sendall(command + b"\r\n")
        ok = f.readline().startswith(b"+OK") and ok
    f.close()
    sock.close()
    return ok


def sessions(label, addr, prefix, users, password, clients, seconds, cafile=None):
    addr = split(addr)
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    deadline = time.monotonic() + float(seconds)
    counts = [0] * int(clients)
    errors = [0] * int(clients)

    def worker(i):
        n = i
        while time.monotonic() < deadline:
            try:
                if session(addr, ctx, "%s%d" % (prefix, n % int(users)), password):
                    counts[i] += 1
                else:
                    errors[i] += 1
            except (OSError, ssl.SSLError):
                errors[i] += 1
            n += int(clients)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(int(clients))]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    print("sessions\t%s\t%.0f\t%d" % (label, sum(counts) / elapsed, sum(errors)))


def cpu_seconds(pid):
    """utime + stime of a process and its threads, in seconds."""
    fields = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def handshake(label, addr, count, cafile, front_pid=None):
    addr = split(addr)
    ctx = ssl.create_default_context(cafile=cafile)
    count = int(count)
    cpu_before = cpu_seconds(front_pid) if front_pid else None
    start = time.monotonic()
    for _ in range(count):
        plain = socket.create_connection(addr, timeout=10, source_address=SOURCE)
        sock = ctx.wrap_socket(plain, server_hostname="localhost")
        sock.close()
    tls = time.monotonic() - start
    cpu = cpu_seconds(front_pid) - cpu_before if front_pid else float("nan")
    start = time.monotonic()
    for _ in range(count):
        socket.create_connection(addr, timeout=10, source_address=SOURCE).close()
    plain = time.monotonic() - start
    print("handshake\t%s\t%.2f\t%.2f" % (label, (tls - plain) * 1000 / count, cpu * 1000 / count))


if __name__ == "__main__":
    {"sessions": sessions, "handshake": handshake}[sys.argv[1]](*sys.argv[2:])
