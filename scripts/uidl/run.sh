#!/usr/bin/env bash
# The UIDL compatibility suite of issue 15: every compatible scheme of pop3d against the real
# old server (popa3d, solid-pop3d, Dovecot 2.3, mailutils) on the fixture mbox, pop3d's ids
# taken from `pop3d --uidl-report`. Needs root and Debian's package archive (peers.sh
# downloads the servers once with apt-get download into /var/tmp/pop3d-uidl-peers).
# Prints one line per scheme and "N passed, M failed"; options go to compare.py (-v, --keep
# DIR, --servers LIST, --splits).
set -euo pipefail
cd "$(dirname "$0")/../.."

. scripts/lib/common.sh
if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/uidl/run.sh: needs root (the old servers run in a private mount namespace)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
pop3d_build
export POP3D
exec python3 scripts/uidl/compare.py "$@"
