"""POP3 sessions per second against one address: connect, greeting, USER, PASS, STAT, QUIT.

    bench.py ADDR [--clients N] [--seconds S] [--label TEXT]

N client processes (default 8) run sessions back to back for S seconds (default 3), client i
as the site's user bench0i (a maildrop takes one session at a time) and from its own source
address 127.0.1.i (so that no per-address cap, nginx's or pop3d's, counts them together).
Prints one line: LABEL: SESSIONS sessions in SECONDS s = RATE sessions/s, ERRORS errors.
Exit status 1 if any session failed.
"""

import argparse
import multiprocessing
import sys
import time

from fixture import BENCH_PASSWORD, BENCH_USERS
from pop3client import Closed, Pop3


def worker(addr, index, seconds, results):
    user = BENCH_USERS[index]
    source = "127.0.1.%d" % (index + 1)
    done = errors = 0
    first_error = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with Pop3(addr, source=source) as c:
                ok = (
                    c.greeting.startswith("+OK")
                    and c.cmd("USER " + user).startswith("+OK")
                    and c.cmd("PASS " + BENCH_PASSWORD).startswith("+OK")
                    and c.cmd("STAT").startswith("+OK 1 ")
                    and c.cmd("QUIT").startswith("+OK")
                )
        except (Closed, OSError) as e:
            ok = False
            first_error = first_error or repr(e)
        if ok:
            done += 1
        else:
            errors += 1
            # A failing server must not be hammered in a tight loop.
            time.sleep(0.05)
    results.put((done, errors, first_error))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addr")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--label", default=None)
    args = parser.parse_args()
    if not 1 <= args.clients <= len(BENCH_USERS):
        sys.exit("--clients: 1 to %d" % len(BENCH_USERS))
    results = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(target=worker, args=(args.addr, i, args.seconds, results))
        for i in range(args.clients)
    ]
    start = time.monotonic()
    for p in processes:
        p.start()
    totals = [results.get(timeout=args.seconds + 30) for _ in processes]
    for p in processes:
        p.join()
    elapsed = time.monotonic() - start
    sessions = sum(t[0] for t in totals)
    errors = sum(t[1] for t in totals)
    print(
        "%s: %d sessions in %.1f s = %.0f sessions/s, %d errors (%d clients)"
        % (args.label or args.addr, sessions, elapsed, sessions / elapsed, errors, args.clients)
    )
    for t in totals:
        if t[2]:
            print("  first error: " + t[2])
            break
    return 1 if errors or not sessions else 0


if __name__ == "__main__":
    sys.exit(main())
