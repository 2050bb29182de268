# What every script and suite under scripts/ shares, sourced from the repository root:
#
#   pop3d_build            cargo build --release of both binaries; sets POP3D and POP3D_ROUTER
#                          to the built paths, as cargo reports them (so CARGO_TARGET_DIR, or
#                          a target dir set in a cargo config, is honoured)
#   free_port [N]          prints a free loopback TCP port (N distinct ones, on one line)
#   wait_port PORT [SECS]  waits until 127.0.0.1:PORT accepts (default 10 s), else returns 1
#   pass NAME              prints "ok   NAME" and counts a pass
#   fail NAME              prints "FAIL NAME" and counts a failure
#   summary                prints "N passed, M failed"; returns 1 if anything failed
#   expect NAME COMMAND... runs COMMAND: a pass named NAME if it succeeds, else a failure
#   fail2ban_check NAME LOG FILTER WANT ADDRESS
#                          a pass named NAME if fail2ban-regex with the filter file FILTER
#                          finds WANT (more than 0) failed logins in LOG, each from an address
#                          matching the grep pattern ADDRESS; else a failure, with (up to 20
#                          lines of) what it found as "#   " lines
#
# The counts are PASSED and FAILED.

PASSED=0
FAILED=0

pass() {
    PASSED=$((PASSED + 1))
    echo "ok   $*"
}

fail() {
    FAILED=$((FAILED + 1))
    echo "FAIL $*"
}

summary() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

expect() {
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}

fail2ban_check() {
    local name=$1 log=$2 filter=$3 want=$4 address=$5 ips
    ips=$(fail2ban-regex -o ip "$log" "$filter" 2>&1)
    if [ "$want" -gt 0 ] && [ "$(grep -c . <<<"$ips")" -eq "$want" ] &&
        [ -z "$(grep -v "^$address\$" <<<"$ips")" ]; then
        pass "$name"
    else
        fail "$name"
        sed -e 's/^/#   /' <<<"$ips" | head -n 20
    fi
}

pop3d_build() {
    local out
    # Compiler errors still show on stderr; stdout carries cargo's JSON messages, which name
    # every executable it built (or found fresh).
    out=$(cargo build --release --quiet --bins --message-format=json-render-diagnostics) || return 1
    POP3D=$(sed -n 's|.*"executable":"\([^"]*/pop3d\)".*|\1|p' <<<"$out" | tail -n 1)
    POP3D_ROUTER=$(sed -n 's|.*"executable":"\([^"]*/pop3d-router\)".*|\1|p' <<<"$out" | tail -n 1)
    [ -x "$POP3D" ] && [ -x "$POP3D_ROUTER" ]
}

# The ports in use on this host (any state, IPv4 and IPv6), one decimal number per line, from
# the kernel's socket tables.
_ports_in_use() {
    local _sl local_addr _rest
    tail -q -n +2 /proc/net/tcp /proc/net/tcp6 2>/dev/null |
        while read -r _sl local_addr _rest; do
            echo $((16#${local_addr##*:}))
        done
}

# Ports are drawn below the kernel's ephemeral range, so that no outgoing connection (nginx
# to a backend, a client to the server) is given the port between choosing it and binding it.
# Ports handed out by one call differ from each other.
free_port() {
    local count=${1:-1} low used port picked=()
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
    [ "$low" -gt 20000 ] || low=32768
    used=" $(_ports_in_use | tr '\n' ' ') "
    while [ ${#picked[@]} -lt "$count" ]; do
        port=$((10000 + SRANDOM % (low - 10000)))
        case $used in *" $port "*) continue ;; esac
        used+="$port "
        picked+=("$port")
    done
    echo "${picked[*]}"
}

# Whether something listens on 127.0.0.1:PORT, read from the kernel's tables (a socket bound to
# 127.0.0.1, to 0.0.0.0 or to [::]) instead of probed with a connection: a probe would be a
# session to the server, and to a pop3d that trusts 127.0.0.1 as a proxy a connection without
# a PROXY header, logged as an error.
_listening() {
    local hex _sl local_addr _rem state _rest
    hex=$(printf '%04X' "$1")
    while read -r _sl local_addr _rem state _rest; do
        [ "$state" = 0A ] || continue
        case $local_addr in
            0100007F:"$hex" | 00000000:"$hex" | 00000000000000000000000000000000:"$hex") return 0 ;;
        esac
    done < <(tail -q -n +2 /proc/net/tcp /proc/net/tcp6 2>/dev/null)
    return 1
}

wait_port() {
    local port=$1 secs=${2:-10} i
    for ((i = 0; ; i++)); do
        _listening "$port" && return 0
        [ "$i" -lt $((secs * 20)) ] || return 1
        sleep 0.05
    done
}
