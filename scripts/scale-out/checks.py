"""One named check of the scale-out site per run: `checks.py NAME`, exit status 0 if it holds.

scripts/scale-out/run.sh starts the site (scripts/scale-out/site.sh) and passes it in SCALE_*
variables: SCALE_DIR (the site's directory, as fixture.py setup wrote it), SCALE_PROXY (nginx in
front of pop3d-router --users), SCALE_PROXY_ROUTE_ONLY (nginx in front of a route-only
pop3d-router), SCALE_BACKEND_A and SCALE_BACKEND_B (the pop3d backends, which trust 127.0.0.1
as a PROXY protocol sender). `checks.py list` prints every name in the order they must run.
"""

import os
import re
import subprocess
import sys
import time

from pop3client import PROXY_V2_LOCAL, Closed, Pop3, proxy_v1
from fixture import USERS, UNTRUSTED, subject

# The client the real-address checks pretend to be, and a second one.
CLIENT = "127.0.0.2"
OTHER_CLIENT = "127.0.0.4"

ENV = os.environ

_login_failed = []


def login_failed():
    """pop3d's own refusal of a wrong password, asked of a backend directly once, so that the
    checks compare the proxy's refusals with it rather than with a copy of its words."""
    if not _login_failed:
        with Pop3(ENV["SCALE_BACKEND_A"], source=UNTRUSTED) as direct:
            reply = direct.user_pass("alice", "wrong")
        expect(reply.startswith("-ERR "), "pop3d's own refusal: %r" % reply)
        _login_failed.append(reply)
    return _login_failed[0]


class Failed(Exception):
    pass


def expect(condition, why):
    if not condition:
        raise Failed(why)


def expected_subjects(user, backend=None):
    home, _, count = USERS[user]
    return [subject(user, n, backend or home) for n in range(1, count + 1)]


def proxy(route_only=False, source=CLIENT):
    return Pop3(ENV["SCALE_PROXY_ROUTE_ONLY" if route_only else "SCALE_PROXY"], source=source)


def mbox(backend, user):
    with open(os.path.join(ENV["SCALE_DIR"], backend, "mail", user)) as f:
        return f.read()


def log(backend):
    with open(os.path.join(ENV["SCALE_DIR"], backend, "pop3d.log")) as f:
        return f.read()


def login_and_list(method, user, route_only=False):
    password = USERS[user][1]
    with proxy(route_only) as c:
        reply = c.login(method, user, password)
        expect(reply.startswith("+OK"), "%s login as %s: %s" % (method, user, reply))
        got = c.subjects()
        expect(got == expected_subjects(user), "%s sees %r" % (user, got))
        expect(c.cmd("QUIT").startswith("+OK"), "QUIT failed")


def check_capa_before_login_is_pop3ds():
    with Pop3(ENV["SCALE_BACKEND_A"], source=UNTRUSTED) as direct:
        _, pop3d = direct.multi("CAPA")
    with proxy() as c:
        _, nginx = c.multi("CAPA")
    expect(pop3d is not None and nginx is not None, "CAPA failed")
    without_sasl = lambda lines: [l for l in lines if not l.startswith("SASL ")]
    # TLS ends at nginx: STLS is nginx's own, the one line pop3d has no reason to list.
    expect("STLS" in nginx, "nginx offers no STLS: %r" % nginx)
    expect(
        without_sasl(l for l in nginx if l != "STLS") == without_sasl(pop3d),
        "nginx answers %r, pop3d %r" % (nginx, pop3d),
    )
    sasl = [l for l in nginx if l.startswith("SASL ")]
    expect(sasl and {"PLAIN", "CRAM-MD5"} <= set(sasl[0].split()), "nginx's SASL: %r" % sasl)


def check_greeting_carries_an_apop_timestamp():
    with proxy() as c:
        expect(
            re.fullmatch(r"\+OK .*<\d+\.\d+@proxy\.test>", c.greeting),
            "greeting: %r" % c.greeting,
        )


def check_dele_and_quit_land_on_the_right_backend():
    before_a = sorted(os.listdir(os.path.join(ENV["SCALE_DIR"], "a", "mail")))
    with proxy() as c:
        expect(c.user_pass("dave", USERS["dave"][1]).startswith("+OK"), "login as dave")
        expect(c.cmd("DELE 1").startswith("+OK"), "DELE 1")
        expect(c.cmd("QUIT").startswith("+OK"), "QUIT")
    text = mbox("b", "dave")
    expect(subject("dave", 1, "b") not in text, "message 1 still in backend B's mbox")
    expect(subject("dave", 2, "b") in text, "message 2 lost from backend B's mbox")
    after_a = sorted(os.listdir(os.path.join(ENV["SCALE_DIR"], "a", "mail")))
    expect("dave" not in after_a and before_a == after_a, "backend A's maildrops changed")
    with proxy() as c:
        c.user_pass("dave", USERS["dave"][1])
        got = c.subjects()
        c.cmd("QUIT")
    expect(got == [subject("dave", 2, "b")], "dave now sees %r" % got)


def refused(login, source=CLIENT):
    """Runs a failing login through the users-mode proxy: (reply, seconds, next reply)."""
    with proxy(source=source) as c:
        start = time.monotonic()
        reply = login(c)
        seconds = time.monotonic() - start
        after = c.cmd("NOOP")
        return reply, seconds, after


def check_wrong_password_and_unknown_user_are_refused_alike():
    cases = {
        "wrong password": lambda c: c.user_pass("alice", "wrong"),
        "unknown user": lambda c: c.user_pass("nosuchuser", "wonderland"),
        "wrong apop digest": lambda c: c.apop("bob", "wrong"),
        "unknown apop user": lambda c: c.apop("nosuchuser", "builder"),
        "wrong cram-md5": lambda c: c.auth_cram_md5("alice", "wrong"),
        "unknown cram-md5 user": lambda c: c.auth_cram_md5("nosuchuser", "x"),
    }
    seen = {}
    # Each from an address of its own: the router slows an address's later checks
    # (--login-penalty), which is checked on its own below.
    for n, (name, login) in enumerate(cases.items()):
        reply, seconds, after = refused(login, source="127.0.0.%d" % (10 + n))
        expect(reply == login_failed(), "%s: %r" % (name, reply))
        expect(seconds >= 0.9, "%s answered after %.2f s, no delay" % (name, seconds))
        seen[name] = after
    expect(len(set(seen.values())) == 1, "the sessions go on differently: %r" % seen)


def check_router_slows_an_address_that_failed():
    """pop3d-router --users counts failures per Client-IP as pop3d does: a second guess from
    the address, on a new connection, waits for the address's turn (2 s after the first
    failure) besides nginx's Auth-Wait (1 s); another address then logs in (its timing is
    tests/router_penalty.rs's business)."""
    guesser, other = "127.0.0.20", "127.0.0.21"

    def guess(n):
        with proxy(source=guesser) as c:
            start = time.monotonic()
            reply = c.user_pass("alice", "guess-%d" % n)
            took = time.monotonic() - start
            expect(reply == refusal, "guess %d: %r" % (n, reply))
            return took

    refusal = login_failed()
    # The second right after the first's answer, which nginx gives 1 s after the failure.
    first = guess(1)
    second = guess(2)
    with open(os.path.join(ENV["SCALE_DIR"], "router-users.log")) as f:
        lines = [l for l in f.read().splitlines() if guesser in l]
    expect(second >= first + 0.5, "the second guess waited no turn: %.2f s, then %.2f s; %r"
           % (first, second, lines))
    with proxy(source=other) as c:
        reply = c.user_pass("alice", USERS["alice"][1])
        expect(reply.startswith("+OK"), "%s: %r" % (other, reply))
        c.cmd("QUIT")


def check_route_only_logins_reach_the_backend():
    login_and_list("user", "alice", route_only=True)
    login_and_list("plain", "bob", route_only=True)


def check_route_only_refuses_wrong_password_and_unknown_user_alike():
    outcomes = []
    for user, password in [("bob", "wrong"), ("nosuchuser", "builder")]:
        with proxy(route_only=True) as c:
            reply = c.user_pass(user, password)
            rest = c.read_all()
        outcomes.append((reply, rest))
    expect(outcomes[0] == outcomes[1], "refused differently: %r" % outcomes)
    expect(outcomes[0][0] == login_failed(), "refusal: %r" % (outcomes[0],))


def check_in_use_reaches_the_client():
    with proxy() as first:
        expect(first.user_pass("carol", USERS["carol"][1]).startswith("+OK"), "first login")
        with proxy() as second:
            reply = second.user_pass("carol", USERS["carol"][1])
        expect(reply.startswith("-ERR [IN-USE]"), "second login: %r" % reply)
        first.cmd("QUIT")


def check_backend_logs_the_real_client_address():
    with proxy(source=CLIENT) as c:
        expect(c.user_pass("erin", USERS["erin"][1]).startswith("+OK"), "login as erin")
        c.cmd("QUIT")
    lines = [l for l in log("a").splitlines() if "login as erin" in l]
    expect(lines, "no login line for erin in backend A's log")
    expect(re.search(r"\b127\.0\.0\.2:\d+", lines[-1]), "login logged as %r" % lines[-1])
    expect(not re.search(r"\b127\.0\.0\.1:\d+", lines[-1]), "proxy in %r" % lines[-1])


def check_per_address_cap_counts_the_client_not_the_proxy():
    # The backends run with --max-per-ip 2; every connection below comes from nginx.
    held = []
    try:
        for user in ["alice", "carol"]:
            c = proxy(source=CLIENT)
            held.append(c)
            expect(c.user_pass(user, USERS[user][1]).startswith("+OK"), "login as " + user)
        with proxy(source=CLIENT) as third:
            reply = third.user_pass("erin", USERS["erin"][1])
        expect(reply.startswith("-ERR"), "a third session from %s: %r" % (CLIENT, reply))
        with proxy(source=OTHER_CLIENT) as other:
            reply = other.user_pass("erin", USERS["erin"][1])
            expect(reply.startswith("+OK"), "a session from %s: %r" % (OTHER_CLIENT, reply))
            other.cmd("QUIT")
    finally:
        for c in held:
            c.close()
    refusals = [l for l in log("a").splitlines() if "refused" in l and CLIENT in l]
    expect(refusals, "backend A's log has no refusal naming %s" % CLIENT)


def check_trusted_proxy_without_header_gets_no_greeting():
    # 127.0.0.1 is the trusted proxy: a command where the header belongs ends the connection.
    c = Pop3(ENV["SCALE_BACKEND_A"], source="127.0.0.1", greeting=False)
    c.send("CAPA")
    got = c.read_all()
    c.close()
    expect(got == b"", "got %r" % got)
    # Saying nothing at all: closed after pop3d's header timeout, still without a greeting.
    c = Pop3(ENV["SCALE_BACKEND_A"], source="127.0.0.1", greeting=False, timeout=15)
    got = c.read_all()
    c.close()
    expect(got == b"", "got %r" % got)


def check_proxy_header_from_an_untrusted_address_is_a_bad_command():
    with Pop3(ENV["SCALE_BACKEND_A"], source=UNTRUSTED) as c:
        expect(c.greeting.startswith("+OK"), "greeting: %r" % c.greeting)
        reply = c.cmd(proxy_v1("192.0.2.1:1234", ENV["SCALE_BACKEND_A"]).decode().strip())
        expect(reply.startswith("-ERR"), "PROXY line answered %r" % reply)
        expect(c.user_pass("alice", USERS["alice"][1]).startswith("+OK"), "login after it")
        c.cmd("QUIT")


def check_proxy_v2_local_is_accepted():
    with Pop3(ENV["SCALE_BACKEND_A"], source="127.0.0.1", header=PROXY_V2_LOCAL) as c:
        expect(c.greeting.startswith("+OK"), "greeting: %r" % c.greeting)
        expect(c.cmd("QUIT").startswith("+OK"), "QUIT")


# Moving erin from backend A to B, as README ("Scaling out") tells an admin to, with both
# "hosts" in SCALE_DIR. pop3d's session lock (an flock on MBOX.pop3d) is held for the whole
# move, so no POP3 session opens the old copy until the route points to the new one; the
# delivery locks (dotlock, flock) while the mbox is copied.
MOVE_ERIN = r"""
set -e
cd "$SCALE_DIR"
flock -n a/mail/erin.pop3d sh -ec '
    lockfile -1 -r 10 a/mail/erin.lock
    trap "rm -f a/mail/erin.lock" EXIT
    flock a/mail/erin cp -p a/mail/erin b/mail/erin
    rm -f a/mail/erin.lock
    trap - EXIT
    grep "^erin:" a/users >> b/users
    { echo "erin:$SCALE_BACKEND_B"; grep -v "^erin:" routes; } > routes.new
    mv routes.new routes
    sleep 2
    mv a/mail/erin a/mail/erin.moved
    sed -i "/^erin:/d" a/users
'
"""


def check_moving_a_user_is_one_route():
    moved = subprocess.run(["sh", "-c", MOVE_ERIN], timeout=30)
    expect(moved.returncode == 0, "the move failed")
    with proxy() as c:
        expect(c.user_pass("erin", USERS["erin"][1]).startswith("+OK"), "login as erin")
        expect(c.cmd("DELE 2").startswith("+OK"), "DELE 2")
        expect(c.cmd("QUIT").startswith("+OK"), "QUIT")
    expect(subject("erin", 2, "a") not in mbox("b", "erin"), "backend B's copy unchanged")
    expect(subject("erin", 2, "a") in mbox("a", "erin.moved"), "backend A's copy changed")


CHECKS = [
    ("capa_before_login_is_pop3ds", check_capa_before_login_is_pop3ds),
    ("greeting_carries_an_apop_timestamp", check_greeting_carries_an_apop_timestamp),
]
for _method in ["user", "apop", "plain", "cram-md5"]:
    for _user in ["alice", "bob"]:
        CHECKS.append(
            (
                "login_%s_%s_sees_own_messages" % (_method.replace("-", "_"), _user),
                lambda m=_method, u=_user: login_and_list(m, u),
            )
        )
CHECKS += [
    ("dele_and_quit_land_on_the_right_backend", check_dele_and_quit_land_on_the_right_backend),
    (
        "wrong_password_and_unknown_user_are_refused_alike",
        check_wrong_password_and_unknown_user_are_refused_alike,
    ),
    ("router_slows_an_address_that_failed", check_router_slows_an_address_that_failed),
    ("route_only_logins_reach_the_backend", check_route_only_logins_reach_the_backend),
    (
        "route_only_refuses_wrong_password_and_unknown_user_alike",
        check_route_only_refuses_wrong_password_and_unknown_user_alike,
    ),
    ("in_use_reaches_the_client", check_in_use_reaches_the_client),
    ("backend_logs_the_real_client_address", check_backend_logs_the_real_client_address),
    (
        "per_address_cap_counts_the_client_not_the_proxy",
        check_per_address_cap_counts_the_client_not_the_proxy,
    ),
    (
        "trusted_proxy_without_header_gets_no_greeting",
        check_trusted_proxy_without_header_gets_no_greeting,
    ),
    (
        "proxy_header_from_an_untrusted_address_is_a_bad_command",
        check_proxy_header_from_an_untrusted_address_is_a_bad_command,
    ),
    ("proxy_v2_local_is_accepted", check_proxy_v2_local_is_accepted),
    ("moving_a_user_is_one_route", check_moving_a_user_is_one_route),
]


def main(argv):
    checks = dict(CHECKS)
    if len(argv) == 2 and argv[1] == "list":
        print("\n".join(name for name, _ in CHECKS))
        return 0
    if len(argv) != 2 or argv[1] not in checks:
        sys.exit(__doc__)
    try:
        checks[argv[1]]()
    except (Failed, Closed, OSError) as e:
        print("    %s: %s" % (type(e).__name__, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
