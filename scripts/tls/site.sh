# The TLS fronts on loopback, for scripts/tls-demo.sh and scripts/tls/run.sh (sourced from the
# repository root): a throwaway CA and server certificate, and the fronts of scripts/deploy/tls/
# rendered with their @NAME@ placeholders filled in.

TLS_MODULES=/usr/lib/nginx/modules
# pop3d's pre-login CAPA without its SASL line, for nginx's pop3_capabilities.
TLS_CAPABILITIES='"TOP" "UIDL" "RESP-CODES" "AUTH-RESP-CODE" "PIPELINING" "USER" "EXPIRE NEVER"'

# tls_make_certs DIR [IP...]: DIR/ca.pem (a CA made for this run) and DIR/server.pem +
# DIR/server.key, signed by it, for localhost, 127.0.0.1 and each IP. The CA's key is thrown
# away with DIR; clients trust ca.pem and nothing else.
tls_make_certs() {
    local dir=$1 ip san="DNS:localhost,IP:127.0.0.1"
    shift
    for ip in "$@"; do san="$san,IP:$ip"; done
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=pop3d test CA $$" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return 1
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=localhost" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null || return 1
    printf '%s\n' "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
        "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null || return 1
    chmod 600 "$dir/server.key" "$dir/ca.key"
}

# tls_render_stunnel OUT PUBLIC BACKEND CERTDIR RUNDIR: stunnel.conf with its placeholders.
tls_render_stunnel() {
    local out=$1 public=$2 backend=$3 certs=$4 run=$5
    sed -e "s|@FOREGROUND@|yes|" -e "s|@LOG@|$run/stunnel.log|" -e "s|@PID@|$run/stunnel.pid|" \
        -e "s|@USER@|$(id -un)|" -e "s|@GROUP@|$(id -gn)|" \
        -e "s|@PUBLIC@|$public|" -e "s|@BACKEND@|$backend|" \
        -e "s|@CERT@|$certs/server.pem|" -e "s|@KEY@|$certs/server.key|" \
        scripts/deploy/tls/stunnel.conf >"$out"
}

# tls_render_nginx PREFIX POP3S POP3 ROUTER CERTDIR POP3_AUTH: nginx.conf into PREFIX.
tls_render_nginx() {
    local prefix=$1 pop3s=$2 pop3=$3 router=$4 certs=$5 pop3_auth=$6
    mkdir -p "$prefix"
    sed -e "s|@MODULES@|$TLS_MODULES|g" -e "s|@PREFIX@|$prefix|g" \
        -e "s|@HOSTNAME@|localhost|g" -e "s|@ROUTER@|$router|g" \
        -e "s|@POP3_AUTH@|$pop3_auth|g" -e "s|@CAPABILITIES@|$TLS_CAPABILITIES|g" \
        -e "s|@CERT@|$certs/server.pem|g" -e "s|@KEY@|$certs/server.key|g" \
        -e "s|@POP3S@|$pop3s|g" -e "s|@POP3@|$pop3|g" \
        scripts/deploy/tls/nginx.conf >"$prefix/nginx.conf"
}

# tls_run_nginx PREFIX: nginx from PREFIX in the foreground (the caller backgrounds it).
tls_run_nginx() {
    exec nginx -p "$1" -c "$1/nginx.conf" -g "daemon off; pid $1/nginx.pid;"
}
