#!/usr/bin/env bash
# How long procmail waits for the maildrop while POP3 sessions run against pop3d (issue 11).
# procmail takes the dotlock first and, whenever it finds it taken, sleeps LOCKSLEEP seconds
# (8 by default) before it tries again, so each delivery that meets pop3d's dotlock costs a
# whole retry step. This script starts the release pop3d on 127.0.0.1, runs a POP3 session
# every 0.5 s (login, STAT, QUIT, alternating with login, DELE 1, QUIT), and meanwhile has
# procmail deliver N messages into the same mbox, one every GAP seconds (as mail arrives,
# not back to back: a loop without pauses retries hundreds of times a second and meets every
# lock however short). It prints procmail's time per delivery, how many deliveries slept, and
# how long pop3d held the dotlock (its debug line "delivery locks of ... held N us").
#
#   scripts/bench/procmail-wait.sh [DELIVERIES [MESSAGES [OCTETS [GAP]]]]
#     DELIVERIES  procmail deliveries (default 200)
#     MESSAGES    messages in the mbox at the start (default 2000)
#     OCTETS      body octets per message (default 2000)
#     GAP         seconds between deliveries (default 0.25)
#   POP3D=path    measure that binary instead of building this tree's release binary
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/packages.sh
need_packages procmail:procmail python3:python3

DELIVERIES=${1:-200}
MESSAGES=${2:-2000}
OCTETS=${3:-2000}
GAP=${4:-0.25}

if [ -z "${POP3D:-}" ]; then
    cargo build --release --quiet --bin pop3d
    TARGET=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    POP3D="$TARGET/release/pop3d"
fi

WORK=$(mktemp -d /tmp/procmail-wait.XXXXXX)
SERVER=""
SESSIONS=""
cleanup() {
    local pid
    for pid in $SESSIONS $SERVER; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir "$WORK/mail"
MBOX="$WORK/mail/alice"
echo "alice:secret" >"$WORK/users"
python3 - "$MBOX" "$MESSAGES" "$OCTETS" <<'PY'
import sys
path, messages, octets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
line = "x" * 71 + "\n"
body = line * (octets // len(line))
with open(path, "w") as f:
    for i in range(messages):
        f.write(f"From sender{i}@example.org Sat Jan  3 01:05:34 1996\n"
                f"Subject: message {i}\n\n{body}\n")
PY
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=debug "$POP3D" --listen "127.0.0.1:$PORT" --users "$WORK/users" \
    --maildrop "$WORK/mail/%u" --log-file "$WORK/pop3d.log" &
SERVER=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.05
done

# One session over bash's /dev/tcp: every command's reply is read before the next is sent.
session() {
    local reply
    exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 0
    read -r reply <&3 || true
    for command in "USER alice" "PASS secret" "$@" QUIT; do
        printf '%s\r\n' "$command" >&3
        read -r reply <&3 || break
    done
    exec 3<&- 3>&-
}

# Sessions every half second until killed.
(
    turn=0
    while :; do
        if [ $((turn % 2)) = 0 ]; then session STAT; else session "DELE 1"; fi
        turn=$((turn + 1))
        sleep 0.5
    done
) &
SESSIONS=$!

# procmail with its defaults (LOCKSLEEP=8): a local lockfile on the mbox, as ":0:" makes it.
printf ':0:\n%s\n' "$MBOX" >"$WORK/procmailrc"
sleep 1
start=$(date +%s.%N)
for i in $(seq "$DELIVERIES"); do
    t0=$(date +%s.%N)
    printf 'From bench@example.org Sat Jan  3 01:05:34 1996\nSubject: delivery %s\n\nhello\n' "$i" |
        procmail -m "$WORK/procmailrc"
    t1=$(date +%s.%N)
    echo "$t0 $t1" >>"$WORK/times"
    sleep "$GAP"
done
end=$(date +%s.%N)
kill "$SESSIONS" 2>/dev/null || true
wait "$SESSIONS" 2>/dev/null || true
SESSIONS=""

python3 - "$start" "$end" "$WORK/times" "$WORK/pop3d.log" <<'PY'
import re, statistics, sys
start, end, times, log = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
each = [float(b) - float(a) for a, b in (l.split() for l in open(times))]
held = sorted(int(m.group(1)) for m in re.finditer(r"delivery locks of \S+ held (\d+) us", open(log).read()))
total = end - start
# A delivery that found the dotlock taken slept at least a second (LOCKSLEEP, and procmail's
# own one-second steps); an unhindered one takes a few milliseconds.
slept = sum(1 for t in each if t >= 0.5)
print(f"procmail: {len(each)} deliveries in {total:.1f} s, mean {statistics.mean(each) * 1000:.0f} ms, "
      f"median {statistics.median(each) * 1000:.0f} ms, max {max(each) * 1000:.0f} ms, "
      f"{slept} of {len(each)} slept (>= 0.5 s), {sum(t for t in each if t >= 0.5):.1f} s asleep")
if held:
    print(f"pop3d dotlock: {len(held)} holds, median {statistics.median(held) / 1000:.1f} ms, "
          f"p90 {held[int(len(held) * 0.9)] / 1000:.1f} ms, max {held[-1] / 1000:.1f} ms, "
          f"held {sum(held) / 1e6 / total * 100:.1f}% of the time")
PY
if grep -q "breaking stale dotlock" "$WORK/pop3d.log"; then echo "warning: pop3d broke a dotlock"; fi
