"""A small POP3 client for the scale-out checks and benchmark (Python standard library only).

It speaks exactly what the checks need: a greeting, one-line and multi-line replies, USER/PASS,
APOP, AUTH PLAIN and AUTH CRAM-MD5, from a chosen source address (Linux routes all of 127/8 to
the loopback interface, so a client bound to 127.0.0.2 is a second host as far as the server
can tell), optionally sending a PROXY protocol header first. Every read has a timeout.
"""

import base64
import hashlib
import hmac
import re
import socket

TIMEOUT = 10.0


def split_addr(addr):
    """'127.0.0.1:1100' -> ('127.0.0.1', 1100)."""
    host, port = addr.rsplit(":", 1)
    return host.strip("[]"), int(port)


class Closed(Exception):
    """The server closed the connection where a reply was expected."""


class Pop3:
    def __init__(self, addr, source=None, header=None, greeting=True, timeout=TIMEOUT):
        self.sock = socket.create_connection(
            split_addr(addr),
            timeout=timeout,
            source_address=(source, 0) if source else None,
        )
        self.file = self.sock.makefile("rb")
        if header:
            self.sock.sendall(header)
        self.greeting = self.line() if greeting else None

    def line(self):
        raw = self.file.readline(2048)
        if not raw:
            raise Closed("connection closed by the server")
        return raw.decode("latin-1").rstrip("\r\n")

    def send(self, text):
        self.sock.sendall(text.encode("latin-1") + b"\r\n")

    def cmd(self, text):
        self.send(text)
        return self.line()

    def multi(self, text):
        """A multi-line command: (status line, body lines unstuffed) or (error line, None)."""
        status = self.cmd(text)
        if not status.startswith("+OK"):
            return status, None
        lines = []
        while True:
            line = self.line()
            if line == ".":
                return status, lines
            lines.append(line[1:] if line.startswith(".") else line)

    def timestamp(self):
        match = re.search(r"<[^<>]*>", self.greeting or "")
        return match.group(0) if match else None

    def user_pass(self, user, password):
        reply = self.cmd("USER " + user)
        if not reply.startswith("+OK"):
            return reply
        return self.cmd("PASS " + password)

    def apop(self, user, password):
        digest = hashlib.md5((self.timestamp() + password).encode()).hexdigest()
        return self.cmd("APOP %s %s" % (user, digest))

    def auth_plain(self, user, password):
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        return self.cmd("AUTH PLAIN " + token)

    def auth_cram_md5(self, user, password):
        reply = self.cmd("AUTH CRAM-MD5")
        if not reply.startswith("+ "):
            return reply
        challenge = base64.b64decode(reply[2:])
        digest = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
        return self.cmd(base64.b64encode(("%s %s" % (user, digest)).encode()).decode())

    def login(self, method, user, password):
        return {
            "user": self.user_pass,
            "apop": self.apop,
            "plain": self.auth_plain,
            "cram-md5": self.auth_cram_md5,
        }[method](user, password)

    def subjects(self):
        """The Subject of every message in the maildrop, in order."""
        status, listing = self.multi("LIST")
        if listing is None:
            raise AssertionError("LIST failed: " + status)
        subjects = []
        for entry in listing:
            number = entry.split()[0]
            status, lines = self.multi("TOP %s 0" % number)
            if lines is None:
                raise AssertionError("TOP failed: " + status)
            subject = [l[len("Subject: "):] for l in lines if l.startswith("Subject: ")]
            subjects.append(subject[0] if subject else None)
        return subjects

    def read_all(self):
        """Everything until the server closes (b'' if it closes at once)."""
        chunks = []
        try:
            while True:
                chunk = self.sock.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
        except (ConnectionResetError, socket.timeout):
            pass
        return b"".join(chunks)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def proxy_v1(source, destination):
    """A PROXY protocol v1 header for TCP over IPv4."""
    s_host, s_port = split_addr(source)
    d_host, d_port = split_addr(destination)
    return ("PROXY TCP4 %s %s %d %d\r\n" % (s_host, d_host, s_port, d_port)).encode()


# The PROXY protocol v2 signature, then version 2 + LOCAL, family UNSPEC, no addresses.
PROXY_V2_LOCAL = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00, 0x00, 0x00])
