#!/usr/bin/env python3
"""Compares what a client stored with the fixtures; prints "ok   ..." / "FAIL ..." lines
and exits 1 if any check failed.

  compare.py messages LABEL FIXTURES [--lf] [--added HEADER] [--only NN,NN] FILE...
      Each expected message (all, or those --only names) must be among FILEs exactly once,
      byte for byte, and there must be no other FILE. --lf: the client stores messages with
      LF line endings (as its documentation says), so CRLF in the expectation becomes LF.
      --added HEADER: the client puts this header field first in every message it stores
      (as its documentation says); it is removed from each FILE before the comparison.
  compare.py top LABEL FIXTURES NN LINES FILE
      FILE holds what TOP NN LINES sent (after dot-unstuffing): the header block, the empty
      line and at most LINES body lines, each ending in CRLF.
  compare.py list LABEL FIXTURES FILE
      FILE holds LIST's lines ("n octets"): every message, with the octets of its expectation.
  compare.py uidl LABEL FIXTURES FILE [FILE2]
      FILE holds UIDL's lines: one per message, numbered 1.., ids of 1 to 70 characters in
      0x21..0x7E, all different; with FILE2 (a later session), the same list again.
"""
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ left in scripts/lib
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from check_lines import Checks  # noqa: E402  (scripts/lib/check_lines.py)

check = Checks()


def load(fixtures):
    names = {}
    with open(os.path.join(fixtures, "names")) as f:
        for line in f:
            num, name = line.rstrip("\n").split(" ", 1)
            with open(os.path.join(fixtures, "expected", num), "rb") as m:
                names[num] = (name, m.read())
    return names


def read(path):
    with open(path, "rb") as f:
        return f.read()


def first_difference(want, got):
    """A short description of where two byte strings part."""
    i = 0
    while i < min(len(want), len(got)) and want[i] == got[i]:
        i += 1
    return "lengths: expected %d, got %d; first difference at byte %d\n" "expected: %r\ngot:      %r" % (
        len(want),
        len(got),
        i,
        want[max(0, i - 40) : i + 40],
        got[max(0, i - 40) : i + 40],
    )


def strip_added(data, name):
    """Removes one leading header field NAME (with its continuation lines), if there."""
    m = re.match(rb"%s:[^\n]*\n([ \t][^\n]*\n)*" % re.escape(name), data, re.I)
    return data[m.end():] if m else data


def message_id(data):
    m = re.search(rb"^Message-ID: (<[^>\r\n]*>)", data, re.M | re.I)
    return m.group(1) if m else None


def cmd_messages(label, fixtures, args):
    lf = False
    only = None
    added = None
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--lf":
            lf = True
        elif opt == "--added":
            added = args.pop(0).encode()
        elif opt == "--only":
            only = args.pop(0).split(",")
        else:
            sys.exit("unknown option " + opt)
    expected = load(fixtures)
    if only is None:
        # The appended message is in the fixtures but not in the first mbox.
        only = sorted(expected)[:-1]
    stored = [(path, read(path)) for path in args]
    if added is not None:
        stored = [(path, strip_added(data, added)) for path, data in stored]
    check(
        len(stored) == len(only),
        "%s: stored %d messages (expected %d)" % (label, len(stored), len(only)),
    )
    for num in only:
        name, want = expected[num]
        if lf:
            want = want.replace(b"\r\n", b"\n")
        match = [i for i, (_, got) in enumerate(stored) if got == want]
        if match:
            stored.pop(match[0])
            check(True, "%s: message %s (%s) intact" % (label, num, name))
            continue
        # Explain with the stored message that has the same Message-ID, if any.
        same = [(p, got) for p, got in stored if message_id(got) == message_id(want)]
        detail = "no stored message has its Message-ID"
        if same:
            detail = "%s:\n%s" % (same[0][0], first_difference(want, same[0][1]))
            stored = [(p, got) for p, got in stored if p != same[0][0]]
        check(False, "%s: message %s (%s) intact" % (label, num, name), detail)
    for path, _ in stored:
        check(False, "%s: unexpected extra message %s" % (label, path))


def cmd_top(label, fixtures, args):
    num, count, path = args
    name, full = load(fixtures)[num]
    head, sep, body = full.partition(b"\r\n\r\n")
    body_lines = body.split(b"\r\n")[:-1] if body else []
    want = head + sep + b"".join(line + b"\r\n" for line in body_lines[: int(count)])
    got = read(path)
    check(
        got == want,
        "%s: TOP %d %s of message %s (%s)" % (label, int(num), count, num, name),
        None if got == want else first_difference(want, got),
    )


def cmd_list(label, fixtures, args):
    (path,) = args
    expected = load(fixtures)
    nums = sorted(expected)[:-1]
    want = "".join("%d %d\r\n" % (int(n), len(expected[n][1])) for n in nums).encode()
    got = read(path)
    check(got == want, "%s: LIST gives every message with its size in octets" % label,
          None if got == want else "expected %r\ngot      %r" % (want, got))


def cmd_uidl(label, fixtures, args):
    expected = load(fixtures)
    count = len(expected) - 1
    got = read(args[0])
    rows = [line.split(b" ") for line in got.split(b"\r\n")[:-1]] if got.endswith(b"\r\n") else []
    good = (
        len(rows) == count
        and all(len(r) == 2 for r in rows)
        and [r[0] for r in rows] == [str(i).encode() for i in range(1, count + 1)]
        and all(re.fullmatch(rb"[\x21-\x7e]{1,70}", r[1]) for r in rows)
        and len({r[1] for r in rows}) == count
    )
    check(good, "%s: UIDL lists %d distinct valid unique ids" % (label, count), None if good else repr(got))
    if len(args) > 1:
        again = read(args[1])
        check(again == got, "%s: UIDL is the same in a later session" % label,
              None if again == got else "first  %r\nlater  %r" % (got, again))


def main():
    cmd, label, fixtures, *args = sys.argv[1:]
    {"messages": cmd_messages, "top": cmd_top, "list": cmd_list, "uidl": cmd_uidl}[cmd](label, fixtures, args)
    check.exit()


if __name__ == "__main__":
    main()
