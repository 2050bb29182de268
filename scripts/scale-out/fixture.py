"""The scale-out demo and test site: its users, where they live, and pop3d's pre-login CAPA.

    fixture.py setup DIR   writes DIR/a and DIR/b (one backend each: users file, mboxes),
                           DIR/router-users (every user, for pop3d-router --users) and
                           DIR/routes.in (bob and dave on backend B, everyone else on A;
                           site.sh fills in @BACKEND_A@ and @BACKEND_B@ to make DIR/routes)
    fixture.py capa ADDR   prints pop3d's pre-login CAPA (asked from ADDR) as the arguments
                           of nginx's pop3_capabilities, without SASL, which nginx builds
                           from pop3_auth itself
"""

import os
import sys

from pop3client import Pop3

# Which backend holds whom: name -> (backend, password, number of messages).
USERS = {
    "alice": ("a", "wonderland", 3),
    "carol": ("a", "c4r0l pass", 1),
    "erin": ("a", "3r1n", 2),
    "bob": ("b", "builder", 2),
    "dave": ("b", "d4v3:colon", 2),
}
# Benchmark users, one per concurrent client (a maildrop takes one session at a time).
BENCH_USERS = ["bench%02d" % n for n in range(1, 17)]
BENCH_PASSWORD = "bench"

# A client address that no backend trusts as a proxy (any 127/8 address reaches lo).
UNTRUSTED = "127.0.0.3"


def subject(user, n, backend):
    return "%s message %d on backend %s" % (user, n, backend)


def mbox(user, count, backend):
    parts = []
    for n in range(1, count + 1):
        parts.append(
            "From sender@example.org Mon Nov 23 09:15:0%d 2026\n"
            "From: Sender <sender@example.org>\n"
            "To: %s@localhost\n"
            "Subject: %s\n"
            "Message-ID: <%s.%d.%s@example.org>\n"
            "\n"
            "Body of message %d for %s.\n"
            ".A line starting with a dot.\n"
            "\n" % (n, user, subject(user, n, backend), user, n, backend, n, user)
        )
    return "".join(parts)


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def setup(root):
    for backend in ("a", "b"):
        os.makedirs(os.path.join(root, backend, "mail"), exist_ok=True)
    lines = {"a": [], "b": []}
    everyone = []
    for user, (backend, password, count) in USERS.items():
        lines[backend].append("%s:%s" % (user, password))
        everyone.append("%s:%s" % (user, password))
        write(os.path.join(root, backend, "mail", user), mbox(user, count, backend))
    for user in BENCH_USERS:
        lines["a"].append("%s:%s" % (user, BENCH_PASSWORD))
        everyone.append("%s:%s" % (user, BENCH_PASSWORD))
        write(os.path.join(root, "a", "mail", user), mbox(user, 1, "a"))
    header = "# name:password[:/path/to/mbox]\n"
    for backend in ("a", "b"):
        write(os.path.join(root, backend, "users"), header + "\n".join(lines[backend]) + "\n")
    write(os.path.join(root, "router-users"), header + "\n".join(everyone) + "\n")
    routes = ["# user:address:port (an address: nginx does not resolve names)"]
    routes += [
        "%s:@BACKEND_B@" % user for user, (backend, _, _) in USERS.items() if backend == "b"
    ]
    routes.append("*:@BACKEND_A@")
    write(os.path.join(root, "routes.in"), "\n".join(routes) + "\n")


def capabilities(addr):
    with Pop3(addr, source=UNTRUSTED) as c:
        status, lines = c.multi("CAPA")
        c.cmd("QUIT")
    if lines is None:
        raise SystemExit("CAPA failed: " + status)
    return " ".join('"%s"' % l for l in lines if not l.startswith("SASL"))


def main(argv):
    if len(argv) == 3 and argv[1] == "setup":
        setup(argv[2])
    elif len(argv) == 3 and argv[1] == "capa":
        print(capabilities(argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
