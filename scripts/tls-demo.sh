#!/usr/bin/env bash
# Runs pop3d behind stunnel on loopback, in the foreground until Ctrl-C: stunnel takes POP3S
# (scripts/deploy/tls/stunnel.conf) with a certificate made for this run by a throwaway CA,
# and passes each client's address to pop3d's secure listener in a PROXY header. pop3d also
# listens without TLS, where (for a client that is not on this host) it takes only APOP and
# CRAM-MD5. Installs stunnel4 when missing. Prints how to connect, then follows the logs.
set -euo pipefail
cd "$(dirname "$0")/.."

POP3S_PORT=${POP3D_TLS_PORT:-1995}            # stunnel: where clients connect with TLS
PLAIN_PORT=${POP3D_TLS_PLAIN_PORT:-1100}      # pop3d without TLS
SECURE_PORT=${POP3D_TLS_SECURE_PORT:-1996}    # pop3d's secure listener, for stunnel only

. scripts/lib/common.sh
. scripts/lib/packages.sh
. scripts/tls/site.sh

need_packages stunnel4:stunnel4 openssl:openssl
pop3d_build

DIR=$(mktemp -d /tmp/pop3d-tls-demo.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in "$POP3S_PORT" "$PLAIN_PORT" "$SECURE_PORT"; do
    if wait_port "$port" 0; then
        echo "port $port is in use; choose others with POP3D_TLS_* (see the top of $0)" >&2
        exit 1
    fi
done

tls_make_certs "$DIR/certs"
mkdir -p "$DIR/mail" "$DIR/stunnel"
printf '%s\n' 'demo:demo' 'alice:wonderland' >"$DIR/users"
chmod 600 "$DIR/users"
printf 'From alice@example.org Mon Nov 23 09:15:02 2026\nSubject: over TLS\n\nHello through stunnel.\n\n' \
    >"$DIR/mail/demo"
"$POP3D" --listen "127.0.0.1:$PLAIN_PORT" --secure-listen "127.0.0.1:$SECURE_PORT" \
    --trusted-proxy 127.0.0.1 --users "$DIR/users" --maildrop "$DIR/mail/%u" \
    --log-file "$DIR/pop3d.log" &
PIDS+=($!)
tls_render_stunnel "$DIR/stunnel/stunnel.conf" "127.0.0.1:$POP3S_PORT" "127.0.0.1:$SECURE_PORT" \
    "$DIR/certs" "$DIR/stunnel"
stunnel4 "$DIR/stunnel/stunnel.conf" >"$DIR/stunnel/stderr" 2>&1 &
PIDS+=($!)
wait_port "$POP3S_PORT" || { cat "$DIR/stunnel/stunnel.log" >&2; exit 1; }

cat <<INFO
pop3d TLS demo: $DIR
  stunnel POP3S     127.0.0.1:$POP3S_PORT   config: $DIR/stunnel/stunnel.conf
  pop3d (no TLS)    127.0.0.1:$PLAIN_PORT   logins demo / demo, alice / wonderland
  pop3d (secure)    127.0.0.1:$SECURE_PORT   for stunnel only (it sends a PROXY header first)
  test CA           $DIR/certs/ca.pem

From another terminal, with the certificate checked against the demo's CA:
  openssl s_client -quiet -CAfile $DIR/certs/ca.pem -verify_return_error \\
      -connect 127.0.0.1:$POP3S_PORT -servername localhost
  then type:  USER demo / PASS demo / LIST / RETR 1 / QUIT
  curl --cacert $DIR/certs/ca.pem -u demo:demo pop3s://localhost:$POP3S_PORT/1
From 127.0.0.2 the log below shows that address (Linux routes all of 127/8 to lo):
  curl --interface 127.0.0.2 --cacert $DIR/certs/ca.pem -u demo:demo pop3s://localhost:$POP3S_PORT/1
Ctrl-C stops everything. The logs follow.
INFO

tail -n 0 -F "$DIR/pop3d.log" "$DIR/stunnel/stunnel.log" &
PIDS+=($!)
wait "${PIDS[-1]}"
