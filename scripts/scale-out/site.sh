# The scale-out site on loopback, for scripts/scale-demo.sh and scripts/scale-out/run.sh
# (sourced from the repository root, after scripts/lib/common.sh and scripts/lib/packages.sh,
# and run after pop3d_build, whose POP3D and POP3D_ROUTER it starts):
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

# scale_wait_port PORT: wait_port, and a line on stderr when nothing came to listen.
scale_wait_port() {
    wait_port "$1" || { echo "nothing listens on 127.0.0.1:$1" >&2; return 1; }
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

# scale_start_backends DIR PORT_A PORT_B [pop3d options...]
# Writes the site's users and mboxes under DIR and starts pop3d for A and B, with the given
# options (--trusted-proxy 127.0.0.1, for nginx's address, among them). Each listens with
# --secure-listen: nginx has checked TLS (or a loopback client) before it logs in there.
scale_start_backends() {
    local dir=$1 port_a=$2 port_b=$3
    shift 3
    python3 scripts/scale-out/fixture.py setup "$dir"
    sed -e "s/@BACKEND_A@/127.0.0.1:$port_a/" -e "s/@BACKEND_B@/127.0.0.1:$port_b/" \
        "$dir/routes.in" >"$dir/routes"
    local backend port
    for backend in a b; do
        [ "$backend" = a ] && port=$port_a || port=$port_b
        scale_spawn "$dir/$backend/stderr" "$POP3D" \
            --secure-listen "127.0.0.1:$port" --users "$dir/$backend/users" \
            --maildrop "$dir/$backend/mail/%u" --hostname "backend-$backend.test" \
            --log-file "$dir/$backend/pop3d.log" "$@"
    done
    scale_wait_port "$port_a" && scale_wait_port "$port_b"
}

# scale_start_router DIR NAME PORT [--users FILE]
scale_start_router() {
    local dir=$1 name=$2 port=$3
    shift 3
    scale_spawn "$dir/$name.stderr" "$POP3D_ROUTER" --listen "127.0.0.1:$port" \
        --routes "$dir/routes" --log-file "$dir/$name.log" "$@"
    scale_wait_port "$port"
}

# scale_start_nginx PREFIX PUBLIC_PORT MAIL_PORT ROUTER_PORT POP3_AUTH PER_ADDRESS CAPABILITIES
#                   PUBLIC_TLS_PORT MAIL_TLS_PORT
# Renders scripts/deploy/scale-out/nginx.conf into PREFIX, with a certificate for localhost
# from a CA made for it (PREFIX/certs/ca.pem), and runs nginx there in the foreground.
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
        scripts/deploy/scale-out/nginx.conf >"$prefix/nginx.conf"
    nginx -t -q -p "$prefix" -c "$prefix/nginx.conf" -g "pid $prefix/nginx.pid;"
    scale_spawn "$prefix/stderr" nginx -p "$prefix" -c "$prefix/nginx.conf" \
        -g "daemon off; pid $prefix/nginx.pid;"
    scale_wait_port "$public" && scale_wait_port "$public_tls"
}
