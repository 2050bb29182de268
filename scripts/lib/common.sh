# Shared by every suite (source it from the repository root, after setting nothing):
#
#   pop3d_build            cargo build --release of both binaries; sets POP3D and POP3D_ROUTER
#                          to the built paths (taken from cargo, honouring CARGO_TARGET_DIR)
#   free_port              prints a free loopback TCP port
#   free_ports N           prints N different free loopback TCP ports (an addition)
#   wait_port PORT [SECS]  waits until 127.0.0.1:PORT accepts (default 10 s), else returns 1
#   pass NAME              prints "ok   NAME", counts a pass
#   fail NAME              prints "FAIL NAME", counts a failure
#   summary                prints "N passed, M failed" and returns non-zero if any failed

PASSED=0
FAILED=0

pop3d_build() {
    cargo build --release --quiet --bins || return 1
    # cargo's own idea of the target directory: CARGO_TARGET_DIR, a config file, or ./target.
    local target
    target=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])') || return 1
    POP3D=$target/release/pop3d
    POP3D_ROUTER=$target/release/pop3d-router
    [ -x "$POP3D" ] && [ -x "$POP3D_ROUTER" ]
}

# Ports come from below the kernel's ephemeral range: a port the kernel hands out (bind to 0)
# and frees again can be taken at once by any outgoing connection on a busy machine.
free_ports() {
    python3 - "$1" <<'PY'
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
held = []
while len(held) < int(sys.argv[1]):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randrange(10000, max(low, 10001))))
    except OSError:
        s.close()
        continue
    held.append(s)
ports = [s.getsockname()[1] for s in held]
# Closed before the ports are printed, so a caller reading them never races the close.
for s in held:
    s.close()
print(" ".join(map(str, ports)))
PY
}

free_port() {
    free_ports 1
}

wait_port() {
    local port=$1 secs=${2:-10} i
    for ((i = 0; i < secs * 10; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

pass() {
    echo "ok   $*"
    PASSED=$((PASSED + 1))
}

fail() {
    echo "FAIL $*"
    FAILED=$((FAILED + 1))
}

summary() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}
