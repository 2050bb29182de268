#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, checks formatting
# and lints, runs the Rust tests (with the fault-injection points compiled in), then the
# suites that drive real programs against the built server, then a smoke pass of the
# benchmark. Every step runs even if an earlier one failed; the last line counts the steps.
set -uo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/common.sh
. scripts/lib/packages.sh
# procmail: the delivery tests append with the real delivery agent; util-linux: setpriv.
need_packages procmail:procmail setpriv:util-linux

# step COMMAND...: one step, counted with pass/fail.
step() {
    echo "== $*"
    expect "$*" "$@"
}

step cargo fmt --check
step cargo clippy --all-targets --all-features --quiet -- -D warnings
step cargo test --features fault-injection
# Real mail clients and inetd, nginx's mail proxy in front of two backends, real clients
# through the TLS fronts (stunnel, nginx) and the plaintext policy in a namespace, the old POP3
# servers whose unique ids --uidl reproduces, and a short benchmark pass that fails on errors
# or lost mail, never on a time.
step scripts/interop/run.sh
step scripts/scale-out/run.sh
step scripts/tls/run.sh
step scripts/uidl/run.sh
step scripts/bench/run.sh --smoke

printf 'steps: '
summary
