#!/usr/bin/env python3
"""Writes the mbox of issue 15's comparison: the awkward cases for every unique-id scheme.

    fixture.py OUT            the fixture
    fixture.py --split OUT    an mbox on whose message boundaries the servers disagree (see
                              SPLIT_CASES); compare.py --splits counts what each server sees
    fixture.py --later OUT    only the messages "delivered after the switch" (forged X-UIDs),
                              numbered on from the fixture's, to append to an mbox that
                              Dovecot has rewritten

Deterministic. Every message starts with a well-formed "From " line of at least 28 bytes
after an LF-only empty line (or at the start of the file), and no body line starts with
"From ": so popa3d, solid-pop3d, Dovecot, mailutils and pop3d all split the file into the
same messages (see compare.py for where their splitting rules differ). Prints one line per
message on stderr: its number and what it tests.
"""

import sys


def msg(n, headers, body, eol="\n"):
    """One message: its From line, header lines, empty line, body lines, separator."""
    sender = "sender%d@example.org" % n
    from_line = "From %s Sat Jan  1 00:%02d:%02d 2000\n" % (sender, n // 60, n % 60)
    text = "".join(h + eol for h in headers) + eol + "".join(b + eol for b in body)
    # The separator is always an LF-only empty line, as a Unix delivery agent writes it.
    return from_line + text + "\n"


CASES = []


def case(what, headers, body, eol="\n"):
    CASES.append((what, headers, body, eol))


def received(queue_id):
    """A folded Received header as Postfix writes it, with its queue id."""
    return [
        "Received: from mx.example.org (mx.example.org [192.0.2.1])",
        "\tby mail.example.net (Postfix) with ESMTP id %s;" % queue_id,
        "        Sat, 1 Jan 2000 00:00:00 +0000 (UTC)",
    ]


def build():
    case(
        "plain message, folded Received, Message-ID, Date, Subject",
        received("4B2C1")
        + [
            "Received: from relay.example.com by mx.example.org; Fri, 31 Dec 1999 23:59:59 +0000",
            "Date: Sat, 1 Jan 2000 00:00:00 +0000",
            "Message-ID: <1@example.org>",
            "From: Alice <alice@example.org>",
            "To: bob@example.net",
            "Subject: first",
        ],
        ["Hello.", ">From the quoted line.", ""],
    )
    case(
        "Message-Id (lowercase d), no Received",
        ["Date: Sat, 1 Jan 2000 00:00:01 +0000", "Message-Id: <2@example.org>", "Subject: second"],
        ["Body two."],
    )
    case(
        "Message-ID and Date before Received; Delivered-To; X-Delivery-ID",
        [
            "Message-ID: <3@example.org>",
            "Date: Sat, 1 Jan 2000 00:00:02 +0000",
            "Delivered-To: bob@example.net",
            "Received: by localhost; Sat, 1 Jan 2000 00:00:02 +0000",
            "Delivered-To: bob+extra@example.net",
            "X-Delivery-ID: 7f3a.1",
            "Date: Sun, 2 Jan 2000 00:00:02 +0000",
            "Subject: third",
        ],
        ["Body three."],
    )
    case(
        "Status and X-Status headers (a MUA's flags)",
        received("4B2C4")
        + [
            "Date: Sat, 1 Jan 2000 00:00:03 +0000",
            "Message-ID: <4@example.org>",
            "Subject: fourth",
            "Status: RO",
            "X-Status: A",
            "X-Keywords: $Label1",
        ],
        ["Body four."],
    )
    case(
        "CRLF lines throughout; Delivered-To after the CRLF empty line",
        [
            "Received: from win.example.com by mx.example.org;",
            " Sat, 1 Jan 2000 00:00:04 +0000",
            "Date: Sat, 1 Jan 2000 00:00:04 +0000",
            "Message-ID: <5@example.org>",
            "Subject: fifth, CRLF",
        ],
        ["Delivered-To: in-the-body@example.net", "Fifth body."],
        eol="\r\n",
    )
    case(
        "lowercase and uppercase names; x-delivery-id lowercase",
        [
            "received: from lower.example.com by mx.example.org; Sat, 1 Jan 2000 00:00:05 +0000",
            "date: Sat, 1 Jan 2000 00:00:05 +0000",
            "message-id: <6@example.org>",
            "x-delivery-id: lower",
            "X-DELIVERY-ID: UPPER",
            "subject: sixth",
        ],
        ["Body six."],
    )
    case(
        "value spacing: two spaces, a tab, space before the colon",
        [
            "Date:  Sat, 1 Jan 2000 00:00:06 +0000",
            "Message-ID:\t<7@example.org>",
            "Delivered-To : spaced@example.net",
            "Subject: seventh",
        ],
        ["Body seven."],
    )
    case(
        "a header line longer than 128 bytes",
        [
            "Received: from long.example.com (" + "x" * 300 + ")",
            "\tby mx.example.org; Sat, 1 Jan 2000 00:00:07 +0000",
            "Subject: " + "long subject " * 20,
        ],
        ["Body eight."],
    )
    # Byte-identical copies get the same From line too: the generator numbers From lines by
    # case, so the copy repeats case 1's text exactly.
    case("DUPLICATE of message 1 (byte-identical)", None, None)
    case(
        "no hashed header at all (popa3d and solid-pop3d: the digest of nothing)",
        ["From: carol@example.org", "To: bob@example.net"],
        ["Header-less one."],
    )
    case(
        "no hashed header, another body (same ids on popa3d, solid-pop3d, dovecot-md5)",
        ["From: dave@example.org", "To: bob@example.net"],
        ["Header-less two."],
    )
    case(
        "forged X-UIDL, 100 characters",
        ["Subject: over-long x-uidl", "Message-ID: <12@example.org>", "X-UIDL: " + "u" * 100],
        ["Body."],
    )
    case(
        "forged X-UIDL with a space",
        ["Subject: spaced x-uidl", "Message-ID: <13@example.org>", "X-UIDL: two words"],
        ["Body."],
    )
    case(
        "forged X-UIDL, valid, first of two",
        ["Subject: forged x-uidl one", "Message-ID: <14@example.org>", "X-UIDL: forged-same-id"],
        ["Body A."],
    )
    case(
        "forged X-UIDL, valid, same value again",
        ["Subject: forged x-uidl two", "Message-ID: <15@example.org>", "X-UIDL: forged-same-id"],
        ["Body B."],
    )
    case(
        "folded X-UIDL",
        ["Subject: folded x-uidl", "Message-ID: <16@example.org>", "X-UIDL: folded", " continued"],
        ["Body."],
    )
    case(
        "forged X-UID, too large for 32 bits",
        ["Subject: huge x-uid", "Message-ID: <17@example.org>", "X-UID: 99999999999"],
        ["Body."],
    )
    case(
        "forged X-UID, not a number",
        ["Subject: bad x-uid", "Message-ID: <18@example.org>", "X-UID: abc"],
        ["Body."],
    )
    case(
        "forged X-UID 3 and a forged X-IMAPbase in a later message",
        ["Subject: forged x-uid", "Message-ID: <19@example.org>", "X-UID: 3", "X-IMAPbase: 12345 99"],
        ["Body."],
    )
    case("empty body", ["Subject: empty body", "Date: Sat, 1 Jan 2000 00:00:19 +0000"], [])


def build_later():
    """Mail delivered after Dovecot has written its X-IMAPbase/X-UID headers: forged X-UIDs
    that the next Dovecot session must judge (appended by compare.py to Dovecot's mbox)."""
    n = len(CASES)
    case(
        "LATER: forged X-UID equal to message 3's",
        ["Subject: later dup x-uid", "Message-ID: <%d@example.org>" % (n + 1), "X-UID: 3"],
        ["Body."],
    )
    case(
        "LATER: forged X-UID far above uidnext",
        ["Subject: later big x-uid", "Message-ID: <%d@example.org>" % (n + 2), "X-UID: 1000"],
        ["Body."],
    )
    case(
        "LATER: forged X-UID, too large for 32 bits",
        ["Subject: later huge x-uid", "Message-ID: <%d@example.org>" % (n + 3),
         "X-UID: 99999999999"],
        ["Body."],
    )
    case(
        "LATER: no X-UID",
        ["Subject: later plain", "Message-ID: <%d@example.org>" % (n + 4)],
        ["Body."],
    )


# Six messages; where each server's splitting rule sees a boundary differently (measured with
# the Debian 12 packages by compare.py --splits: popa3d 5, solid-pop3d 7, Dovecot 6, mailutils
# 3 messages):
#  1. a body line "From the desk ..." after an empty line: not a separator line, but popa3d
#     (any "From " after an LF-only empty line) and solid-pop3d (any "From " line of 28 bytes
#     or more) split there;
#  2. a separator with no empty line before it: popa3d does not split there;
#  3. a separator after a CRLF empty line: popa3d does not split there (it wants LF-only).
SPLIT_CASES = [
    "From a@example.org Sat Jan  1 00:00:01 2000\nSubject: one\nMessage-ID: <1@x>\n\n"
    "body\n\nFrom the desk of nobody, who writes prose\nmore\n\n",
    "From b@example.org Sat Jan  1 00:00:02 2000\nSubject: two\nMessage-ID: <2@x>\n\nbody\n",
    "From c@example.org Sat Jan  1 00:00:03 2000\nSubject: three\nMessage-ID: <3@x>\n\n"
    "body three\n\n",
    "From d@example.org Sat Jan  1 00:00:04 2000\r\nSubject: four\r\nMessage-ID: <4@x>\r\n"
    "\r\nbody\r\n\r\n",
    "From e@example.org Sat Jan  1 00:00:05 2000\r\nSubject: five\r\nMessage-ID: <5@x>\r\n"
    "\r\nbody five\r\n\n",
    "From f@example.org Sat Jan  1 00:00:06 2000\nSubject: six\nMessage-ID: <6@x>\n\nend\n",
]


def main():
    args = sys.argv[1:]
    if args[:1] == ["--split"] and len(args) == 2:
        with open(args[1], "wb") as f:
            f.write("".join(SPLIT_CASES).encode("latin-1"))
        return 0
    later = args[:1] == ["--later"]
    if later:
        args = args[1:]
    if len(args) != 1:
        sys.stderr.write(__doc__)
        return 2
    build()
    skip = 0
    if later:
        skip = len(CASES)
        build_later()
    out = []
    first = None
    for i, (what, headers, body, eol) in enumerate(CASES, 1):
        if i <= skip:
            continue
        if headers is None:
            text = first
        else:
            text = msg(i, headers, body, eol)
        if first is None:
            first = text
        out.append(text)
        sys.stderr.write("%2d %s\n" % (i, what))
    with open(args[0], "wb") as f:
        f.write("".join(out).encode("latin-1"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
