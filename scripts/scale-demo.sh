#!/usr/bin/env bash
# Runs the scale-out layout on loopback, in the foreground until Ctrl-C: two pop3d backends
# with the users split between them, pop3d-router checking passwords (--users), and nginx's
# mail proxy in a private prefix (never the system's nginx configuration), with a stream {}
# per-address cap in front. Installs nginx's mail and stream modules when missing. Then it
# prints how to connect, and follows the logs: pop3d logs the client's own address.
set -euo pipefail
cd "$(dirname "$0")/.."

PROXY_PORT=${POP3D_SCALE_PORT:-1110}          # where clients connect (stream {})
MAIL_PORT=${POP3D_SCALE_MAIL_PORT:-1111}      # nginx's mail {} behind it, loopback only
PORT_A=${POP3D_SCALE_BACKEND_A:-1101}
PORT_B=${POP3D_SCALE_BACKEND_B:-1102}
ROUTER_PORT=${POP3D_SCALE_ROUTER:-9110}
TLS_PORT=${POP3D_SCALE_TLS_PORT:-1995}        # POP3S (stream {}, then mail {} decrypts)
MAIL_TLS_PORT=${POP3D_SCALE_MAIL_TLS_PORT:-1996}

. scripts/lib/common.sh
. scripts/lib/packages.sh
. scripts/scale-out/site.sh

scale_need_packages
pop3d_build

DIR=$(mktemp -d /tmp/pop3d-scale-demo.XXXXXX)
cleanup() {
    scale_stop_all
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in "$PROXY_PORT" "$MAIL_PORT" "$PORT_A" "$PORT_B" "$ROUTER_PORT" "$TLS_PORT" "$MAIL_TLS_PORT"; do
    if wait_port "$port" 0; then
        echo "port $port is in use; choose others with POP3D_SCALE_* (see the top of $0)" >&2
        exit 1
    fi
done

scale_start_backends "$DIR" "$PORT_A" "$PORT_B" --trusted-proxy 127.0.0.1
scale_start_router "$DIR" router "$ROUTER_PORT" --users "$DIR/router-users"
CAPABILITIES=$(timeout 10 python3 scripts/scale-out/fixture.py capa "127.0.0.1:$PORT_A")
scale_start_nginx "$DIR/nginx" "$PROXY_PORT" "$MAIL_PORT" "$ROUTER_PORT" \
    "plain apop cram-md5" 10 "$CAPABILITIES" "$TLS_PORT" "$MAIL_TLS_PORT"

cat <<INFO
pop3d scale-out demo: $DIR
  nginx (stream + mail)  127.0.0.1:$PROXY_PORT   config: $DIR/nginx/nginx.conf
  nginx POP3S            127.0.0.1:$TLS_PORT   CA: $DIR/nginx/certs/ca.pem
  pop3d-router --users   127.0.0.1:$ROUTER_PORT   routes: $DIR/routes
  pop3d backend A        127.0.0.1:$PORT_A   alice / wonderland, carol / c4r0l pass, erin / 3r1n
  pop3d backend B        127.0.0.1:$PORT_B   bob / builder, dave / d4v3:colon

Connect through the proxy from another terminal:
  telnet 127.0.0.1 $PROXY_PORT        (or: nc -C 127.0.0.1 $PROXY_PORT)
  then type:  USER bob / PASS builder / LIST / TOP 1 0 / QUIT
  (nginx answers the greeting and CAPA itself; after PASS you talk to backend B)
With TLS (POP3S, or STLS on $PROXY_PORT), the certificate checked against the demo's CA:
  curl --cacert $DIR/nginx/certs/ca.pem -u bob:builder pop3s://localhost:$TLS_PORT/1
  curl --cacert $DIR/nginx/certs/ca.pem --ssl-reqd -u bob:builder pop3://localhost:$PROXY_PORT/1
From another address, to see it in pop3d's log below (Linux routes all of 127/8 to lo):
  telnet -b 127.0.0.2 127.0.0.1 $PROXY_PORT
To move erin to backend B (README, "Scaling out"), in $DIR:
  cp a/mail/erin b/mail/ && grep '^erin:' a/users >> b/users
  { echo "erin:127.0.0.1:$PORT_B"; cat routes; } > routes.new && mv routes.new routes
Ctrl-C stops everything. The logs follow.
INFO

# The logs in the foreground; recorded like the rest, so Ctrl-C ends it too.
tail -n 0 -F "$DIR/a/pop3d.log" "$DIR/b/pop3d.log" "$DIR/router.log" &
SCALE_PIDS+=($!)
wait "${SCALE_PIDS[-1]}"
