#!/usr/bin/env python3
"""Writes the interop fixtures: an mbox as a delivery agent leaves it, and the bytes a POP3
client must receive for each message.

Usage: fixtures.py DIR
  DIR/mbox            the maildrop: "From " line, message, separator blank line, per message
  DIR/append.mbox     one more message, to append later (mpop's second UIDL run)
  DIR/expected/NN     message NN as sent by RETR, before byte-stuffing: every line ends in
                      CRLF (LF becomes CRLF, a CRLF stays CRLF, a missing final newline is
                      added)
  DIR/names           "NN description" per message, 01.. in mbox order, then the appended one
"""
import os
import sys


def lines(*text):
    """Joins lines with LF, each ending in LF."""
    return b"".join(t + b"\n" for t in text)


def headers(subject, msgid, extra=()):
    return lines(
        b"From: Sender <sender@example.org>",
        b"To: user@example.net",
        b"Subject: " + subject,
        b"Date: Mon, 23 Nov 2026 09:15:02 +0000",
        b"Message-ID: <" + msgid + b"@example.org>",
        *extra,
    )


def large_body():
    """About 3 MB: base64-like lines of 76 characters, some starting with a dot."""
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    out = []
    for i in range(40000):
        row = bytes(alphabet[(i * 7 + j * 13) % 64] for j in range(76))
        if i % 997 == 0:
            row = b"." + row[1:]
        out.append(row)
    return lines(*out)


# (description, bytes between the "From " line and the separator blank line)
MESSAGES = [
    ("plain message", headers(b"Plain", b"plain") + lines(b"", b"Hello.", b"", b"A second paragraph.")),
    (
        "body lines starting with '.'",
        headers(b"Dots", b"dots")
        + lines(
            b"",
            b".first body line starts with a dot",
            b".",
            b"..",
            b"...",
            b" . not at the start",
            b".\t.tab",
            b"a line",
            b".",
        ),
    ),
    (
        "'>From ' quoted body lines",
        headers(b"Quoted From", b"quoted")
        + lines(
            b"",
            b">From the delivery agent, quoting a line that began with From",
            b">>From twice quoted",
            b"Fromage is not a separator",
            b" From indented",
        ),
    ),
    ("empty body", headers(b"Empty body", b"empty") + b"\n"),
    (
        "CRLF line endings in the mbox",
        headers(b"CRLF on disk", b"crlf").replace(b"\n", b"\r\n")
        + b"\r\nThis message was stored with CRLF line endings.\r\n.dot line\r\n",
    ),
    (
        "8-bit bytes",
        headers(
            b"8-bit \xc3\xbcber Gr\xc3\xbc\xc3\x9fe",
            b"eightbit",
            (b"Content-Type: text/plain; charset=UTF-8", b"Content-Transfer-Encoding: 8bit"),
        )
        + lines(
            b"",
            "Grüße aus dem Süden, ½ € — ✓".encode("utf-8"),
            b"latin-1: caf\xe9 na\xefve \xa9 \xff\xfe\x80\x81\x9f",
            b"high bytes: " + bytes(range(0xA0, 0xFF)),
        ),
    ),
    ("several-MB message", headers(b"Large", b"large") + b"\n" + large_body()),
    (
        "body ending in an empty line",
        headers(b"Trailing blank line", b"trailing") + lines(b"", b"The body ends in an empty line.", b""),
    ),
    # Last in the file: only the last message of an mbox can lack its final newline.
    (
        "no final newline",
        headers(b"No final newline", b"nonewline") + b"\nThe file ends after this line, without a newline",
    ),
]

APPENDED = (
    "message appended after the first fetch",
    headers(b"Appended", b"appended") + lines(b"", b"Delivered after the first fetch."),
)


def from_line(n):
    return b"From sender@example.org Mon Nov 23 09:%02d:02 2026\n" % n


def mbox(messages, first):
    out = []
    for i, (_, content) in enumerate(messages):
        out.append(from_line(first + i) + content)
        # The separator: a delivery agent ends each message with an empty line. The last
        # message has no final newline, so it gets no separator either.
        if content.endswith(b"\n"):
            out.append(b"\n")
    return b"".join(out)


def wire(content):
    """What RETR sends, before byte-stuffing: every line ends in CRLF."""
    text = content.replace(b"\r\n", b"\n")
    if not text.endswith(b"\n"):
        text += b"\n"
    return text.replace(b"\n", b"\r\n")


def main():
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "expected"), exist_ok=True)
    with open(os.path.join(out, "mbox"), "wb") as f:
        f.write(mbox(MESSAGES, 1))
    with open(os.path.join(out, "append.mbox"), "wb") as f:
        f.write(mbox([APPENDED], len(MESSAGES) + 1))
    with open(os.path.join(out, "names"), "w") as names:
        for n, (name, content) in enumerate(MESSAGES + [APPENDED], 1):
            with open(os.path.join(out, "expected", "%02d" % n), "wb") as f:
                f.write(wire(content))
            names.write("%02d %s\n" % (n, name))


if __name__ == "__main__":
    main()
