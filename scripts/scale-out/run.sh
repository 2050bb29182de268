#!/usr/bin/env bash
# The scale-out suite: pop3d behind nginx's mail proxy with pop3d-router, all on loopback.
# Builds the release binaries, installs nginx's mail and stream modules when missing, starts
# two pop3d backends (--trusted-proxy 127.0.0.1, --max-per-ip 2), pop3d-router in both modes
# (--users, and route only) and an nginx in a private prefix in front of each router, then
# runs every check in scripts/scale-out/checks.py and a short sessions-per-second measurement,
# through the proxy and direct to one backend. Ends with "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."

. scripts/lib/common.sh
. scripts/lib/packages.sh
. scripts/scale-out/site.sh

scale_need_packages || { fail "nginx's mail and stream modules installed"; summary; exit 1; }
pop3d_build || { fail "cargo build --release"; summary; exit 1; }

DIR=$(mktemp -d /tmp/pop3d-scale-test.XXXXXX)
# SCALE_KEEP=1 keeps the site's directory (logs, mboxes, nginx.conf) for a look afterwards.
cleanup() {
    scale_stop_all
    if [ -n "${SCALE_KEEP:-}" ]; then
        echo "kept: $DIR"
    else
        rm -rf "$DIR"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r PORT_A PORT_B ROUTER_USERS ROUTER_ONLY PUBLIC MAIL PUBLIC_RO MAIL_RO \
    PUBLIC_TLS MAIL_TLS PUBLIC_RO_TLS MAIL_RO_TLS < <(free_port 12)

# nginx connects to the backends from 127.0.0.1.
scale_start_backends "$DIR" "$PORT_A" "$PORT_B" --trusted-proxy 127.0.0.1 --max-per-ip 2
scale_start_router "$DIR" router-users "$ROUTER_USERS" --users "$DIR/router-users"
scale_start_router "$DIR" router-route-only "$ROUTER_ONLY"
CAPABILITIES=$(timeout 10 python3 scripts/scale-out/fixture.py capa "127.0.0.1:$PORT_A")
# stream {}'s cap (20) above pop3d's (2), so that the per-address checks meet pop3d's.
scale_start_nginx "$DIR/nginx-users" "$PUBLIC" "$MAIL" "$ROUTER_USERS" \
    "plain apop cram-md5" 20 "$CAPABILITIES" "$PUBLIC_TLS" "$MAIL_TLS"
scale_start_nginx "$DIR/nginx-route-only" "$PUBLIC_RO" "$MAIL_RO" "$ROUTER_ONLY" \
    "plain" 20 "$CAPABILITIES" "$PUBLIC_RO_TLS" "$MAIL_RO_TLS"

export SCALE_DIR=$DIR
export SCALE_PROXY=127.0.0.1:$PUBLIC
export SCALE_PROXY_ROUTE_ONLY=127.0.0.1:$PUBLIC_RO
export SCALE_BACKEND_A=127.0.0.1:$PORT_A
export SCALE_BACKEND_B=127.0.0.1:$PORT_B

for check in $(python3 scripts/scale-out/checks.py list); do
    if timeout 60 python3 scripts/scale-out/checks.py "$check"; then
        pass "$check"
    else
        fail "$check"
    fi
done

# A TLS client through each nginx, POP3S and STLS, with the certificate checked against the
# CA made for that nginx; bob lives on backend B, whose log must show the client's address.
tls_client() {
    timeout 60 python3 - "$@" <<'PY'
import poplib, socket, ssl, sys
mode, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
# From 127.0.0.5, an address nothing else in the site uses, for backend B's log.
def connect(self, timeout):
    sock = socket.create_connection((self.host, self.port), timeout, ("127.0.0.5", 0))
    return self.context.wrap_socket(sock, server_hostname=self.host) if mode == "pop3s" else sock
if mode == "pop3s":
    poplib.POP3_SSL._create_socket = connect
    p = poplib.POP3_SSL("localhost", port, context=ctx, timeout=30)
else:
    poplib.POP3._create_socket = connect
    p = poplib.POP3("localhost", port, timeout=30)
    p.stls(ctx)
p.user("bob")
p.pass_("builder")
count, _ = p.stat()
p.quit()
sys.exit(0 if count > 0 else 1)
PY
}
for site in "users $PUBLIC $PUBLIC_TLS" "route-only $PUBLIC_RO $PUBLIC_RO_TLS"; do
    read -r name plain tls <<<"$site"
    ca=$DIR/nginx-$name/certs/ca.pem
    if tls_client pop3s "$tls" "$ca" && tls_client stls "$plain" "$ca"; then
        pass "tls_clients_log_in_through_nginx_$name (POP3S and STLS)"
    else
        fail "tls_clients_log_in_through_nginx_$name (POP3S and STLS)"
    fi
done
if grep -q "127.0.0.5:[0-9]*: connected, secure" "$DIR/b/pop3d.log"; then
    pass "backend_b_logs_the_tls_clients_address"
else
    fail "backend_b_logs_the_tls_clients_address"
fi

# Sessions per second, through the proxy and straight to backend A (the bench clients'
# addresses are not trusted proxies, so pop3d takes them as ordinary clients).
bench() {
    timeout 60 python3 scripts/scale-out/bench.py "$2" --clients 8 --seconds 3 --label "$1"
}
if bench "through nginx" "$SCALE_PROXY" && bench "direct to one backend" "$SCALE_BACKEND_A"; then
    pass "sessions_per_second_measured_without_errors"
else
    fail "sessions_per_second_measured_without_errors"
fi

# The router's refusals are logged in pop3d's failed-login line: fail2ban's filter for pop3d
# (scripts/deploy/fail2ban/pop3d.conf) finds each one, with nginx's client address.
need_packages fail2ban-regex:fail2ban
mkdir -p "$DIR/fail2ban"
cp /etc/fail2ban/filter.d/common.conf scripts/deploy/fail2ban/pop3d.conf "$DIR/fail2ban/"
refused=$(grep -c ': auth failed: rhost=' "$DIR/router-users.log")
fail2ban_check "fail2ban_filter_finds_the_routers_refused_logins ($refused)" \
    "$DIR/router-users.log" "$DIR/fail2ban/pop3d.conf" "$refused" '127\.0\.0\.[0-9]*'

if [ "$FAILED" -gt 0 ]; then
    for f in "$DIR"/a/pop3d.log "$DIR"/b/pop3d.log "$DIR"/router-*.log "$DIR"/nginx-*/error.log; do
        echo "---- last lines of ${f#"$DIR"/}"
        tail -n 15 "$f" 2>/dev/null
    done
fi
summary
