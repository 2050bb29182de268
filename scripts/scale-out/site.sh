# The scale-out site on loopback, for scripts/scale-demo.sh and scripts/scale-test.sh (sourced
# from the repository root, after scripts/lib/packages.sh):
#
#   two pop3d backends (A: the default route, B: bob and dave), each trusting nginx's address
#   (127.0.0.1) as a PROXY protocol sender; pop3d-router in one of its two modes; and nginx in
#   a private prefix (never the system's configuration): stream {} in front, mail {} behind.
#
# Every process started is recorded in SCALE_PIDS; scale_stop_all ends exactly those.

SCALE_MODULES=/usr/lib/nginx/modules
# The test CA and certificate for nginx's TLS (tls_make_certs).
. scripts/tls/site.sh
SCALE_PIDS=()
# The site's Python helpers leave no __pycache__ in the source tree.
export PYTHONDONTWRITEBYTECODE=1

# nginx with its mail and stream modules, python3 for the site's clients, and procmail's
# lockfile for the dotlock when a user is moved between backends.
scale_need_packages() {
    need_packages nginx:nginx python3:python3 lockfile:procmail \
        "$SCALE_MODULES/ngx_mail_module.so:libnginx-mod-mail" \
        "$SCALE_MODULES/ngx_stream_module.so:libnginx-mod-stream"
}

# Prints N free loopback ports (held together while chosen, so they differ).
scale_free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
ports = [s.getsockname()[1] for s in held]
# Closed before printing: the caller reads the ports through a pipe and binds them at once,
# while this process could otherwise still be holding them.
for s in held:
    s.close()
print(" ".join(map(str, ports)))
PY
}

# Waits until HOST:PORT accepts a connection (at most 10 s). The connection is made from
# 127.0.0.3, which no backend trusts, so that probing a backend is not a headerless proxy.
scale_wait_port() {
    python3 - "$1" <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
deadline = time.time() + 10
while True:
    try:
        socket.create_connection((host, int(port)), 1, ("127.0.0.3", 0)).close()
        sys.exit(0)
    except OSError:
        if time.time() > deadline:
            sys.exit("nothing listens on " + sys.argv[1])
        time.sleep(0.05)
PY
}

# Starts a program in the background with its output in a file, and records it.
scale_spawn() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 </dev/null &
    SCALE_PIDS+=($!)
}

# Ends every process this script started, by its own pid only.
scale_stop_all() {
    local pid
    for pid in "${SCALE_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${SCALE_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    SCALE_PIDS=()
}

# scale_start_backends DIR BIN_DIR PORT_A PORT_B [pop3d options...]
# Writes the site's users and mboxes under DIR and starts pop3d for A and B, with the given
# options (--trusted-proxy 127.0.0.1, for nginx's address, among them). Each listens with
# --secure-listen: nginx has checked TLS (or a loopback client) before it logs in there.
scale_start_backends() {
    local dir=$1 bin=$2 port_a=$3 port_b=$4
    shift 4
    python3 scripts/scale-out/fixture.py setup "$dir"
    sed -e "s/@BACKEND_A@/127.0.0.1:$port_a/" -e "s/@BACKEND_B@/127.0.0.1:$port_b/" \
        "$dir/routes.in" >"$dir/routes"
    local backend port
    for backend in a b; do
        [ "$backend" = a ] && port=$port_a || port=$port_b
        scale_spawn "$dir/$backend/stderr" "$bin/pop3d" \
            --secure-listen "127.0.0.1:$port" --users "$dir/$backend/users" \
            --maildrop "$dir/$backend/mail/%u" --hostname "backend-$backend.test" \
            --log-file "$dir/$backend/pop3d.log" "$@"
    done
    scale_wait_port "127.0.0.1:$port_a"
    scale_wait_port "127.0.0.1:$port_b"
}

# scale_start_router DIR BIN_DIR NAME PORT [--users FILE]
scale_start_router() {
    local dir=$1 bin=$2 name=$3 port=$4
    shift 4
    scale_spawn "$dir/$name.stderr" "$bin/pop3d-router" --listen "127.0.0.1:$port" \
        --routes "$dir/routes" --log-file "$dir/$name.log" "$@"
    scale_wait_port "127.0.0.1:$port"
}

# scale_start_nginx PREFIX PUBLIC_PORT MAIL_PORT ROUTER_PORT POP3_AUTH PER_ADDRESS CAPABILITIES
#                   PUBLIC_TLS_PORT MAIL_TLS_PORT
# Renders scripts/scale-out/nginx.conf into PREFIX, with a certificate for localhost from a
# CA made for it (PREFIX/certs/ca.pem), and runs nginx there in the foreground.
scale_start_nginx() {
    local prefix=$1 public=$2 mail=$3 router=$4 pop3_auth=$5 per_address=$6 capabilities=$7
    local public_tls=$8 mail_tls=$9
    mkdir -p "$prefix"
    tls_make_certs "$prefix/certs" || return 1
    # '|' cannot occur in any value, so it delimits the substitutions.
    sed -e "s|@MODULES@|$SCALE_MODULES|g" \
        -e "s|@PREFIX@|$prefix|g" \
        -e "s|@PUBLIC@|127.0.0.1:$public|g" \
        -e "s|@MAIL@|127.0.0.1:$mail|g" \
        -e "s|@STREAM_FROM@|127.0.0.1|g" \
        -e "s|@ROUTER@|127.0.0.1:$router|g" \
        -e "s|@POP3_AUTH@|$pop3_auth|g" \
        -e "s|@PER_ADDRESS@|$per_address|g" \
        -e "s|@HOSTNAME@|proxy.test|g" \
        -e "s|@CAPABILITIES@|$capabilities|g" \
        -e "s|@PUBLIC_TLS@|127.0.0.1:$public_tls|g" \
        -e "s|@MAIL_TLS@|127.0.0.1:$mail_tls|g" \
        -e "s|@CERT@|$prefix/certs/server.pem|g" \
        -e "s|@KEY@|$prefix/certs/server.key|g" \
        -e "s|@STARTTLS@|on|g" \
        scripts/scale-out/nginx.conf >"$prefix/nginx.conf"
    nginx -t -q -p "$prefix" -c "$prefix/nginx.conf" -g "pid $prefix/nginx.pid;"
    scale_spawn "$prefix/stderr" nginx -p "$prefix" -c "$prefix/nginx.conf" \
        -g "daemon off; pid $prefix/nginx.pid;"
    scale_wait_port "127.0.0.1:$public"
    scale_wait_port "127.0.0.1:$public_tls"
}
