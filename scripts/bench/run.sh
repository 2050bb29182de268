#!/usr/bin/env bash
# The benchmark (run as scripts/bench.sh): builds the release binary and the benchmark tool
# (scripts/bench/tool, the example "bench"), prepares the maildrops in a temporary directory,
# runs every scenario against pop3d (and, with --peer dovecot, against Dovecot in the same run)
# on 127.0.0.1, and prints one markdown table: each figure the median of the runs with the
# range, the ratio pop3d / Dovecot, and the targets; then "N passed, M failed" over the
# scenario runs and the table's error and loss counts. Progress goes to stderr, the table and
# the closing line to stdout. scripts/bench/RESULTS.md keeps the last full run.
#
#   scripts/bench.sh                   pop3d alone, full sizes, 3 runs (a few minutes)
#   scripts/bench.sh --peer dovecot    the same against Dovecot too (installs it if missing)
#   scripts/bench.sh --smoke           small sizes, one short run: fails only if a scenario
#                                      errors or loses mail, never on a time (CI)
#   --small                            the smoke pass's sizes, judged like a full run
#   --runs N                           runs per figure (default 3; 1 with --smoke or --small)
#   --only system                      only the system-accounts figures (see below)
#
# After the table: sessions per second straight to pop3d, through stunnel and through nginx's
# TLS (scripts/deploy/tls/), one client for all three (scripts/bench/tls.py), and what one TLS
# handshake costs (installs stunnel4 and nginx's mail module if missing).
#
# Then (as root): sessions per second with --system-users and, with --peer dovecot,
# with Dovecot's shadow passdb, on the same test accounts, and the cost of one crypt check of
# the host's default method, the bound both are read against (scripts/bench/system.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/common.sh

SMOKE=0
SMALL=0
ONLY=""
PEER=""
RUNS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1; SMALL=1 ;;
        --small) SMALL=1 ;;
        --peer) PEER=${2:?--peer needs a name}; shift ;;
        --peer=*) PEER=${1#--peer=} ;;
        --runs) RUNS=${2:?--runs needs a number}; shift ;;
        --only) ONLY=${2:?--only needs a scenario}; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
case "$ONLY" in
    ""|system) ;;
    *) echo "bench.sh: --only takes only system" >&2; exit 2 ;;
esac
case "$PEER" in
    ""|dovecot) ;;
    *) echo "bench.sh: unknown peer $PEER (only dovecot)" >&2; exit 2 ;;
esac
if [ "$SMOKE" = 1 ] && [ -n "$PEER" ]; then
    echo "bench.sh: --smoke runs pop3d alone" >&2
    exit 2
fi

# Sizes: the full ones of scripts/bench/RESULTS.md, or small ones for the smoke pass.
if [ "$SMALL" = 1 ]; then
    RUNS=${RUNS:-1}
    CLIENTS=4 USERS=8 SESSION_MSGS=10 SESSION_SECONDS=1
    BIG_N=2 BIG_OCTETS=$((1024 * 1024))
    SMALL_N=200 SMALL_OCTETS=4096
    HUGE_N=2000 HUGE_OCTETS=10737 DELE_MANY=1000
    IDLE_CONNS=20 IDLE_SESSIONS=5
    TCP_MB=64 STARTUP_RUNS=3
else
    RUNS=${RUNS:-3}
    CLIENTS=32 USERS=128 SESSION_MSGS=10 SESSION_SECONDS=10
    BIG_N=10 BIG_OCTETS=$((10 * 1024 * 1024))
    SMALL_N=10000 SMALL_OCTETS=4096
    # 100,000 messages of 10,737 octets on average: 1 GiB.
    HUGE_N=100000 HUGE_OCTETS=10737 DELE_MANY=50000
    IDLE_CONNS=1000 IDLE_SESSIONS=100
    TCP_MB=1024 STARTUP_RUNS=21
fi
PASSWORD=bench-secret
SMALL_MSG_OCTETS=2048

log() { echo "bench: $*" >&2; }

# The load holds a thousand connections open on each side.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log "building the release binaries and the benchmark tool"
pop3d_build || { echo "bench.sh: pop3d did not build" >&2; exit 1; }
BIN=$POP3D
# The tool's path comes from cargo too, so a CARGO_TARGET_DIR is honoured.
TOOL=$(cargo build --release --quiet --example bench --message-format=json-render-diagnostics \
    | sed -n 's|.*"executable":"\([^"]*/examples/bench\)".*|\1|p' | tail -n 1)
[ -x "$TOOL" ] || { echo "bench.sh: the benchmark tool did not build" >&2; exit 1; }
LOAD=("$TOOL" load)

if [ "$PEER" = dovecot ]; then
    . scripts/lib/packages.sh
    need_packages dovecot:dovecot-core /usr/lib/dovecot/pop3:dovecot-pop3d
fi

WORK=$(mktemp -d /tmp/pop3d-bench.XXXXXX)
SERVER_PID=""
TLS_PIDS=()
tls_stop() {
    local pid
    for pid in "${TLS_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${TLS_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    TLS_PIDS=()
}
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
. scripts/bench/system.sh
cleanup() {
    stop_server
    tls_stop
    system_cleanup
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
RESULTS=$WORK/results
: > "$RESULTS"

HUGE_MB=$(( (HUGE_N * HUGE_OCTETS + 524288) / 1048576 ))
meta() { printf 'meta\t%s\t%s\n' "$1" "$2" >> "$RESULTS"; }
meta clients "$CLIENTS"
meta big "$BIG_N × $((BIG_OCTETS / 1048576)) MB"
meta small "$SMALL_N × $((SMALL_OCTETS / 1024)) KB"
if [ "$HUGE_MB" -ge 1024 ]; then
    meta huge "$((HUGE_MB / 1024)) GB ($HUGE_N msgs)"
else
    meta huge "$HUGE_MB MB ($HUGE_N msgs)"
fi
meta many "$DELE_MANY"
meta conns "$IDLE_CONNS held"
meta sessions "$IDLE_SESSIONS held"

# The maildrops, generated once: session users u0..u(N-1) of small messages, big, small, huge.
log "generating the maildrops in $WORK (huge: $HUGE_N messages, about $HUGE_MB MB)"
PRISTINE=$WORK/pristine
mkdir -p "$PRISTINE"
"$TOOL" mbox --out "$PRISTINE/session" --messages "$SESSION_MSGS" --octets "$SMALL_MSG_OCTETS" --vary
if [ "$ONLY" != system ]; then
    "$TOOL" mbox --out "$PRISTINE/big" --messages "$BIG_N" --octets "$BIG_OCTETS"
    "$TOOL" mbox --out "$PRISTINE/small" --messages "$SMALL_N" --octets "$SMALL_OCTETS"
    "$TOOL" mbox --out "$PRISTINE/huge" --messages "$HUGE_N" --octets "$HUGE_OCTETS" --vary
fi
USER_NAMES=(big small huge)
for ((i = 0; i < USERS; i++)); do USER_NAMES+=("u$i"); done

# fill_maildrops DIR: a fresh copy of every maildrop (the huge one too) in DIR.
fill_maildrops() {
    local dir=$1 name
    rm -rf "$dir"
    mkdir -p "$dir"
    for name in "${USER_NAMES[@]}"; do
        case "$name" in
            u*) cp "$PRISTINE/session" "$dir/$name" ;;
            *) cp "$PRISTINE/$name" "$dir/$name" ;;
        esac
    done
}

# ---- pop3d ----
P_DIR=$WORK/pop3d
mkdir -p "$P_DIR"
for name in "${USER_NAMES[@]}"; do printf '%s:%s\n' "$name" "$PASSWORD"; done > "$P_DIR/users"
chmod 600 "$P_DIR/users"

start_pop3d() {
    PORT=$(free_port)
    "$BIN" --listen "127.0.0.1:$PORT" --users "$P_DIR/users" --maildrop "$P_DIR/mail/%u" \
        --max-sessions 4096 --max-per-ip 0 --timeout 600 --log-file "$P_DIR/log" &
    SERVER_PID=$!
    wait_port "$PORT" || { echo "bench.sh: pop3d did not start" >&2; tail "$P_DIR/log" >&2; exit 1; }
}

# ---- Dovecot ----
D_DIR=$WORK/dovecot
setup_dovecot() {
    mkdir -p "$D_DIR"/{run,state,home,index}
    # Mail processes never run as root: as root, Dovecot's mail user is nobody.
    if [ "$(id -u)" -eq 0 ]; then
        D_UID=$(id -u nobody) D_GID=$(id -g nobody)
        D_INTERNAL=dovecot D_INTERNAL_GROUP=dovecot D_LOGIN=dovenull
    else
        D_UID=$(id -u) D_GID=$(id -g)
        D_INTERNAL=$(id -un) D_INTERNAL_GROUP=$(id -gn) D_LOGIN=$(id -un)
    fi
    for name in "${USER_NAMES[@]}"; do printf '%s:{PLAIN}%s::::::\n' "$name" "$PASSWORD"; done > "$D_DIR/passwd"
    chmod 755 "$WORK"
}

start_dovecot() {
    PORT=$(free_port)
    sed -e "s|@DIR@|$D_DIR|g" -e "s|@PORT@|$PORT|g" -e "s|@UID@|$D_UID|g" -e "s|@GID@|$D_GID|g" \
        -e "s|@INTERNAL_USER@|$D_INTERNAL|g" -e "s|@INTERNAL_GROUP@|$D_INTERNAL_GROUP|g" \
        -e "s|@LOGIN_USER@|$D_LOGIN|g" -e "s|@CORES@|$(nproc)|g" \
        scripts/bench/dovecot.conf.in > "$D_DIR/dovecot.conf"
    chown -R "$D_UID:$D_GID" "$D_DIR/mail" "$D_DIR/home" "$D_DIR/index" 2>/dev/null || true
    dovecot -F -c "$D_DIR/dovecot.conf" &
    SERVER_PID=$!
    wait_port "$PORT" || { echo "bench.sh: dovecot did not start" >&2; tail "$D_DIR/dovecot.log" >&2; exit 1; }
}

# measured SERVER NAME COMMAND...: one measurement, counted with pass/fail on stderr (stdout
# is the table's); a failure is recorded for the table too, and the run goes on.
measured() {
    local server=$1 name=$2
    shift 2
    if "$@"; then
        pass "$server: $name, run $RUN" >&2
    else
        fail "$server: $name, run $RUN" >&2
        printf '%s\tfailed\t%s, run %s\n' "$server" "$name" "$RUN" >> "$RESULTS"
    fi
}

# scenario SERVER NAME ARGS...: a scenario against the server on PORT.
scenario() {
    local server=$1 name=$2
    shift 2
    log "$server: $name (run $RUN)"
    measured "$server" "$name" "${LOAD[@]}" "$name" --server "$server" --results "$RESULTS" \
        --addr "127.0.0.1:$PORT" "$@"
}

# run_server NAME MAILDIR START: every scenario against one server, on fresh maildrops. The
# server is restarted before open-huge and before each idle scenario, so that what it holds
# after the throughput scenarios (or the one before) is not counted against the next.
run_server() {
    local server=$1 maildir=$2 start=$3
    fill_maildrops "$maildir"
    [ "$server" = dovecot ] && rm -rf "${D_DIR:?}/index" "${D_DIR:?}/home" && mkdir -p "$D_DIR/index" "$D_DIR/home"
    $start
    scenario "$server" sessions --pid "$SERVER_PID" --prefix u --users "$USERS" \
        --password "$PASSWORD" --clients "$CLIENTS" --seconds "$SESSION_SECONDS" --expect "$SESSION_MSGS"
    scenario "$server" retr-big --pid "$SERVER_PID" --user big --password "$PASSWORD" --expect "$BIG_N"
    scenario "$server" retr-small --pid "$SERVER_PID" --user small --password "$PASSWORD" --expect "$SMALL_N"
    log "$server: memory (run $RUN)"
    measured "$server" memory "${LOAD[@]}" memory --server "$server" --results "$RESULTS" \
        --pid "$SERVER_PID" --figure after_load
    stop_server
    $start
    scenario "$server" open-huge --pid "$SERVER_PID" --user huge --password "$PASSWORD" --expect "$HUGE_N"
    scenario "$server" update --user huge --password "$PASSWORD" --mbox "$maildir/huge" --dele-many "$DELE_MANY"
    stop_server
    $start
    scenario "$server" idle --pid "$SERVER_PID" --connections "$IDLE_CONNS"
    stop_server
    $start
    scenario "$server" idle-auth --pid "$SERVER_PID" --prefix u --users "$USERS" \
        --password "$PASSWORD" --sessions "$IDLE_SESSIONS"
    stop_server
}

[ "$PEER" = dovecot ] && setup_dovecot
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
[ "$ONLY" = system ] && RUNS=0
for ((RUN = 1; RUN <= RUNS; RUN++)); do
    run_server pop3d "$P_DIR/mail" start_pop3d
    [ "$PEER" = dovecot ] && run_server dovecot "$D_DIR/mail" start_dovecot
    log "references and footprint (run $RUN)"
    measured pop3d cat "${LOAD[@]}" cat --server pop3d --results "$RESULTS" --file "$PRISTINE/huge"
    # The in-process open of the huge mbox with each --uidl scheme (issue 15), beside pop3d's.
    for scheme in pop3d popa3d,pop3d solid-pop3d,pop3d dovecot,pop3d dovecot-md5,pop3d uw,pop3d x-uidl,pop3d; do
        log "pop3d: open huge --uidl $scheme (run $RUN)"
        measured pop3d "open --uidl $scheme" "$TOOL" maildrop stat --uidl "$scheme" \
            --results "$RESULTS" "$PRISTINE/huge" >/dev/null
    done
    measured pop3d tcp "${LOAD[@]}" tcp --server pop3d --results "$RESULTS" --megabytes "$TCP_MB"
    mkdir -p "$WORK/startup/mail"
    measured pop3d startup "${LOAD[@]}" startup --server pop3d --results "$RESULTS" \
        --runs "$STARTUP_RUNS" --bin "$BIN" -- \
        --users "$P_DIR/users" --maildrop "$WORK/startup/mail/%u" --log-file "$WORK/startup/log"
done
printf 'pop3d\tbinary_kb\t%s\n' "$(( $(stat -c %s "$BIN") / 1024 ))" >> "$RESULTS"

# ---- TLS fronts: pop3d with --secure-listen behind stunnel and nginx, as in scripts/tls/ ----
TLS_OUT=$WORK/tls.out
tls_figures() {
    . scripts/lib/packages.sh
    . scripts/tls/site.sh
    need_packages stunnel4:stunnel4 nginx:nginx openssl:openssl \
        "$TLS_MODULES/ngx_mail_module.so:libnginx-mod-mail"
    local t=$WORK/tls port
    mkdir -p "$t/mail" "$t/stunnel"
    tls_make_certs "$t/certs"
    for ((i = 0; i < USERS; i++)); do cp "$PRISTINE/session" "$t/mail/u$i"; done
    local direct secure router_port stunnel nginx_s nginx_p
    read -r direct secure router_port stunnel nginx_s nginx_p < <(free_port 6)
    # --max-per-ip 0: every bench client comes from 127.0.0.2.
    "$BIN" --listen "127.0.0.1:$direct" --secure-listen "127.0.0.1:$secure" \
        --trusted-proxy 127.0.0.1 --max-per-ip 0 --users "$P_DIR/users" \
        --maildrop "$t/mail/%u" --log-file "$t/pop3d.log" &
    TLS_PIDS+=($!)
    echo "*:127.0.0.1:$secure" >"$t/routes"
    "$POP3D_ROUTER" --listen "127.0.0.1:$router_port" --routes "$t/routes" --log-file "$t/router.log" &
    TLS_PIDS+=($!)
    tls_render_stunnel "$t/stunnel/stunnel.conf" "127.0.0.1:$stunnel" "127.0.0.1:$secure" "$t/certs" "$t/stunnel"
    stunnel4 "$t/stunnel/stunnel.conf" >"$t/stunnel/stderr" 2>&1 &
    TLS_PIDS+=($!)
    local stunnel_pid=$!
    tls_render_nginx "$t/nginx" "127.0.0.1:$nginx_s" "127.0.0.1:$nginx_p" "127.0.0.1:$router_port" \
        "$t/certs" plain
    (tls_run_nginx "$t/nginx") >"$t/nginx.stderr" 2>&1 &
    TLS_PIDS+=($!)
    local nginx_master=$!
    for port in "$direct" "$secure" "$router_port" "$stunnel" "$nginx_s"; do
        wait_port "$port" || { echo "bench.sh: a TLS front did not start" >&2; return 1; }
    done
    # nginx's work is done in its worker, the master's child.
    local nginx_worker
    nginx_worker=$(grep -l "^PPid:[[:space:]]*$nginx_master\$" /proc/[0-9]*/status | head -n 1 | cut -d/ -f3)
    local py=(python3 scripts/bench/tls.py) ca=$t/certs/ca.pem count=500
    [ "$SMALL" = 1 ] && count=50
    log "TLS fronts: sessions per second, direct / stunnel / nginx"
    {
        "${py[@]}" sessions "direct, no TLS" "127.0.0.1:$direct" u "$USERS" "$PASSWORD" "$CLIENTS" "$SESSION_SECONDS"
        "${py[@]}" sessions "stunnel POP3S" "127.0.0.1:$stunnel" u "$USERS" "$PASSWORD" "$CLIENTS" "$SESSION_SECONDS" "$ca"
        "${py[@]}" sessions "nginx POP3S" "127.0.0.1:$nginx_s" u "$USERS" "$PASSWORD" "$CLIENTS" "$SESSION_SECONDS" "$ca"
        log "TLS fronts: $count handshakes each"
        "${py[@]}" handshake stunnel "127.0.0.1:$stunnel" "$count" "$ca" "$stunnel_pid"
        "${py[@]}" handshake nginx "127.0.0.1:$nginx_s" "$count" "$ca" "$nginx_worker"
    } >"$TLS_OUT"
}
TLS_OK=1
if [ "$ONLY" != system ]; then
    tls_figures || TLS_OK=0
    tls_stop
fi
SYSTEM_STATUS=0
system_figures || SYSTEM_STATUS=$?
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "Machine: ${CPU:-unknown CPU}, $(nproc) cores, $(( $(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo) / 1024 / 1024 )) GB RAM, Linux $(uname -r); load average $LOAD_BEFORE before, $LOAD_AFTER after."
if [ "$PEER" = dovecot ]; then
    echo "Peer: Dovecot $(dovecot --version | cut -d' ' -f1), configured by scripts/bench/dovecot.conf.in."
fi
if [ "$ONLY" = system ]; then
    system_table
    if [ "$SYSTEM_STATUS" = 0 ]; then
        pass "system accounts: figures without errors"
    else
        fail "system accounts: figures without errors"
    fi
    summary
    exit
fi
echo "Each figure: median of $RUNS run(s), (min–max). MB = 2^20 octets."
echo
REPORT=(report --results "$RESULTS")
[ -n "$PEER" ] && REPORT+=(--peer "$PEER")
[ "$SMOKE" = 1 ] && REPORT+=(--smoke)
# The table's own check: no error or loss count above zero (its FAIL lines name them).
if "$TOOL" "${REPORT[@]}"; then
    echo
    pass "no errors and no lost mail in the table"
else
    fail "no errors and no lost mail in the table"
fi

echo
echo "TLS fronts ($CLIENTS clients for $SESSION_SECONDS s each; a session is connect, TLS if any,"
echo "greeting, USER/PASS, STAT, QUIT; one Python client for all three paths):"
echo
echo "| path | sessions/s | errors |"
echo "| --- | ---: | ---: |"
awk -F'\t' '$1 == "sessions" { printf "| %s | %s | %s |\n", $2, $3, $4 }' "$TLS_OUT" 2>/dev/null
echo
echo "One TLS handshake (sequential, TLS 1.3, P-256 certificate; wall time is connect + handshake"
echo "minus a plain connect; CPU is the front's own):"
echo
echo "| front | ms wall | ms CPU in the front |"
echo "| --- | ---: | ---: |"
awk -F'\t' '$1 == "handshake" { printf "| %s | %s | %s |\n", $2, $3, $4 }' "$TLS_OUT" 2>/dev/null
echo
# Three session figures without errors and two handshake figures, or the TLS run failed.
if [ "$TLS_OK" = 1 ] && awk -F'\t' '$1 == "sessions" && $4 == 0 && $3 > 0 { s++ } $1 == "handshake" { h++ }
        END { exit !(s == 3 && h == 2) }' "$TLS_OUT" 2>/dev/null; then
    pass "TLS fronts: three session figures without errors, two handshake figures"
else
    fail "TLS fronts: three session figures without errors, two handshake figures"
fi
system_table
# Status 2: not root, so no accounts could be made; the table then says nothing of them.
case $SYSTEM_STATUS in
    0) pass "system accounts: figures without errors" ;;
    2) echo "system accounts: skipped (needs root)" ;;
    *) fail "system accounts: figures without errors" ;;
esac
summary
