#!/usr/bin/env python3
"""Runs one POP3 server inetd-style on a loopback TCP connection and prints its UIDL list.

    pop3_ask.py [--user NAME --password SECRET | --preauth] -- SERVER-COMMAND...

Binds 127.0.0.1 on a free port, connects to itself, and starts SERVER-COMMAND with the
accepted socket as its stdin and stdout (as inetd does: a TCP socket, since
solid-pop3d takes a Unix socket for a sign that it is a daemon). Then, as a client: reads the
greeting (none with --preauth: Dovecot's pop3 run by doveconf -e starts logged in and silent),
logs in with USER/PASS if a user is given, sends UIDL and QUIT, and prints "N ID" per message on
stdout. Anything unexpected goes to stderr with a non-zero exit. Every read has a timeout.
"""

import argparse
import socket
import subprocess
import sys

TIMEOUT_SECONDS = 20


class Pop3Error(Exception):
    pass


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Pop3Error("connection closed; got so far: %r" % self.buf[:200])
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def command(self, text, secret=False):
        self.sock.sendall(text.encode() + b"\r\n")
        reply = self.line()
        if not reply.startswith(b"+OK"):
            shown = text.split(" ")[0] + " ***" if secret else text
            raise Pop3Error("%s: %r" % (shown, reply))
        return reply

    def multi(self):
        lines = []
        while True:
            line = self.line()
            if line == b".":
                return lines
            if line.startswith(b".."):
                line = line[1:]
            lines.append(line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--user")
    ap.add_argument("--password", default="")
    ap.add_argument(
        "--preauth",
        action="store_true",
        help="the server starts logged in and sends no greeting (Dovecot's pop3 on stdio)",
    )
    ap.add_argument("server", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.server[1:] if args.server[:1] == ["--"] else args.server
    if not cmd:
        ap.error("no server command")

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname(), timeout=TIMEOUT_SECONDS)
    served, _ = listener.accept()
    listener.close()
    # stderr stays ours: a server's log lines there (Dovecot's) must not mix with the replies.
    proc = subprocess.Popen(cmd, stdin=served, stdout=served, close_fds=True)
    served.close()
    conn = Conn(client)
    status = 0
    try:
        if not args.preauth:
            greeting = conn.line()
            if not greeting.startswith(b"+OK"):
                raise Pop3Error("greeting: %r" % greeting)
        if args.user is not None:
            conn.command("USER " + args.user)
            conn.command("PASS " + args.password, secret=True)
        conn.command("UIDL")
        for line in conn.multi():
            sys.stdout.write(line.decode("latin-1") + "\n")
        conn.command("QUIT")
    except (Pop3Error, OSError) as e:
        sys.stderr.write("pop3_ask: %s: %s\n" % (cmd[0], e))
        status = 1
    finally:
        client.close()
        try:
            proc.wait(timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            sys.stderr.write("pop3_ask: %s did not exit after QUIT\n" % cmd[0])
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
