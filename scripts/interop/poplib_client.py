#!/usr/bin/env python3
"""Drives pop3d with Python's poplib, through every poplib method that maps to a command
pop3d has (user, pass_, apop, stat, list, retr, top, uidl, dele, rset, noop, capa, quit),
and compares what it gets with the fixtures. Prints "ok   ..." / "FAIL ..." lines; exits
1 if any check failed.

Usage: poplib_client.py LABEL HOST PORT USER PASSWORD FIXTURES [hashed]
The user's maildrop must hold the fixture mbox; on success it ends without message 1.
"hashed": the server holds no shared secret for the user (--system-users, a {CRYPT}
password), so CAPA offers PLAIN without CRAM-MD5 and APOP is refused like a wrong password;
the later session logs in with USER and PASS instead.
"""
import os
import poplib
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ left in scripts/lib
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from check_lines import Checks  # noqa: E402  (scripts/lib/check_lines.py)

check = Checks()


def refused(label, what, call):
    """The call must fail with -ERR (poplib.error_proto), the session going on."""
    try:
        resp = call()
    except poplib.error_proto as e:
        check(str(e).startswith("b'-ERR"), "%s: %s is refused with -ERR" % (label, what), e)
    else:
        check(False, "%s: %s is refused with -ERR" % (label, what), resp)


def main():
    label, host, port, user, password, fixtures = sys.argv[1:7]
    hashed = sys.argv[7:] == ["hashed"]
    port = int(port)
    names = []
    expected = []
    with open(os.path.join(fixtures, "names")) as f:
        for line in f:
            num, name = line.rstrip("\n").split(" ", 1)
            names.append(name)
            with open(os.path.join(fixtures, "expected", num), "rb") as m:
                expected.append(m.read())
    # The last fixture is appended later in another test; this maildrop lacks it.
    names, expected = names[:-1], expected[:-1]
    count = len(expected)
    sizes = [len(m) for m in expected]

    # A wrong password fails, in a session of its own.
    p = poplib.POP3(host, port, timeout=30)
    p.user(user)
    try:
        p.pass_(password + "x")
        check(False, "%s: pass_ with a wrong password is refused" % label)
    except poplib.error_proto as e:
        check(True, "%s: pass_ with a wrong password is refused (%s)" % (label, e))
    p.close()

    p = poplib.POP3(host, port, timeout=30)
    welcome = p.getwelcome()
    check(
        re.match(rb"\+OK .*<[^<>@]+@[^<>@]+>", welcome) is not None,
        "%s: greeting carries an APOP timestamp" % label,
        welcome,
    )
    caps = p.capa()
    want_caps = ["TOP", "UIDL", "USER", "RESP-CODES", "PIPELINING", "SASL"]
    want_sasl = ["PLAIN"] if hashed else ["PLAIN", "CRAM-MD5"]
    check(
        all(c in caps for c in want_caps) and caps.get("SASL", []) == want_sasl,
        "%s: capa lists %s with %s" % (label, " ".join(want_caps), " and ".join(want_sasl)),
        caps,
    )
    check(p.user(user).startswith(b"+OK"), "%s: user" % label)
    check(p.pass_(password).startswith(b"+OK"), "%s: pass_" % label)
    check(p.stat() == (count, sum(sizes)), "%s: stat" % label, (p.stat(), (count, sum(sizes))))
    resp, listing, _ = p.list()
    want = [b"%d %d" % (i + 1, s) for i, s in enumerate(sizes)]
    check(resp.startswith(b"+OK") and listing == want, "%s: list" % label, (resp, listing))
    check(p.list(3) == b"+OK 3 %d" % sizes[2], "%s: list(3)" % label, p.list(3))
    for i, (name, want) in enumerate(zip(names, expected)):
        resp, lines, octets = p.retr(i + 1)
        got = b"".join(line + b"\r\n" for line in lines)
        detail = None
        if got != want:
            detail = "lengths %d %d; first lines %r / %r" % (len(want), len(got), want[:200], got[:200])
        check(
            resp.startswith(b"+OK") and got == want and octets == len(want),
            "%s: retr(%d) (%s) intact" % (label, i + 1, name),
            detail,
        )
    for num, n in [(2, 0), (2, 3), (4, 0), (9, 100), (7, 5)]:
        resp, lines, _ = p.top(num, n)
        full = expected[num - 1]
        head, sep, body = full.partition(b"\r\n\r\n")
        body_lines = body.split(b"\r\n")[:-1] if body else []
        want = head + sep + b"".join(line + b"\r\n" for line in body_lines[:n])
        got = b"".join(line + b"\r\n" for line in lines)
        check(resp.startswith(b"+OK") and got == want, "%s: top(%d, %d)" % (label, num, n), (want[-80:], got[-80:]))
    resp, uid_lines, _ = p.uidl()
    ids = [line.split(b" ", 1)[1] for line in uid_lines]
    check(
        resp.startswith(b"+OK")
        and [line.split(b" ", 1)[0] for line in uid_lines] == [b"%d" % i for i in range(1, count + 1)]
        and len(set(ids)) == count
        and all(re.fullmatch(rb"[\x21-\x7e]{1,70}", u) for u in ids),
        "%s: uidl lists %d distinct valid ids" % (label, count),
        uid_lines,
    )
    check(p.uidl(5) == b"+OK 5 " + ids[4], "%s: uidl(5) agrees with uidl()" % label, p.uidl(5))
    check(p.noop().startswith(b"+OK"), "%s: noop" % label)
    check(p.dele(1).startswith(b"+OK"), "%s: dele(1)" % label)
    check(p.stat() == (count - 1, sum(sizes) - sizes[0]), "%s: stat after dele(1)" % label, p.stat())
    refused(label, "retr(1) of a deleted message", lambda: p.retr(1))
    refused(label, "list(1) of a deleted message", lambda: p.list(1))
    refused(label, "dele(1) twice", lambda: p.dele(1))
    refused(label, "retr(%d) past the last message" % (count + 1), lambda: p.retr(count + 1))
    check(p.rset().startswith(b"+OK"), "%s: rset" % label)
    check(p.stat() == (count, sum(sizes)), "%s: stat after rset" % label, p.stat())
    resp, lines, _ = p.retr(1)
    check(b"".join(line + b"\r\n" for line in lines) == expected[0], "%s: retr(1) after rset" % label)
    check(p.dele(1).startswith(b"+OK"), "%s: dele(1) again" % label)
    check(p.quit().startswith(b"+OK"), "%s: quit commits the deletion" % label)

    # APOP, in a new session: message 1 is gone and the other ids are unchanged. Without a
    # shared secret APOP fails (in a session of its own: the failure delays it) and the
    # later session logs in with USER and PASS.
    if hashed:
        p = poplib.POP3(host, port, timeout=30)
        refused(label, "apop without a shared secret", lambda: p.apop(user, password))
        p.close()
        p = poplib.POP3(host, port, timeout=30)
        check(p.user(user).startswith(b"+OK") and p.pass_(password).startswith(b"+OK"),
              "%s: user and pass_ again" % label)
    else:
        p = poplib.POP3(host, port, timeout=30)
        check(p.apop(user, password).startswith(b"+OK"), "%s: apop" % label)
    check(p.stat() == (count - 1, sum(sizes) - sizes[0]), "%s: stat after quit" % label, p.stat())
    _, later, _ = p.uidl()
    check(
        [line.split(b" ", 1)[1] for line in later] == ids[1:],
        "%s: uidl keeps each message's id in a later session" % label,
        (ids, later),
    )
    resp, lines, _ = p.retr(1)
    check(b"".join(line + b"\r\n" for line in lines) == expected[1], "%s: retr(1) is the old message 2" % label)
    check(p.quit().startswith(b"+OK"), "%s: quit" % label)
    check.exit()


if __name__ == "__main__":
    main()
