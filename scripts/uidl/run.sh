#!/usr/bin/env bash
# The UIDL compatibility suite of issue 15: every compatible scheme of pop3d against the real
# old server (popa3d, solid-pop3d, Dovecot 2.3, mailutils) on the fixture mbox. Needs root and
# Debian's package archive (peers.sh downloads the servers once with apt-get download).
# Prints one line per scheme and "N passed, M failed"; options go to compare.py (-v, --keep
# DIR, --servers LIST, --splits).
set -euo pipefail
exec python3 "$(dirname "$0")/compare.py" "$@"
