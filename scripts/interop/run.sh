#!/usr/bin/env bash
# Interop suite: real POP3 clients against the built pop3d, on 127.0.0.1 only.
#
# fetchmail, mpop, getmail6, curl and Python's poplib fetch a fixture mbox (dot lines, ">From "
# lines, an empty body, CRLF on disk, 8-bit bytes, a several-MB message, no final newline)
# from a standalone pop3d, and poplib and curl again from pop3d run by openbsd-inetd with the
# example line of scripts/deploy/inetd.conf. Every stored message is compared byte for byte
# with the fixture. Then the same clients fetch through --system-users (as root): test
# accounts made with useradd and chpasswd (yescrypt and SHA-512; removed on exit, also on
# failure), a spool made like Debian's /var/mail (root:mail 2775) with 0600 and 0660 mboxes,
# pop3d standalone with only the capabilities its systemd unit keeps, and once more from
# openbsd-inetd with scripts/deploy/system-users/inetd.conf (under the capabilities of its
# socket unit). Last, fail2ban-regex runs the filter of scripts/deploy/fail2ban/ over the
# failed logins both servers logged, and fail2ban-client -t checks its jail. Each check prints "ok   ..." or "FAIL ..."; the last
# line is "N passed, M failed" and the exit status is 1 if anything failed.
#
# Installs what it needs when missing (Debian packages); run as root in CI.
set -uo pipefail
shopt -s nullglob
cd "$(dirname "$0")/../.."
HERE=$PWD/scripts/interop

. scripts/lib/common.sh
. scripts/lib/packages.sh
need_packages curl:curl fetchmail:fetchmail mpop:mpop getmail:getmail6 inetd:openbsd-inetd python3:python3 \
    setpriv:util-linux useradd:passwd fail2ban-regex:fail2ban fail2ban-client:fail2ban

if ! pop3d_build; then
    fail "cargo build --release"
    summary
    exit 1
fi
BIN=$POP3D
T=$(mktemp -d /tmp/pop3d-interop.XXXXXX)
SERVER_PID=
INETD_PID=
SYSTEM_PID=
SYSTEM_INETD_PID=
# The test accounts of the --system-users part, removed by cleanup.
ACCOUNTS=()

cleanup() {
    local pid name
    for pid in $SERVER_PID $INETD_PID $SYSTEM_PID $SYSTEM_INETD_PID; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    for name in "${ACCOUNTS[@]}"; do
        userdel -f "$name" 2>/dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT

# show FILE: a client's output after a failure, as comment lines.
show() { sed -e 's/^/#   /' "$1" | tail -n 40; }
# checks COMMAND...: runs a helper that prints "ok   ..." / "FAIL ..." lines itself; each one
# is counted as a pass or a failure, other lines are passed through.
checks() {
    local out rc line failed_before=$FAILED
    out=$(timeout 60 "$@" 2>&1)
    rc=$?
    while IFS= read -r line; do
        case $line in
            "ok   "*) pass "${line#ok   }" ;;
            "FAIL "*) fail "${line#FAIL }" ;;
            *) printf '%s\n' "$line" ;;
        esac
    done <<<"$out"
    if [ "$rc" -ne 0 ] && [ "$FAILED" -eq "$failed_before" ]; then
        fail "$(basename "$2") ${3:-} ended with status $rc"
    fi
}
# run LABEL WANT_STATUS LOG COMMAND...: a client run, bounded, that must exit with WANT_STATUS.
run() {
    local label=$1 want=$2 log=$3 rc
    shift 3
    timeout 60 "$@" >"$log" 2>&1
    rc=$?
    if [ "$rc" -eq "$want" ]; then
        pass "$label (exit $rc)"
    else
        fail "$label (exit $rc, expected $want)"
        show "$log"
    fi
}
# messages LABEL [--lf] [--added HEADER] [--only NN,..] FILE...: compares stored messages
# with the fixtures (see compare.py).
messages() {
    local label=$1
    shift
    checks python3 "$HERE/compare.py" messages "$label" "$FIX" "$@"
}

# fresh_mbox USER: the user's maildrop holds exactly the fixture mbox.
fresh_mbox() { cp "$FIX/mbox" "$T/mail/$1"; }
# new_files DIR LISTING: the files in DIR that LISTING (an earlier `ls DIR`) lacks.
new_files() { comm -13 "$2" <(ls "$1") | sed -e "s|^|$1/|"; }
# children PID: the processes whose parent is PID (without procps).
children() { grep -l "^PPid:[[:space:]]*$1\$" /proc/[0-9]*/status 2>/dev/null; }
# no_children PID: PID has no child process left, within 5 s.
no_children() {
    local i
    for i in $(seq 50); do
        [ -z "$(children "$1")" ] && return 0
        sleep 0.1
    done
    return 1
}
maildir() { mkdir -p "$1/cur" "$1/new" "$1/tmp"; }

START=$SECONDS
FIX=$T/fixtures
python3 "$HERE/fixtures.py" "$FIX" || exit 1
COUNT=$(($(wc -l <"$FIX/names") - 1))
PW='open sesame'
ME=$(id -un)
USERS="poplib curl fmkeep fmdelete fmcram mpop mpopcram getmail inetdpy inetdcurl"
mkdir -p "$T/mail"
for u in $USERS; do echo "$u:$PW"; done >"$T/users"
chmod 600 "$T/users"

# Client versions, for the record.
echo "# $("$BIN" --version 2>&1 | head -n 1)"
echo "# $(fetchmail --version 2>/dev/null | grep -m 1 'release')"
echo "# $(mpop --version | head -n 1)"
echo "# $(getmail --version 2>&1 | head -n 1)"
echo "# $(curl --version | head -n 1)"
echo "# $(python3 --version) poplib"
echo "# openbsd-inetd $(dpkg-query -W -f '${Version}' openbsd-inetd 2>/dev/null)"

PORT=$(free_port)
"$BIN" --listen "127.0.0.1:$PORT" --users "$T/users" --maildrop "$T/mail/%u" --timeout 60 \
    --hostname interop.test --log-file "$T/pop3d.log" &
SERVER_PID=$!
if ! wait_port "$PORT"; then
    fail "pop3d listens on 127.0.0.1:$PORT"
    show "$T/pop3d.log"
    summary
    exit 1
fi

# --- Python's poplib -------------------------------------------------------------------------
echo "# poplib"
fresh_mbox poplib
checks python3 "$HERE/poplib_client.py" poplib 127.0.0.1 "$PORT" poplib "$PW" "$FIX"

# --- curl ------------------------------------------------------------------------------------
echo "# curl"
fresh_mbox curl
C=$T/curl
mkdir -p "$C"
URL="pop3://127.0.0.1:$PORT"
# -q: no ~/.curlrc.
CURL=(curl -q -sS --max-time 50 -u "curl:$PW")
run "curl: LIST" 0 "$C/list.log" "${CURL[@]}" -o "$C/list" "$URL/"
checks python3 "$HERE/compare.py" list curl "$FIX" "$C/list"
# RETR of every message; one curl run per login method, with the trace to see which was used.
for auth in default PLAIN CRAM-MD5 +APOP; do
    d=$C/retr-$auth
    mkdir -p "$d"
    opts=()
    [ "$auth" = default ] || opts=(--login-options "AUTH=$auth")
    run "curl: RETR 1..$COUNT, login $auth" 0 "$d.log" \
        "${CURL[@]}" -v "${opts[@]}" -o "$d/#1" "$URL/[1-$COUNT]"
    case $auth in
    PLAIN | CRAM-MD5) sent="AUTH $auth" ;;
    +APOP) sent="APOP curl " ;;
    *) sent="" ;;
    esac
    if [ -n "$sent" ]; then
        expect "curl: login $auth sent \"$sent\"" grep -q "^> $sent" "$d.log"
    fi
    messages "curl ($auth)" "$d"/*
done
run "curl: UIDL" 0 "$C/uidl.log" "${CURL[@]}" -X UIDL -o "$C/uidl" "$URL/"
run "curl: UIDL in a later session" 0 "$C/uidl2.log" "${CURL[@]}" -X UIDL -o "$C/uidl2" "$URL/"
checks python3 "$HERE/compare.py" uidl curl "$FIX" "$C/uidl" "$C/uidl2"
for top in "2 3" "2 0" "4 0" "8 5" "9 100"; do
    f=$C/top-${top// /-}
    run "curl: TOP $top" 0 "$f.log" "${CURL[@]}" -X "TOP $top" -o "$f" "$URL/"
    checks python3 "$HERE/compare.py" top curl "$FIX" $(printf '%02d' "${top% *}") "${top#* }" "$f"
done
expect "curl: the mbox is unchanged" cmp -s "$FIX/mbox" "$T/mail/curl"

# --- fetchmail -------------------------------------------------------------------------------
echo "# fetchmail"
F=$T/fetchmail
mkdir -p "$F/home"
# fetchmailrc POLL_USER KEEP: a run control file for the user's maildrop; each run adds --auth
# and --mda on the command line.
# "invisible" stops the Received header, "no rewrite" the address rewriting, and "no stripcr"
# keeps the CRLF line ends that fetchmail otherwise strips when it delivers to an MDA.
# sslproto '': fetchmail 6.4's default ('auto') requires TLS, so it sends STLS although CAPA
# does not offer it and gives up on the -ERR; the empty value turns STARTTLS off.
fetchmailrc() {
    local rc=$F/$1.rc
    cat >"$rc" <<EOF
set no bouncemail
set no syslog
set invisible
poll 127.0.0.1 port $PORT protocol pop3 timeout 30
    user "$1" there with password "$PW" is "$ME" here
    $2 fetchall no rewrite no stripcr sslproto ''
EOF
    chmod 600 "$rc"
    echo "$rc"
}
# fetchmail_cmd FETCHMAILRC AUTH DIR: sets FETCHMAIL to a fetchmail run delivering through
# deliver.sh (one file per message) into DIR. As root fetchmail only warns; FETCHMAILHOME
# keeps its .fetchids in the temp directory, --pidfile its lock (as root it would otherwise
# be /run/fetchmail.pid, shared with any other fetchmail on the host), and FETCHMAILUSER
# makes it run the MDA as this user.
fetchmail_cmd() {
    mkdir -p "$3"
    FETCHMAIL=(env FETCHMAILHOME="$F/home" FETCHMAILUSER="$ME"
        fetchmail --nodetach --verbose --pidfile "$F/home/fetchmail.pid" -f "$1" --auth "$2"
        --mda "$HERE/deliver.sh $3")
}

fresh_mbox fmkeep
rc=$(fetchmailrc fmkeep keep)
fetchmail_cmd "$rc" password "$F/keep"
run "fetchmail: keep, --auth password" 0 "$F/keep.log" "${FETCHMAIL[@]}"
expect "fetchmail: logged in with USER/PASS" grep -q 'POP3> PASS' "$F/keep.log"
messages "fetchmail (keep)" "$F/keep"/*
expect "fetchmail: keep leaves the mbox unchanged" cmp -s "$FIX/mbox" "$T/mail/fmkeep"

fresh_mbox fmdelete
rc=$(fetchmailrc fmdelete "no keep")
fetchmail_cmd "$rc" password "$F/delete"
run "fetchmail: no keep (delete)" 0 "$F/delete.log" "${FETCHMAIL[@]}"
messages "fetchmail (delete)" "$F/delete"/*
expect "fetchmail: the fetched messages are deleted from the mbox" test ! -s "$T/mail/fmdelete"
fetchmail_cmd "$rc" password "$F/delete2"
run "fetchmail: a second run finds no mail" 1 "$F/delete2.log" "${FETCHMAIL[@]}"

fresh_mbox fmcram
rc=$(fetchmailrc fmcram keep)
fetchmail_cmd "$rc" cram-md5 "$F/cram"
run "fetchmail: keep, --auth cram-md5" 0 "$F/cram.log" "${FETCHMAIL[@]}"
expect "fetchmail: logged in with AUTH CRAM-MD5" grep -q 'POP3> AUTH CRAM-MD5' "$F/cram.log"
messages "fetchmail (cram-md5)" "$F/cram"/*

# --- mpop ------------------------------------------------------------------------------------
echo "# mpop"
M=$T/mpop
mkdir -p "$M"
# mpop stores messages with local LF line ends (its manual: a stored mail is smaller than the
# size a server counting CRLF reports), so --lf. "received_header off" stops the Received
# header it would prepend. It pipelines its commands.
mpoprc() {
    local rc=$M/$1.rc
    maildir "$M/$1"
    cat >"$rc" <<EOF
defaults
tls off
received_header off
keep on
uidls_file $M/uidls-%U

account $1
host 127.0.0.1
port $PORT
user $1
password "$PW"
auth $2
delivery maildir $M/$1
EOF
    chmod 600 "$rc"
    echo "$rc"
}
fresh_mbox mpop
rc=$(mpoprc mpop user)
run "mpop: first run, auth user" 0 "$M/1.log" mpop -q -C "$rc" mpop
ls "$M/mpop/new" >"$M/after1"
messages "mpop (first run)" --lf "$M/mpop/new"/*
run "mpop: second run" 0 "$M/2.log" mpop -q -C "$rc" mpop
expect "mpop: the second run fetches nothing (UIDL bookkeeping)" \
    test -z "$(new_files "$M/mpop/new" "$M/after1")"
# A delivery agent appends a message; the last fixture has no final newline, so the mbox
# first gets its line ended and a separator, as an mbox writer does.
printf '\n\n' >>"$T/mail/mpop"
cat "$FIX/append.mbox" >>"$T/mail/mpop"
ls "$M/mpop/new" >"$M/after2"
run "mpop: run after a delivery" 0 "$M/3.log" mpop -q -C "$rc" mpop
# shellcheck disable=SC2046
messages "mpop (after the delivery)" --lf --only $(printf '%02d' $((COUNT + 1))) \
    $(new_files "$M/mpop/new" "$M/after2")

fresh_mbox mpopcram
rc=$(mpoprc mpopcram cram-md5)
run "mpop: auth cram-md5" 0 "$M/cram.log" mpop -q -C "$rc" mpopcram
messages "mpop (cram-md5)" --lf "$M/mpopcram/new"/*

# --- getmail6 --------------------------------------------------------------------------------
echo "# getmail"
G=$T/getmail
maildir "$G/maildir"
mkdir -p "$G/state"
fresh_mbox getmail
# getmail refuses to deliver as root: as root, its Maildir destination switches to nobody,
# who must be able to reach and write the Maildir.
getmail_user=
if [ "$(id -u)" -eq 0 ]; then
    getmail_user="user = nobody"
    chmod o+x "$T" "$G"
    chown -R nobody "$G/maildir"
fi
cat >"$G/rc" <<EOF
[retriever]
type = SimplePOP3Retriever
server = 127.0.0.1
port = $PORT
username = getmail
password = $PW
timeout = 30

[destination]
type = Maildir
path = $G/maildir/
$getmail_user

[options]
verbose = 0
read_all = true
delete = false
delivered_to = false
received = false
EOF
run "getmail: retrieve all, keep" 0 "$G/run.log" getmail --rcfile "$G/rc" --getmaildir "$G/state"
# getmail stores local LF line ends and always records the envelope sender in a Return-Path
# header field at the top of the message ("<unknown>" over POP3; its configuration
# documentation); Delivered-To and Received are turned off above.
messages "getmail" --lf --added Return-Path "$G/maildir/new"/*
expect "getmail: the mbox is unchanged" cmp -s "$FIX/mbox" "$T/mail/getmail"

# --- openbsd-inetd, with the example line of scripts/deploy/inetd.conf -------------------------
# (Debian's xinetd and openbsd-inetd packages exclude each other, so only one runs here.)
# through_superserver NAME PORT PID: poplib and curl fetch through pop3d started by the
# superserver NAME (process PID) listening on 127.0.0.1:PORT.
through_superserver() {
    local name=$1 port=$2 pid=$3
    if ! wait_port "$port"; then
        fail "$name listens on 127.0.0.1:$port"
        show "$T/$name.log"
        return
    fi
    pass "$name listens on 127.0.0.1:$port"
    fresh_mbox "${name}py"
    checks python3 "$HERE/poplib_client.py" "$name poplib" 127.0.0.1 "$port" "${name}py" "$PW" "$FIX"
    fresh_mbox "${name}curl"
    mkdir -p "$T/$name-curl"
    run "$name: curl RETR 1..$COUNT" 0 "$T/$name-curl.log" curl -q -sS --max-time 50 \
        -u "${name}curl:$PW" -o "$T/$name-curl/#1" "pop3://127.0.0.1:$port/[1-$COUNT]"
    messages "$name curl" "$T/$name-curl"/*
    expect "$name: every pop3d it started has exited" no_children "$pid"
}

echo "# inetd"
IPORT=$(free_port)
# The example line, with the service bound to 127.0.0.1 on a free port (inetd takes a port
# number there), run as the user running this script, and the paths of this test; nothing
# else changes.
sed -e "s|^pop3[[:space:]]|127.0.0.1:$IPORT\t|" \
    -e "s|[[:space:]]vmail[[:space:]]|\t$ME\t|" \
    -e "s|/usr/local/sbin/pop3d|$BIN|" \
    -e "s|/etc/pop3d/users|$T/users|" \
    -e "s|/var/mail/%u|$T/mail/%u|" \
    scripts/deploy/inetd.conf >"$T/inetd.conf"
expect "inetd: the example line was adapted (address, port, user, paths)" \
    grep -q "^127.0.0.1:$IPORT[[:space:]].*[[:space:]]$ME[[:space:]]$BIN[[:space:]].*--inetd.* $T/users .*$T/mail/%u" \
    "$T/inetd.conf"
# -d: openbsd-inetd stays in the foreground and reads only this file.
inetd -d "$T/inetd.conf" >"$T/inetd.log" 2>&1 &
INETD_PID=$!
through_superserver inetd "$IPORT" "$INETD_PID"

# --- --system-users: the host's own accounts, a spool made like /var/mail --------------------
echo "# --system-users"
# account NAME METHOD: a test account (no home, no shell) with the password $PW hashed by
# METHOD (chpasswd -c: YESCRYPT, SHA512); cleanup removes it.
account() {
    useradd -M -s /usr/sbin/nologin "$1" || return 1
    ACCOUNTS+=("$1")
    printf '%s:%s\n' "$1" "$PW" | chpasswd -c "$2"
}
# system_mbox USER MODE: the user's mbox in the spool holds the fixture mbox, owned by the user,
# group mail, mode MODE (0600 as postfix local makes it, 0660 as exim does).
system_mbox() {
    cp "$FIX/mbox" "$SPOOL/$1"
    chown "$1:mail" "$SPOOL/$1"
    chmod "$2" "$SPOOL/$1"
}
# mbox_identity USER: inode, owner, group and mode of the user's mbox.
mbox_identity() { stat -c '%i %U %G %a' "$SPOOL/$1"; }
# no_root_files: nothing in the spool but the spool itself belongs to root.
no_root_files() { [ -z "$(find "$SPOOL" -mindepth 1 -user root)" ]; }

system_users() {
    if [ "$(id -u)" -ne 0 ]; then
        if [ -n "${CI:-}" ]; then fail "--system-users part runs as root in CI"; fi
        echo "# skipped: --system-users needs root"
        return
    fi
    local tag
    tag=p3i$(($$ % 100000))
    local SPL=${tag}pl SCU=${tag}cu SFM=${tag}fm SMP=${tag}mp SGM=${tag}gm SIN=${tag}in
    local name ok=1
    for name in "$SPL:YESCRYPT" "$SCU:SHA512" "$SFM:YESCRYPT" "$SMP:SHA512" "$SGM:YESCRYPT" "$SIN:SHA512"; do
        account "${name%%:*}" "${name#*:}" || ok=
    done
    expect "system: test accounts made with useradd and chpasswd (yescrypt, SHA-512)" test -n "$ok"
    [ -n "$ok" ] || return
    expect "system: the yescrypt account's hash is \$y\$" grep -q "^$SPL:\\\$y\\\$" /etc/shadow
    # The sessions, switched to their users, must reach the spool through the temp directory.
    chmod 711 "$T"
    SPOOL=$T/spool
    mkdir -p "$SPOOL"
    chown root:mail "$SPOOL"
    chmod 2775 "$SPOOL"
    system_mbox "$SPL" 600
    system_mbox "$SCU" 660
    system_mbox "$SFM" 600
    system_mbox "$SMP" 660
    system_mbox "$SGM" 600
    system_mbox "$SIN" 660

    # Standalone, as root with only the capabilities scripts/deploy/system-users/pop3d.service
    # keeps: if pop3d needed more, the logins below would fail.
    local sport
    sport=$(free_port)
    setpriv --bounding-set -all,+setuid,+setgid,+kill,+net_bind_service --inh-caps -all \
        "$BIN" --system-users --listen "127.0.0.1:$sport" --maildrop "$SPOOL/%u" --timeout 60 \
        --hostname interop.test --log-file "$T/pop3d-system.log" &
    SYSTEM_PID=$!
    if ! wait_port "$sport"; then
        fail "pop3d --system-users listens on 127.0.0.1:$sport"
        show "$T/pop3d-system.log"
        return
    fi
    # The client helpers above connect to $PORT.
    local users_port=$PORT
    PORT=$sport

    local before
    before=$(mbox_identity "$SPL")
    checks python3 "$HERE/poplib_client.py" "system poplib" 127.0.0.1 "$sport" "$SPL" "$PW" "$FIX" hashed
    expect "system poplib: DELE+QUIT kept the mbox's inode, owner, group and mode ($before)" \
        test "$(mbox_identity "$SPL")" = "$before"

    mkdir -p "$T/system-curl"
    run "system curl: RETR 1..$COUNT" 0 "$T/system-curl.log" curl -q -sS --max-time 50 \
        -u "$SCU:$PW" -o "$T/system-curl/#1" "pop3://127.0.0.1:$sport/[1-$COUNT]"
    messages "system curl" "$T/system-curl"/*
    expect "system curl: the 0660 mbox is unchanged" cmp -s "$FIX/mbox" "$SPOOL/$SCU"

    before=$(mbox_identity "$SFM")
    local rc
    rc=$(fetchmailrc "$SFM" "no keep")
    fetchmail_cmd "$rc" password "$F/system"
    run "system fetchmail: no keep (delete)" 0 "$F/system.log" "${FETCHMAIL[@]}"
    messages "system fetchmail" "$F/system"/*
    expect "system fetchmail: the fetched messages are deleted from the mbox" test ! -s "$SPOOL/$SFM"
    expect "system fetchmail: DELE+QUIT kept the mbox's inode, owner, group and mode ($before)" \
        test "$(mbox_identity "$SFM")" = "$before"

    rc=$(mpoprc "$SMP" user)
    run "system mpop: auth user" 0 "$M/system.log" mpop -q -C "$rc" "$SMP"
    messages "system mpop" --lf "$M/$SMP/new"/*

    maildir "$G/system"
    chown -R nobody "$G/system"
    mkdir -p "$G/system-state"
    sed -e "s|^username = .*|username = $SGM|" -e "s|^port = .*|port = $sport|" \
        -e "s|^path = .*|path = $G/system/|" "$G/rc" >"$G/system.rc"
    run "system getmail: retrieve all, keep" 0 "$G/system.log" \
        getmail --rcfile "$G/system.rc" --getmaildir "$G/system-state"
    messages "system getmail" --lf --added Return-Path "$G/system/new"/*
    PORT=$users_port

    # From openbsd-inetd, with the line of scripts/deploy/system-users/inetd.conf: address,
    # port, binary and spool changed, nothing else.
    local iport
    iport=$(free_port)
    sed -e "s|^pop3[[:space:]]|127.0.0.1:$iport\t|" \
        -e "s|/usr/local/sbin/pop3d|$BIN|" \
        -e "s|--system-users\$|--system-users --maildrop $SPOOL/%u --log-file $T/pop3d-system-inetd.log|" \
        scripts/deploy/system-users/inetd.conf >"$T/inetd-system.conf"
    expect "system inetd: the example line was adapted (address, port, paths)" \
        grep -q "^127.0.0.1:$iport[[:space:]].*[[:space:]]root[[:space:]]$BIN[[:space:]].*--inetd --system-users --maildrop $SPOOL/%u" \
        "$T/inetd-system.conf"
    # inetd, and so each pop3d it starts, with only the capabilities that
    # scripts/deploy/system-users/pop3d@.service keeps.
    setpriv --bounding-set -all,+setuid,+setgid --inh-caps -all \
        inetd -d "$T/inetd-system.conf" >"$T/inetd-system.log" 2>&1 &
    SYSTEM_INETD_PID=$!
    if wait_port "$iport"; then
        mkdir -p "$T/system-inetd-curl"
        run "system inetd: curl RETR 1..$COUNT" 0 "$T/system-inetd-curl.log" curl -q -sS \
            --max-time 50 -u "$SIN:$PW" -o "$T/system-inetd-curl/#1" "pop3://127.0.0.1:$iport/[1-$COUNT]"
        messages "system inetd curl" "$T/system-inetd-curl"/*
        before=$(mbox_identity "$SIN")
        # -I: DELE has a one-line answer, no body (libcurl's CURLOPT_CUSTOMREQUEST, POP3).
        run "system inetd: curl DELE 1" 0 "$T/system-inetd-dele.log" curl -q -sS --max-time 50 \
            -u "$SIN:$PW" -I -X DELE "pop3://127.0.0.1:$iport/1"
        expect "system inetd: DELE+QUIT kept the mbox's inode, owner, group and mode ($before)" \
            test "$(mbox_identity "$SIN")" = "$before"
        expect "system inetd: message 1 is gone from the mbox" \
            test "$(stat -c %s "$SPOOL/$SIN")" -lt "$(stat -c %s "$FIX/mbox")"
    else
        fail "system inetd listens on 127.0.0.1:$iport"
        show "$T/inetd-system.log"
    fi

    expect "system: no file in the spool belongs to root" no_root_files
    echo "# the spool after the sessions (name owner group mode):"
    stat -c '#   %n %U %G %a' "$SPOOL"/* | sed -e "s|$SPOOL/||"
    local lock_ok=1
    for name in "$SPL" "$SCU" "$SFM" "$SMP" "$SGM" "$SIN"; do
        [ "$(stat -c '%U %G %a' "$SPOOL/$name.pop3d" 2>/dev/null)" = "$name mail 600" ] || lock_ok=
    done
    expect "system: each session lock file is the user's, group mail, 0600" test -n "$lock_ok"
    expect "system: no dotlock or journal is left in the spool" \
        test -z "$(find "$SPOOL" -name '*.lock' -o -name '*.pop3d-journal')"
    if [ "$FAILED" -gt 0 ]; then
        echo "# pop3d --system-users log (last lines):"
        show "$T/pop3d-system.log"
    fi
}
system_users

# --- fail2ban: scripts/deploy/fail2ban/pop3d.conf against the lines pop3d wrote above ---------
echo "# fail2ban"
# One more failure on the users-file server: an AUTH PLAIN name that forges the fields after
# it (AUTH PLAIN takes any authcid); fail2ban must still see the client's address only.
python3 - "$PORT" <<'PYEOF'
import base64, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
f = s.makefile("rb")
f.readline()
name = b'x" rhost=198.51.100.1 mechanism=PASS user="y'
s.sendall(b"AUTH PLAIN " + base64.b64encode(b"\0" + name + b"\0wrong") + b"\r\n")
print(f.readline().decode().strip())
s.sendall(b"QUIT\r\n")
f.readline()
PYEOF
# fail2ban-regex reads the filter with its include (common.conf, from the fail2ban package)
# from one directory.
F2B=$T/fail2ban/filter.d
mkdir -p "$F2B"
cp /etc/fail2ban/filter.d/common.conf scripts/deploy/fail2ban/pop3d.conf "$F2B/"
# as_syslog LOG: the same lines as rsyslog writes what pop3d sends to /dev/log under --inetd
# ("Dec  6 01:05:09 host pop3d[PID]: text", no level).
as_syslog() {
    python3 -c '
import sys, time
for line in open(sys.argv[1]):
    stamp, program, level, text = line.split(None, 3)
    t = time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
    sys.stdout.write("%s interop %s: %s" % (time.strftime("%b %e %H:%M:%S", t), program, text))
' "$1"
}
# fail2ban_finds LABEL LOG: the filter matches every failed login in LOG, and each match names
# the client, 127.0.0.1.
fail2ban_finds() {
    local label=$1 log=$2 want
    want=$(grep -c ': auth failed: ' "$log")
    fail2ban_check "fail2ban: $label: the filter finds all $want failed logins, each from 127.0.0.1" \
        "$log" "$F2B/pop3d.conf" "$want" '127\.0\.0\.1'
}
expect "fail2ban: the users-file server logged the forged name escaped" \
    grep -qF 'auth failed: rhost=127.0.0.1 mechanism=PLAIN user="x\" rhost=198.51.100.1 mechanism=PASS user=\"y"' "$T/pop3d.log"
fail2ban_finds "users-file server, --log-file" "$T/pop3d.log"
as_syslog "$T/pop3d.log" >"$T/pop3d.syslog"
fail2ban_finds "users-file server, syslog form" "$T/pop3d.syslog"
if [ -f "$T/pop3d-system.log" ]; then
    fail2ban_finds "--system-users server, --log-file" "$T/pop3d-system.log"
fi

# fail2ban's own configuration test (fail2ban-client -t) on the shipped jail, in a private
# config dir: the package's fail2ban.conf, jail.conf, paths and actions, our filter and jail.
# A jail fail2ban rejects (a logpath that does not exist, as /var/log/mail.log on a Debian 12
# without rsyslog) stops every jail. The default reads the journal; -t checks that backend
# without opening a journal (there may be no systemd here), so the file variant the jail
# describes is tested too, on a log that exists, and with a missing file it must be rejected
# (else the test proves nothing).
F2C=$T/fail2ban-config
mkdir -p "$F2C/filter.d" "$F2C/jail.d"
cp /etc/fail2ban/fail2ban.conf /etc/fail2ban/jail.conf /etc/fail2ban/paths-*.conf "$F2C/"
cp -r /etc/fail2ban/action.d "$F2C/"
cp /etc/fail2ban/filter.d/common.conf scripts/deploy/fail2ban/pop3d.conf "$F2C/filter.d/"
# f2b_jail LOGPATH: the shipped jail, or with LOGPATH its file variant reading LOGPATH.
f2b_jail() {
    if [ -z "${1:-}" ]; then
        cp scripts/deploy/fail2ban/jail.local "$F2C/jail.d/pop3d.local"
    else
        sed -e '/^backend *=/d' -e '/^journalmatch *=/d' \
            -e 's/^#   backend = auto$/backend = auto/' \
            -e "s|^#   logpath = .*|logpath = $1|" \
            scripts/deploy/fail2ban/jail.local >"$F2C/jail.d/pop3d.local"
    fi
}
f2b_accepts() { fail2ban-client -c "$F2C" -t >"$T/fail2ban-t.out" 2>&1; }
f2b_rejects() { ! f2b_accepts; }
f2b_jail
expect "fail2ban: fail2ban-client -t accepts the shipped jail (systemd journal)" f2b_accepts
expect "fail2ban: the shipped jail reads pop3d's journal lines" \
    grep -qx 'journalmatch *= *SYSLOG_IDENTIFIER=pop3d' "$F2C/jail.d/pop3d.local"
f2b_jail "$T/pop3d.syslog"
expect "fail2ban: the jail's file variant names a logpath" \
    grep -qx "logpath = $T/pop3d.syslog" "$F2C/jail.d/pop3d.local"
expect "fail2ban: fail2ban-client -t accepts the jail's file variant on an existing log" f2b_accepts
f2b_jail "$T/no-such-mail.log"
expect "fail2ban: fail2ban-client -t rejects the file variant on a missing log" f2b_rejects

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    fail "pop3d still running at the end"
fi
if [ "$FAILED" -gt 0 ]; then
    echo "# pop3d log (last lines):"
    show "$T/pop3d.log"
fi
echo "# $((SECONDS - START)) s"
summary
