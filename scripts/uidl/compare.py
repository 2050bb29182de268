#!/usr/bin/env python3
"""Compares pop3d's uidl schemes with the real old servers on the fixture mbox (issue 15).

    compare.py [--servers popa3d,solid-pop3d,dovecot,dovecot-md5,mailutils] [--keep DIR] [-v]
    compare.py --splits     how many messages each server, and pop3d's scanner, see in the
                            mbox of fixture.py --split (informational: never fails)

Writes the fixture (fixture.py), asks each real server for its UIDL list (peers.sh), computes
pop3d's ids with the matching scheme followed by pop3d's own (`SCHEME,pop3d`, through
`pop3d --uidl-report`, the admin's dry run, which shows the ids a session serves), and
classifies each message:

  match      pop3d's final id is the server's id;
  repeat     by design: the server gave an earlier message the same id; pop3d keeps it for
             the first and gives this one another (RFC 1939 wants unique ids);
  refused    by design: the server's id is not a valid RFC 1939 id, or pop3d's scheme
             refuses the header it comes from (malformed, over-long, folded);
  MISMATCH   anything else.

Dovecot and mailutils write into the mbox (X-UID/X-IMAPbase, X-UIDL): their schemes are
computed on the mbox as the server left it, which is what pop3d would serve after the switch.
There is no UW server in Debian 12: the uw line is Dovecot's numbers in UW's order, computed
from the same rewritten mbox, and is marked as such.

Prints one line per scheme with its counts, then "N passed, M failed" (a scheme fails on any
MISMATCH or a different number of messages). Needs root (see peers.sh).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))

SCHEME_OF = {
    "popa3d": "popa3d",
    "solid-pop3d": "solid-pop3d",
    "dovecot": "dovecot",
    "dovecot-md5": "dovecot-md5",
    "mailutils": "x-uidl",
}
# Servers that write their ids into the mbox: pop3d reads the file they left.
REWRITES = {"dovecot", "mailutils"}
VALID_ID = re.compile(r"^[\x21-\x7e]{1,70}$")
POP3D = None  # set by compare()


def run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (" ".join(cmd), p.stderr))
    return p.stdout, p.stderr


def server_ids(server, mbox, out):
    stdout, _ = run([os.path.join(HERE, "peers.sh"), server, mbox, out])
    ids = {}
    for line in stdout.splitlines():
        n, uid = line.split(" ", 1)
        ids[int(n)] = uid
    return ids


def pop3d_binary():
    """The pop3d to ask: $POP3D (run.sh builds it), else a release build made here."""
    if os.environ.get("POP3D"):
        return os.environ["POP3D"]
    run(["cargo", "build", "-q", "--release", "--bin", "pop3d"], cwd=TOP)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(TOP, "target"))
    return os.path.join(target, "release", "pop3d")


def our_ids(scheme, mbox):
    """`pop3d --uidl-report SCHEME,pop3d MBOX`: per message "N ID NAMED-BY", and when the
    first scheme did not name it, what that scheme gave (its id, -absent or -invalid)."""
    stdout, stderr = run([POP3D, "--uidl-report", scheme + ",pop3d", mbox])
    ours = {}
    for line in stdout.splitlines():
        fields = line.split(" ")
        n, final, named = fields[:3]
        candidate = fields[3] if len(fields) > 3 else final
        ours[int(n)] = (final, named, candidate)
    return ours, stderr.strip()


def classify(theirs, ours):
    rows = []
    seen = set()
    for n in sorted(set(theirs) | set(ours)):
        t = theirs.get(n)
        o = ours.get(n)
        if t is None or o is None:
            rows.append((n, "MISMATCH", t, o))
            continue
        final, named, candidate = o
        if final == t:
            kind = "match"
        elif t in seen and candidate == t:
            kind = "repeat"
        elif not VALID_ID.match(t) or candidate == "-invalid":
            kind = "refused"
        else:
            kind = "MISMATCH"
        seen.add(t)
        rows.append((n, kind, t, o))
    return rows


def summarize(label, rows, verbose):
    counts = {}
    for _, kind, _, _ in rows:
        counts[kind] = counts.get(kind, 0) + 1
    total = len(rows)
    line = "%-12s %2d/%d match" % (label, counts.get("match", 0), total)
    for kind in ("repeat", "refused", "MISMATCH"):
        if counts.get(kind):
            line += ", %d %s" % (counts[kind], kind)
    print(line)
    for n, kind, t, o in rows:
        if verbose or kind != "match":
            print("    %2d %-8s server %s  pop3d %s" % (n, kind, t, o))
    return counts.get("MISMATCH", 0) == 0


def count_splits(work, servers):
    mbox = os.path.join(work, "split.mbox")
    run([sys.executable, os.path.join(HERE, "fixture.py"), "--split", mbox])
    ours, _ = our_ids("x-uidl", mbox)  # any scheme: the count is the scanner's
    print("%-12s %d messages" % ("pop3d", len(ours)))
    for server in servers:
        theirs = server_ids(server, mbox, os.path.join(work, "split-after-%s.mbox" % server))
        print("%-12s %d messages" % (server, len(theirs)))
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", default=",".join(SCHEME_OF))
    ap.add_argument("--keep", help="directory to keep the fixture and rewritten mboxes in")
    ap.add_argument("--splits", action="store_true", help="count messages on the split fixture")
    ap.add_argument("-v", "--verbose", action="store_true", help="show matching messages too")
    args = ap.parse_args()
    servers = args.servers.split(",")
    for s in servers:
        if s not in SCHEME_OF:
            ap.error("unknown server %s" % s)

    work = args.keep or tempfile.mkdtemp(prefix="pop3d-uidl-compare.")
    os.makedirs(work, exist_ok=True)
    try:
        return compare(args, servers, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def compare(args, servers, work):
    fixture = os.path.join(work, "fixture.mbox")
    run([sys.executable, os.path.join(HERE, "fixture.py"), fixture])
    global POP3D
    POP3D = pop3d_binary()
    if args.splits:
        return count_splits(work, servers)

    passed = failed = 0
    for server in servers:
        out = os.path.join(work, "after-%s.mbox" % server)
        try:
            theirs = server_ids(server, fixture, out)
            served = out if server in REWRITES else fixture
            ours, log = our_ids(SCHEME_OF[server], served)
        except RuntimeError as e:
            print("%-12s could not run: %s" % (server, e))
            failed += 1
            continue
        ok = summarize("%s (%s)" % (SCHEME_OF[server], server), classify(theirs, ours), args.verbose)
        if args.verbose:
            print("    log: " + log)
        if ok:
            passed += 1
        else:
            failed += 1
        if server == "dovecot":
            # Mail delivered after Dovecot's first session, with forged X-UIDs: what does
            # Dovecot's next session make of them, and does pop3d read the result alike?
            later = os.path.join(work, "later.mbox")
            run([sys.executable, os.path.join(HERE, "fixture.py"), "--later", later])
            second = os.path.join(work, "dovecot-then-later.mbox")
            with open(second, "wb") as f:
                for part in (out, later):
                    with open(part, "rb") as p:
                        f.write(p.read())
            out2 = os.path.join(work, "after-dovecot-second.mbox")
            theirs2 = server_ids("dovecot", second, out2)
            ours2, _ = our_ids("dovecot", out2)
            ok = summarize("dovecot, 2nd session, forged X-UIDs delivered",
                           classify(theirs2, ours2), args.verbose)
            passed += ok
            failed += not ok
            # UW's order of Dovecot's numbers: no UW server to ask in Debian 12.
            uw_theirs = {n: t[8:] + t[:8] for n, t in theirs.items() if len(t) == 16}
            uw_ours, _ = our_ids("uw", out)
            ok = summarize("uw (no server: Dovecot's numbers swapped)", classify(uw_theirs, uw_ours),
                           args.verbose)
            passed += ok
            failed += not ok
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
