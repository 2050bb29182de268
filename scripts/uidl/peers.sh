#!/usr/bin/env bash
# Runs a REAL old POP3 server on a copy of an mbox and prints its UIDL list (issue 15), one
# server per call, so pop3d's compatible schemes can be checked against the servers themselves.
#
#   scripts/uidl/peers.sh SERVER MBOX [OUT]
#
#   SERVER  popa3d | solid-pop3d | dovecot | dovecot-md5 | mailutils
#           (dovecot: pop3_uidl_format %08Xu%08Xv, the default; dovecot-md5: %m)
#   MBOX    the mbox to serve; never touched (the server gets a private copy)
#   OUT     if given, the copy as the server left it: Dovecot writes X-IMAPbase/X-UID into it,
#           mailutils X-UIDL (and X-IMAPbase/X-UID, Status)
#
# Prints "N ID" per message on stdout, as the server's UIDL answered. Needs root.
#
# The servers are Debian packages that conflict with each other as packages, so none is
# installed: `apt-get download` fetches them once into $UIDL_PEERS_CACHE (default
# /var/tmp/pop3d-uidl-peers) and `dpkg -x` unpacks them there. Each run happens in a private
# mount namespace (unshare -m) in which /etc is a copy with a test user added (with a
# password, for the servers that check one), and /var/mail and /var/lib are private
# directories: popa3d and solid-pop3d hard-code /var/mail/USER, popa3d chroots to
# /var/lib/popa3d, solid-pop3d reads /etc/spop3d.conf and /var/lib/solid-pop3d/bulletins.
# Nothing outside the namespace changes; the work directory is removed on exit.
#
# How each server is asked (scripts/uidl/pop3_ask.py, over a loopback TCP connection that the
# server gets as stdin/stdout, inetd-style): popa3d, solid-pop3d and mailutils' pop3d --inetd
# with USER/PASS; Dovecot's pop3 preauthenticated (doveconf -e, as for a pop3-over-ssh
# setup), which skips only its login process: the UIDL answer is its pop3 process's.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${UIDL_PEERS_CACHE:-/var/tmp/pop3d-uidl-peers}
ROOT=$CACHE/root
TEST_USER=uidlpeer
TEST_PASSWORD=uidl-peer-secret

usage() { sed -n '2,14p' "$0" >&2; exit 2; }

# The packages each server needs beyond what Debian's base system has (their libraries).
packages_for() {
    case "$1" in
        popa3d) echo popa3d ;;
        solid-pop3d) echo solid-pop3d ;;
        dovecot|dovecot-md5) echo dovecot-core dovecot-pop3d ;;
        mailutils) echo mailutils-pop3d libmailutils9 libmu-dbm9 libkyotocabinet16v5 \
            libmariadb3 liblzo2-2 ;;
        *) return 1 ;;
    esac
}

# unpack PACKAGE...: each package's files under $ROOT, downloaded once.
unpack() {
    local pkg deb
    mkdir -p "$CACHE/debs" "$ROOT"
    for pkg in "$@"; do
        [ -e "$CACHE/debs/$pkg.unpacked" ] && continue
        deb=$(ls "$CACHE/debs/${pkg}_"*.deb 2>/dev/null | head -n 1 || true)
        if [ -z "$deb" ]; then
            # apt-get download writes into the current directory.
            if ! (cd "$CACHE/debs" && apt-get download -qq "$pkg" >/dev/null 2>&1); then
                apt-get update -qq >/dev/null
                (cd "$CACHE/debs" && apt-get download -qq "$pkg" >/dev/null)
            fi
            deb=$(ls "$CACHE/debs/${pkg}_"*.deb | head -n 1)
        fi
        dpkg -x "$deb" "$ROOT"
        touch "$CACHE/debs/$pkg.unpacked"
    done
}

# free_id: a uid/gid number used by no account or group, for the test accounts.
free_id() {
    local id=$1
    while getent passwd "$id" >/dev/null || getent group "$id" >/dev/null; do
        id=$((id + 1))
    done
    echo "$id"
}

# quiet LOG COMMAND...: runs COMMAND with its stderr (a server's session log lines) in LOG,
# shown only if COMMAND fails.
quiet() {
    local log=$1
    shift
    if ! "$@" 2>"$log"; then
        cat "$log" >&2
        return 1
    fi
}

# ---- inside the private mount namespace ------------------------------------------------
in_namespace() {
    local server=$1 work=$2 uid=$3 out=$4
    local etc=$work/etc hash
    # A copy of /etc with the test accounts; lock files that vanish during the copy (another
    # process adding a user) do not matter.
    cp -a /etc "$etc" 2>/dev/null || true
    hash=$(openssl passwd -6 "$TEST_PASSWORD")
    add_account() { # name uid home shell hash
        echo "$1:x:$2:$2::$3:$4" >> "$etc/passwd"
        echo "$1:$5:19000:0:99999:7:::" >> "$etc/shadow"
        echo "$1:x:$2:" >> "$etc/group"
    }
    add_account "$TEST_USER" "$uid" "$work/home" /bin/sh "$hash"
    add_account popa3d $((uid + 1)) /nonexistent /usr/sbin/nologin '*'
    add_account spop3d $((uid + 2)) /nonexistent /usr/sbin/nologin '*'
    [ -e "$ROOT/etc/spop3d.conf" ] && cp "$ROOT/etc/spop3d.conf" "$etc/spop3d.conf"
    mount --bind "$etc" /etc
    # Mail spool as Debian has it (group mail, sticky, setgid) so dotlocks can be made.
    mount --bind "$work/mail" /var/mail
    mount --bind "$work/varlib" /var/lib

    local mbox=/var/mail/$TEST_USER
    local ask=(python3 "$HERE/pop3_ask.py")
    local login=(--user "$TEST_USER" --password "$TEST_PASSWORD")
    case "$server" in
        popa3d)
            "${ask[@]}" "${login[@]}" -- "$ROOT/usr/sbin/popa3d"
            ;;
        solid-pop3d)
            "${ask[@]}" "${login[@]}" -- "$ROOT/usr/sbin/solid-pop3d"
            ;;
        mailutils)
            cat > "$work/mailutils.conf" <<'EOF'
mailbox { mail-spool "/var/mail"; };
auth { authorization system; authentication system; };
logging { syslog no; };
EOF
            LD_LIBRARY_PATH=$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/lib/x86_64-linux-gnu \
                quiet "$work/mailutils.log" "${ask[@]}" "${login[@]}" -- \
                "$ROOT/usr/sbin/pop3d" --inetd --config-file="$work/mailutils.conf"
            ;;
        dovecot|dovecot-md5)
            local format='%08Xu%08Xv'
            [ "$server" = dovecot-md5 ] && format='%m'
            mkdir -p "$work/dovecot/run" "$work/dovecot/state" "$work/dovecot/index"
            chown -R "$uid:$uid" "$work/dovecot"
            cat > "$work/dovecot/dovecot.conf" <<EOF
base_dir = $work/dovecot/run
state_dir = $work/dovecot/state
log_path = $work/dovecot/dovecot.log
protocols = pop3
ssl = no
first_valid_uid = 1
default_login_user = $TEST_USER
default_internal_user = $TEST_USER
default_internal_group = $TEST_USER
mail_location = mbox:$work/home:INBOX=$mbox:INDEX=$work/dovecot/index
pop3_uidl_format = $format
EOF
            LD_LIBRARY_PATH=$ROOT/usr/lib/dovecot:$ROOT/usr/lib/dovecot/modules/old-stats \
                quiet "$work/dovecot/stderr.log" "${ask[@]}" --preauth -- setpriv --reuid "$uid" --regid "$uid" --clear-groups \
                env USER="$TEST_USER" HOME="$work/home" \
                "$ROOT/usr/bin/doveconf" -c "$work/dovecot/dovecot.conf" \
                -e "$ROOT/usr/lib/dovecot/pop3"
            ;;
    esac
    if [ -n "$out" ]; then
        cp "$mbox" "$out"
    fi
}

if [ "${1:-}" = --in-namespace ]; then
    shift
    in_namespace "$@"
    exit
fi

# ---- entry point ------------------------------------------------------------------------
[ $# -ge 2 ] && [ $# -le 3 ] || usage
SERVER=$1
MBOX=$2
OUT=${3:-}
packages_for "$SERVER" >/dev/null || usage
[ -f "$MBOX" ] || { echo "peers.sh: $MBOX: not a file" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "peers.sh: needs root (mount namespace, setuid servers)" >&2; exit 2; }
for tool in unshare setpriv openssl python3 apt-get dpkg; do
    command -v "$tool" >/dev/null || { echo "peers.sh: $tool not found" >&2; exit 2; }
done

# shellcheck disable=SC2046 # one word per package
unpack $(packages_for "$SERVER")

WORK=$(mktemp -d /tmp/pop3d-uidl-peers.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# The test user reaches its files through $WORK (Dovecot's paths).
chmod 755 "$WORK"
ID=$(free_id 42420)
mkdir -p "$WORK/mail" "$WORK/home" "$WORK/varlib/popa3d" "$WORK/varlib/solid-pop3d/bulletins"
chgrp mail "$WORK/mail"
chmod 3777 "$WORK/mail"
cp "$MBOX" "$WORK/mail/$TEST_USER"
chown "$ID:$ID" "$WORK/mail/$TEST_USER" "$WORK/home"
chmod 600 "$WORK/mail/$TEST_USER"
OUT_ABS=""
if [ -n "$OUT" ]; then
    OUT_ABS=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")
fi
unshare --mount --propagation private "$0" --in-namespace "$SERVER" "$WORK" "$ID" "$OUT_ABS"
