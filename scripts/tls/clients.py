#!/usr/bin/env python3
"""Python's poplib for the TLS suite (scripts/tls/run.sh). Prints "ok - ..." / "not ok - ..."
lines and exits 1 if any check failed. Certificates are always verified against CAFILE.

  clients.py fetch ssl|stls LABEL HOST PORT SERVERNAME USER PASSWORD CAFILE OUTDIR [SOURCE]
      POP3_SSL (TLS from the first byte) or POP3 + stls(); logs in with USER/PASS, RETRs
      every message into OUTDIR/NN and quits without deleting. SOURCE: local address to
      connect from (a second loopback address, so pop3d's log shows this client's).
  clients.py open LABEL HOST PORT USER PASSWORD
      A client off pop3d's host, straight to pop3d without TLS: CAPA offers neither USER nor
      SASL PLAIN; USER, PASS and AUTH PLAIN are refused with -ERR [AUTH] saying to use TLS;
      APOP logs in.
  clients.py apop LABEL HOST PORT USER PASSWORD
      APOP login, STAT, QUIT (clear-text POP3 without the password on the wire).
"""
import os
import poplib
import socket
import ssl
import sys

sys.dont_write_bytecode = True  # no __pycache__ left in scripts/lib
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from check_lines import Checks  # noqa: E402  (scripts/lib/check_lines.py)

check = Checks("ok - ", "not ok - ")


def context(cafile):
    """Verification on, hostname checked: the defaults, with the test CA as the only root."""
    ctx = ssl.create_default_context(cafile=cafile)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    return ctx


class SourcePOP3(poplib.POP3):
    """poplib.POP3 connecting from a chosen local address."""

    source = None

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, (self.source, 0) if self.source else None)


class SourcePOP3_SSL(poplib.POP3_SSL):
    source = None

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, (self.source, 0) if self.source else None)
        return self.context.wrap_socket(sock, server_hostname=self.host)


def fetch(mode, label, host, port, servername, user, password, cafile, outdir, source=None):
    ctx = context(cafile)
    # The name the certificate must carry is the one connected to; "localhost" resolves to
    # the loopback addresses, and SOURCE picks which local address the connection leaves from.
    if mode == "ssl":
        SourcePOP3_SSL.source = source
        p = SourcePOP3_SSL(servername, int(port), context=ctx, timeout=60)
    else:
        SourcePOP3.source = source
        p = SourcePOP3(servername, int(port), timeout=60)
        caps = p.capa()
        check("STLS" in caps, "%s: capa before tls offers STLS" % label, caps)
        check("USER" not in caps, "%s: capa before tls offers no USER" % label, caps)
        check(p.stls(ctx).startswith(b"+OK"), "%s: stls" % label)
    peer = p.sock.getpeercert()
    check(peer is not None, "%s: the server certificate verified against the test CA" % label)
    check(p.user(user).startswith(b"+OK"), "%s: user" % label)
    check(p.pass_(password).startswith(b"+OK"), "%s: pass_" % label)
    count, _ = p.stat()
    os.makedirs(outdir, exist_ok=True)
    for n in range(1, count + 1):
        _, lines, _ = p.retr(n)
        with open(os.path.join(outdir, "%02d" % n), "wb") as f:
            f.write(b"".join(line + b"\r\n" for line in lines))
    check(count > 0, "%s: retr of %d messages" % (label, count))
    check(p.quit().startswith(b"+OK"), "%s: quit" % label)


def refused(label, what, call):
    want = b"-ERR [AUTH] plaintext authentication disallowed on non-secure (SSL/TLS) connections"
    try:
        resp = call()
    except poplib.error_proto as e:
        reply = e.args[0] if e.args else b""
        check(reply.startswith(want) and b"TLS" in reply, "%s: %s is refused, use TLS" % (label, what), reply)
    else:
        check(False, "%s: %s is refused" % (label, what), resp)


def open_client(label, host, port, user, password):
    p = poplib.POP3(host, int(port), timeout=30)
    caps = p.capa()
    check("USER" not in caps, "%s: capa offers no USER" % label, caps)
    check("PLAIN" not in caps.get("SASL", []), "%s: capa offers no SASL PLAIN" % label, caps)
    check("CRAM-MD5" in caps.get("SASL", []), "%s: capa still offers CRAM-MD5" % label, caps)
    refused(label, "USER", lambda: p.user(user))
    refused(label, "PASS", lambda: p.pass_(password))
    import base64

    plain = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    refused(label, "AUTH PLAIN", lambda: p._shortcmd("AUTH PLAIN " + plain))
    p.quit()
    apop(label, host, port, user, password)


def apop(label, host, port, user, password):
    p = poplib.POP3(host, int(port), timeout=30)
    check(p.apop(user, password).startswith(b"+OK"), "%s: apop logs in" % label)
    count, _ = p.stat()
    check(count > 0, "%s: stat after apop sees %d messages" % (label, count))
    p.quit()


def main():
    command, args = sys.argv[1], sys.argv[2:]
    try:
        if command == "fetch":
            fetch(*args)
        elif command == "open":
            open_client(*args)
        elif command == "apop":
            apop(*args)
        else:
            sys.exit("unknown command " + command)
    except (OSError, poplib.error_proto, ssl.SSLError) as e:
        check(False, "%s: %s" % (args[1] if command == "fetch" else args[0], e))
    check.exit()


if __name__ == "__main__":
    main()
