# The --system-users scenario of scripts/bench.sh, sourced by scripts/bench/run.sh (which
# provides BIN, TOOL, LOAD, WORK, PRISTINE, CLIENTS, SESSION_MSGS, SESSION_SECONDS, SMALL,
# PEER, log, free_port, wait_port). Needs root: test accounts made with useradd and chpasswd
# (the host's default method: yescrypt on Debian), removed by system_cleanup, each with its
# mbox in a spool made like /var/mail (root:mail 2775, the mboxes USER:mail 0600).
#
#   system_figures    sessions per second of pop3d --system-users, and, with --peer dovecot,
#                     of Dovecot with its shadow passdb, on the same accounts in the same run;
#                     then the cost of one crypt check of the host's default method. Writes
#                     SYSTEM_OUT ("sessions<TAB>SERVER<TAB>PER_S<TAB>P50_MS<TAB>ERRORS", and
#                     "crypt<TAB>METHOD<TAB>MS").
#   system_table      prints the figures, and the bound a crypt check sets, as markdown
#   system_cleanup    stops the servers and removes the accounts (the EXIT trap calls it)

SYSTEM_OUT=$WORK/system.out
SYSTEM_ACCOUNTS=()
SYSTEM_PID=""
# The password of every test account.
SYSTEM_PASSWORD=bench-system-secret

system_stop() {
    if [ -n "$SYSTEM_PID" ]; then
        kill "$SYSTEM_PID" 2>/dev/null || true
        wait "$SYSTEM_PID" 2>/dev/null || true
        SYSTEM_PID=""
    fi
}

system_cleanup() {
    local name
    system_stop
    for name in "${SYSTEM_ACCOUNTS[@]}"; do userdel -f "$name" 2>/dev/null || true; done
    SYSTEM_ACCOUNTS=()
}

# system_spool DIR: a spool made like /var/mail in DIR, each account's mbox a fresh copy of
# the session maildrop, USER:mail 0600 as postfix local makes it.
system_spool() {
    local dir=$1 name
    rm -rf "$dir"
    mkdir -p "$dir"
    chown root:mail "$dir"
    chmod 2775 "$dir"
    for name in "${SYSTEM_ACCOUNTS[@]}"; do
        cp "$PRISTINE/session" "$dir/$name"
        chown "$name:mail" "$dir/$name"
        chmod 600 "$dir/$name"
    done
}

# system_sessions SERVER: the sessions scenario against the server on PORT, as the accounts;
# its figures go to a results file of their own and, in short, to SYSTEM_OUT.
system_sessions() {
    local server=$1 results=$WORK/system-results
    : >"$results"
    log "$server: sessions with system accounts"
    "${LOAD[@]}" sessions --server "$server" --results "$results" --addr "127.0.0.1:$PORT" \
        --pid "$SYSTEM_PID" --prefix "$SYSTEM_PREFIX" --users "$CLIENTS" \
        --password "$SYSTEM_PASSWORD" --clients "$CLIENTS" --seconds "$SESSION_SECONDS" \
        --expect "$SESSION_MSGS" || return 1
    awk -F'\t' -v s="$server" '
        $2 == "sessions_per_s" { r = $3 } $2 == "sessions_p50_ms" { p = $3 }
        $2 == "sessions_errors" { e = $3 }
        END { printf "sessions\t%s\t%.0f\t%.1f\t%d\n", s, r, p, e }' "$results" >>"$SYSTEM_OUT"
}

system_figures() {
    : >"$SYSTEM_OUT"
    if [ "$(id -u)" -ne 0 ]; then
        log "system accounts: skipped, needs root"
        return 2
    fi
    local i name dir=$WORK/system
    SYSTEM_PREFIX=p3b$(($$ % 10000))u
    log "system accounts: $CLIENTS test accounts (useradd, chpasswd)"
    mkdir -p "$dir"
    for ((i = 0; i < CLIENTS; i++)); do
        name=$SYSTEM_PREFIX$i
        useradd -M -d "$dir/home/$name" -s /usr/sbin/nologin "$name" || return 1
        SYSTEM_ACCOUNTS+=("$name")
    done
    for name in "${SYSTEM_ACCOUNTS[@]}"; do
        printf '%s:%s\n' "$name" "$SYSTEM_PASSWORD"
    done | chpasswd || return 1
    # Sessions switched to their users must reach the spool through the work directory.
    chmod 711 "$WORK"

    system_spool "$dir/spool"
    PORT=$(free_port)
    "$BIN" --system-users --listen "127.0.0.1:$PORT" --maildrop "$dir/spool/%u" \
        --max-sessions 4096 --max-per-ip 0 --log-file "$dir/pop3d.log" &
    SYSTEM_PID=$!
    wait_port "$PORT" || { echo "bench.sh: pop3d --system-users did not start" >&2; return 1; }
    system_sessions "pop3d --system-users" || return 1
    system_stop

    if [ "$PEER" = dovecot ]; then
        local d=$dir/dovecot
        mkdir -p "$d"/{run,state}
        for name in "${SYSTEM_ACCOUNTS[@]}"; do
            mkdir -p "$d/home/$name" "$d/index/$name"
            chown "$name" "$d/home/$name" "$d/index/$name"
        done
        chmod 755 "$d"
        system_spool "$dir/spool"
        PORT=$(free_port)
        sed -e "s|@DIR@|$d|g" -e "s|@SPOOL@|$dir/spool|g" -e "s|@PORT@|$PORT|g" \
            -e "s|@FIRST_UID@|$(id -u "${SYSTEM_ACCOUNTS[0]}")|g" -e "s|@CORES@|$(nproc)|g" \
            scripts/bench/dovecot-system.conf.in >"$d/dovecot.conf"
        dovecot -F -c "$d/dovecot.conf" &
        SYSTEM_PID=$!
        wait_port "$PORT" || { echo "bench.sh: dovecot did not start" >&2; tail "$d/dovecot.log" >&2; return 1; }
        system_sessions "Dovecot, shadow passdb" || { tail "$d/dovecot.log" >&2; return 1; }
        system_stop
    fi

    log "system accounts: the cost of one crypt check"
    local checks=50
    [ "$SMALL" = 1 ] && checks=5
    "$TOOL" crypt "$checks" >>"$SYSTEM_OUT" || return 1
    system_cleanup
}

system_table() {
    [ -s "$SYSTEM_OUT" ] || return 0
    echo
    echo "System accounts ($CLIENTS clients for $SESSION_SECONDS s; a session is connect, greeting,"
    echo "USER/PASS checked against /etc/shadow, STAT, QUIT; every login is one crypt check; Dovecot"
    echo "configured by scripts/bench/dovecot-system.conf.in):"
    echo
    echo "| server | sessions/s | p50 latency, ms | errors |"
    echo "| --- | ---: | ---: | ---: |"
    awk -F'\t' '$1 == "sessions" { printf "| %s | %s | %s | %s |\n", $2, $3, $4, $5 }' "$SYSTEM_OUT"
    echo
    awk -F'\t' -v cores="$(nproc)" '$1 == "crypt" && $3 > 0 {
        printf "One crypt check (%s, the host default) takes %s ms on one core: %d cores bound a\n", $2, $3, cores
        printf "server that checks every login to about %.0f sessions/s.\n", cores * 1000 / $3 }' "$SYSTEM_OUT"
}
