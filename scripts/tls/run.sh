#!/usr/bin/env bash
# TLS suite: pop3d behind its two tested TLS fronts (scripts/deploy/tls/), with real clients
# that verify the server certificate against a CA made for this run (never turned off).
#
#   stunnel  POP3S          --PROXY v1--> pop3d --secure-listen
#   nginx    POP3S + STLS   --PROXY v1--> pop3d --secure-listen  (pop3d-router --users)
#
# fetchmail, mpop, curl and Python's poplib fetch the interop fixtures through each front and
# every message must arrive byte for byte; pop3d's log must show the client's own address.
# Then, over a veth pair into a network namespace made here (in 10.203.0.0/16, picked by pid,
# removed on exit), the --plaintext-auth policy for a client that is not on this
# host: straight to pop3d it gets no USER, is refused USER/PASS and AUTH PLAIN, and logs in
# with APOP; through stunnel it logs in with USER/PASS, and a capture of the client's side
# never contains the password.
#
# Installs what it needs when missing (Debian packages); needs root (namespaces, tcpdump).
set -uo pipefail
shopt -s nullglob
cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/scripts/tls
INTEROP=$ROOT/scripts/interop
export PYTHONDONTWRITEBYTECODE=1

. scripts/lib/common.sh
. scripts/lib/packages.sh
. scripts/tls/site.sh

need_packages stunnel4:stunnel4 nginx:nginx "$TLS_MODULES/ngx_mail_module.so:libnginx-mod-mail" \
    openssl:openssl fetchmail:fetchmail mpop:mpop curl:curl python3:python3 \
    tcpdump:tcpdump ip:iproute2

if ! pop3d_build; then
    fail "cargo build --release"
    summary
    exit 1
fi

T=$(mktemp -d /tmp/pop3d-tls.XXXXXX)
NS=pop3d-tls-$$
VETH_HOST=p3tls$$h
VETH_NS=p3tls$$n
# A /30 of 10.203.0.0/16 picked by pid, so that two runs at once (or one left behind by a
# killed run) do not claim the same addresses.
NET=10.203.$(($$ % 256)).$(($$ / 256 % 64 * 4))
HOST_IP=${NET%.*}.$((${NET##*.} + 1))
NS_IP=${NET%.*}.$((${NET##*.} + 2))
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    # Deleting the namespace deletes its end of the veth pair, and with it the other end.
    ip netns del "$NS" 2>/dev/null
    ip link del "$VETH_HOST" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

# spawn LOG COMMAND...: a background process, recorded for cleanup.
spawn() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 </dev/null &
    PIDS+=($!)
}
show() { sed -e 's/^/#   /' "$1" | tail -n 30; }
# checks COMMAND...: a helper printing "ok - " / "not ok - " lines; each is counted.
checks() {
    local out rc line
    out=$(timeout 120 "$@" 2>&1)
    rc=$?
    while IFS= read -r line; do
        case $line in
        "ok - "*) pass "${line#ok - }" ;;
        "not ok - "*) fail "${line#not ok - }" ;;
        *) echo "$line" ;;
        esac
    done <<<"$out"
    [ "$rc" -eq 0 ] || grep -q '^not ok - ' <<<"$out" || fail "$* ended with status $rc"
}
# run NAME LOG COMMAND...: a client run, bounded, that must succeed.
run() {
    local name=$1 log=$2
    shift 2
    if timeout 120 "$@" >"$log" 2>&1; then pass "$name"; else fail "$name (exit $?)"; show "$log"; fi
}
# messages NAME [--lf] FILE...: the stored messages are the fixtures, byte for byte.
messages() {
    local name=$1
    shift
    checks python3 "$INTEROP/compare.py" messages "$name" "$FIX" "$@"
}
fresh_mbox() { cp "$FIX/mbox" "$T/mail/$1"; }

START=$SECONDS
FIX=$T/fixtures
python3 "$INTEROP/fixtures.py" "$FIX" || exit 1
PW='tls-only Secret 8d1f'
ME=$(id -un)
CERTS=$T/certs
# The namespace's side of the host, $HOST_IP, is in the certificate for the capture check.
if ! tls_make_certs "$CERTS" "$HOST_IP"; then
    fail "openssl makes a test CA and a server certificate"
    summary
    exit 1
fi
pass "openssl makes a test CA and a server certificate"
CA=$CERTS/ca.pem

# Client versions, for the record.
echo "# $("$POP3D" --version)"
echo "# $(stunnel4 -version 2>&1 | grep -m 1 '^stunnel')"
echo "# $(nginx -v 2>&1)"
echo "# $(openssl version)"
echo "# $(fetchmail -V 2>/dev/null | grep -m 1 'release')"
echo "# $(mpop --version | head -n 1)"
echo "# $(curl --version | head -n 1)"
echo "# $(python3 --version) poplib, $(python3 -c 'import ssl; print(ssl.OPENSSL_VERSION)')"

# --- the namespace: a client off this host -------------------------------------------------
ip netns add "$NS" &&
    ip link add "$VETH_HOST" type veth peer name "$VETH_NS" &&
    ip link set "$VETH_NS" netns "$NS" &&
    ip addr add "$HOST_IP/30" dev "$VETH_HOST" &&
    ip link set "$VETH_HOST" up &&
    ip netns exec "$NS" ip addr add "$NS_IP/30" dev "$VETH_NS" &&
    ip netns exec "$NS" ip link set "$VETH_NS" up &&
    ip netns exec "$NS" ip link set lo up
expect "a network namespace with a veth pair ($HOST_IP <-> $NS_IP)" \
    ip netns exec "$NS" python3 -c "import socket, sys
s = socket.socket()
s.settimeout(5)
# A refused connection (nothing listens yet) proves the route: the host answered with a reset.
sys.exit(s.connect_ex(('$HOST_IP', 9)) not in (0, 111))"

# --- pop3d, the router, the fronts ----------------------------------------------------------
USERS="fetchmail-stunnel fetchmail-nginx fetchmail-stls mpop-stunnel mpop-nginx mpop-stls
    curl-stunnel curl-nginx curl-stls poplib-stunnel poplib-nginx poplib-stls nsdirect nstls"
mkdir -p "$T/mail"
for u in $USERS; do echo "$u:$PW"; done >"$T/users"
chmod 600 "$T/users"
for u in $USERS; do fresh_mbox "$u"; done
PORTS=$(free_port 7)
read -r DIRECT SECURE ROUTER STUNNEL NGINX_S NGINX_P NS_STUNNEL <<<"$PORTS"
# Direct clients on loopback and, for the namespace, on $HOST_IP; the fronts on the
# secure listener. 127.0.0.1 (stunnel, nginx) must send a PROXY header.
spawn "$T/pop3d.stderr" "$POP3D" --listen "127.0.0.1:$DIRECT" --listen "$HOST_IP:$DIRECT" \
    --secure-listen "127.0.0.1:$SECURE" --trusted-proxy 127.0.0.1 \
    --users "$T/users" --maildrop "$T/mail/%u" --hostname tls.test --timeout 60 \
    --log-file "$T/pop3d.log"
echo "*:127.0.0.1:$SECURE" >"$T/routes"
spawn "$T/router.stderr" "$POP3D_ROUTER" --listen "127.0.0.1:$ROUTER" --routes "$T/routes" \
    --users "$T/users" --log-file "$T/router.log"
mkdir -p "$T/stunnel" "$T/stunnel-ns"
tls_render_stunnel "$T/stunnel/stunnel.conf" "127.0.0.1:$STUNNEL" "127.0.0.1:$SECURE" "$CERTS" "$T/stunnel"
# The same front for the namespace, on the host's side of the veth pair.
tls_render_stunnel "$T/stunnel-ns/stunnel.conf" "$HOST_IP:$NS_STUNNEL" "127.0.0.1:$SECURE" "$CERTS" "$T/stunnel-ns"
spawn "$T/stunnel/stderr" stunnel4 "$T/stunnel/stunnel.conf"
spawn "$T/stunnel-ns/stderr" stunnel4 "$T/stunnel-ns/stunnel.conf"
tls_render_nginx "$T/nginx" "127.0.0.1:$NGINX_S" "127.0.0.1:$NGINX_P" "127.0.0.1:$ROUTER" "$CERTS" \
    "plain apop cram-md5"
if ! nginx -t -q -p "$T/nginx" -c "$T/nginx/nginx.conf" -g "pid $T/nginx/nginx.pid;"; then
    fail "nginx -t accepts the rendered scripts/deploy/tls/nginx.conf"
fi
spawn "$T/nginx/stderr" tls_run_nginx "$T/nginx"
for port in "$DIRECT" "$SECURE" "$ROUTER" "$STUNNEL" "$NGINX_S" "$NGINX_P"; do
    if ! wait_port "$port"; then
        fail "something listens on 127.0.0.1:$port"
        for f in "$T"/pop3d.log "$T"/*.stderr "$T"/nginx/stderr "$T"/nginx/error.log; do show "$f"; done
        summary
        exit 1
    fi
done
pass "pop3d, pop3d-router, stunnel and nginx are up"

# --- Python's poplib -----------------------------------------------------------------------
# From 127.0.0.2, so that pop3d's log shows this client's address rather than the fronts'.
echo "# poplib"
checks python3 "$HERE/clients.py" fetch ssl "poplib POP3_SSL via stunnel" localhost "$STUNNEL" localhost \
    poplib-stunnel "$PW" "$CA" "$T/poplib-stunnel" 127.0.0.2
messages "poplib POP3_SSL via stunnel" "$T/poplib-stunnel"/*
checks python3 "$HERE/clients.py" fetch ssl "poplib POP3_SSL via nginx" localhost "$NGINX_S" localhost \
    poplib-nginx "$PW" "$CA" "$T/poplib-nginx" 127.0.0.2
messages "poplib POP3_SSL via nginx" "$T/poplib-nginx"/*
checks python3 "$HERE/clients.py" fetch stls "poplib stls() via nginx" localhost "$NGINX_P" localhost \
    poplib-stls "$PW" "$CA" "$T/poplib-stls" 127.0.0.2
messages "poplib stls() via nginx" "$T/poplib-stls"/*
expect "pop3d's log shows poplib's own address (127.0.0.2) through the fronts" \
    grep -q "^.*127\.0\.0\.2:[0-9]*: connected, secure" "$T/pop3d.log"

# --- curl --------------------------------------------------------------------------------------
echo "# curl"
COUNT=$(($(wc -l <"$FIX/names") - 1))
# -q: no ~/.curlrc; --cacert: the test CA is the only trusted root.
CURL=(curl -q -sS --max-time 100 --cacert "$CA" --interface 127.0.0.2)
curl_fetch() {
    local name=$1 url=$2 user=$3
    shift 3
    mkdir -p "$T/$user"
    run "$name: RETR 1..$COUNT" "$T/$user.log" "${CURL[@]}" "$@" -u "$user:$PW" \
        -o "$T/$user/#1" "$url/[1-$COUNT]"
    messages "$name" "$T/$user"/*
}
curl_fetch "curl pop3s:// via stunnel" "pop3s://localhost:$STUNNEL" curl-stunnel
curl_fetch "curl pop3s:// via nginx" "pop3s://localhost:$NGINX_S" curl-nginx
curl_fetch "curl pop3:// --ssl-reqd via nginx" "pop3://localhost:$NGINX_P" curl-stls --ssl-reqd
# Without the test CA, curl must refuse the server: the certificate really is checked.
expect "curl without the test CA refuses the certificate" \
    bash -c "! curl -q -sS --max-time 20 -u 'curl-nginx:$PW' 'pop3s://localhost:$NGINX_S/' >/dev/null 2>&1"

# --- fetchmail ---------------------------------------------------------------------------------
# Delivery through the interop suite's deliver.sh (one file per message); "invisible", "no
# rewrite" and "no stripcr" keep the message as sent. Everything about TLS and the login is
# fetchmail's default but for "ssl" (POP3S) where asked; it trusts the test CA through
# SSL_CERT_FILE, OpenSSL's default trust store, which fetchmail checks by default (sslcertck).
echo "# fetchmail"
F=$T/fetchmail
mkdir -p "$F/home"
fetchmail_fetch() {
    local name=$1 port=$2 user=$3 tls=$4 rc=$F/$3.rc
    cat >"$rc" <<EOF
set no bouncemail
set no syslog
set invisible
poll localhost port $port protocol pop3 timeout 60
    user "$user" there with password "$PW" is "$ME" here
    keep fetchall no rewrite no stripcr $tls
EOF
    chmod 600 "$rc"
    mkdir -p "$F/$user"
    run "$name" "$F/$user.log" env SSL_CERT_FILE="$CA" FETCHMAILHOME="$F/home" FETCHMAILUSER="$ME" \
        fetchmail --nodetach --verbose -f "$rc" --mda "$INTEROP/deliver.sh $F/$user"
    messages "$name" "$F/$user"/*
}
fetchmail_fetch "fetchmail ssl via stunnel" "$STUNNEL" fetchmail-stunnel ssl
fetchmail_fetch "fetchmail ssl via nginx" "$NGINX_S" fetchmail-nginx ssl
fetchmail_fetch "fetchmail defaults via nginx's STLS port" "$NGINX_P" fetchmail-stls ""
expect "fetchmail: defaults used STLS" grep -q 'POP3> STLS' "$F/fetchmail-stls.log"

# --- mpop --------------------------------------------------------------------------------------
# "tls on" with the test CA as its trust file; "auth" left at its default; stored with LF
# line ends (mpop's documented behaviour), so --lf. From 127.0.0.2 (source_ip).
echo "# mpop"
M=$T/mpop
mpop_fetch() {
    local name=$1 port=$2 user=$3 starttls=$4 rc=$M/$3.rc
    mkdir -p "$M/$user/cur" "$M/$user/new" "$M/$user/tmp"
    cat >"$rc" <<EOF
defaults
tls on
tls_starttls $starttls
tls_trust_file $CA
received_header off
keep on
uidls_file $M/uidls-%U

account $user
host localhost
port $port
source_ip 127.0.0.2
user $user
password "$PW"
delivery maildir $M/$user
EOF
    chmod 600 "$rc"
    run "$name" "$M/$user.log" mpop -d -C "$rc" "$user"
    messages "$name" --lf "$M/$user/new"/*
}
mkdir -p "$M"
mpop_fetch "mpop tls on via stunnel" "$STUNNEL" mpop-stunnel off
mpop_fetch "mpop tls on via nginx" "$NGINX_S" mpop-nginx off
mpop_fetch "mpop tls on, tls_starttls on via nginx" "$NGINX_P" mpop-stls on

# --- pop3d-router's policy, asked as nginx asks it ---------------------------------------------
# nginx's starttls only means no clear-text login reaches the router from the fronts above;
# here the router is asked directly, for a client off this host, without and with TLS.
router_ask() {
    curl -q -sS --max-time 10 -o /dev/null -D - -H "Auth-Method: plain" -H "Auth-User: nstls" \
        -H "Auth-Pass: ${PW// /%20}" -H "Auth-Protocol: pop3" -H "Auth-Login-Attempt: 1" \
        -H "Client-IP: 192.0.2.7" "$@" "http://127.0.0.1:$ROUTER/auth" | tr -d '\r'
}
expect "pop3d-router refuses plain from 192.0.2.7 without Auth-SSL, saying to use TLS" \
    grep -q '^Auth-Status: \[AUTH\] plaintext authentication disallowed.*use TLS$' <(router_ask)
expect "pop3d-router routes plain from 192.0.2.7 with Auth-SSL: on" \
    grep -q '^Auth-Status: OK$' <(router_ask -H "Auth-SSL: on")

# --- a client off this host, in the namespace -------------------------------------------------
echo "# policy over $NS_IP"
NSX=(ip netns exec "$NS")
checks "${NSX[@]}" python3 "$HERE/clients.py" open "straight to pop3d from $NS_IP" \
    "$HOST_IP" "$DIRECT" nsdirect "$PW"
expect "pop3d logs $NS_IP as insecure" grep -q "$NS_IP:[0-9]*: connected, insecure" "$T/pop3d.log"
# The capture: the namespace's side of the veth pair, while the client logs in with
# USER/PASS through stunnel and, as a control that the capture sees clear POP3, with APOP
# straight to pop3d.
# A 32 MB buffer: the 3 MB fixture message arrives in one burst, and a dropped packet could
# be the one with the password; --immediate-mode hands over every packet at once, where the
# kernel would otherwise keep the last ones in a block that stopping tcpdump throws away.
"${NSX[@]}" tcpdump -i "$VETH_NS" -B 32768 --immediate-mode -U -w "$T/ns.pcap" tcp >"$T/tcpdump.log" 2>&1 &
TCPDUMP=$!
PIDS+=("$TCPDUMP")
for _ in $(seq 50); do grep -q 'listening on' "$T/tcpdump.log" && break; sleep 0.1; done
checks "${NSX[@]}" python3 "$HERE/clients.py" fetch ssl "USER/PASS via stunnel from $NS_IP" \
    "$HOST_IP" "$NS_STUNNEL" "$HOST_IP" nstls "$PW" "$CA" "$T/nstls"
messages "USER/PASS via stunnel from $NS_IP" "$T/nstls"/*
checks "${NSX[@]}" python3 "$HERE/clients.py" apop "APOP straight to pop3d from $NS_IP (capture control)" \
    "$HOST_IP" "$DIRECT" nsdirect "$PW"
sleep 0.5
kill -INT "$TCPDUMP" 2>/dev/null
wait "$TCPDUMP" 2>/dev/null
expect "tcpdump dropped no packet" grep -q '^0 packets dropped by kernel' "$T/tcpdump.log"
expect "pop3d logs $NS_IP through stunnel as secure" \
    grep -q "$NS_IP:[0-9]*: connected, secure (secure listener)" "$T/pop3d.log"
checks python3 - "$T/ns.pcap" "$PW" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
password = sys.argv[2].encode()
print(("ok - " if b"APOP nsdirect " in data else "not ok - ") + "the capture holds the clear-text APOP session (%d octets)" % len(data))
print(("ok - " if password not in data else "not ok - ") + "the capture on the client's side never holds the password")
PY

# --- the end -----------------------------------------------------------------------------------
# How each client logged in, for the record: nginx's side (the router) and pop3d's.
sed -n -e 's/^.*INFO  [^ ]* \([a-z0-9-]* login as [a-z-]*\).*$/# router: \1/p' "$T/router.log" | sort -u
sed -n -e 's/^.*INFO  [^ ]* \([A-Z0-9/ -]* login as [a-z-]*\).*$/# pop3d: \1/p' "$T/pop3d.log" | sort -u
expect "pop3d's log and the router's have no password" \
    bash -c "! grep -qF '$PW' '$T/pop3d.log' '$T/router.log'"
for pid in "${PIDS[@]:0:5}"; do
    kill -0 "$pid" 2>/dev/null || fail "process $pid (pop3d, router, stunnel, nginx) still running"
done
if [ "$FAILED" -gt 0 ]; then
    for f in "$T"/pop3d.log "$T"/router.log "$T"/stunnel/stunnel.log "$T"/nginx/error.log; do
        echo "# $f"
        show "$f"
    done
fi
echo "# $((SECONDS - START)) s"
summary
