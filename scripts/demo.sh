#!/usr/bin/env bash
# Runs pop3d in the foreground on a built-in demo setup: a temporary directory with a users
# file and an mbox of a few varied messages, listening on 127.0.0.1:1100. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

ADDR=${POP3D_DEMO_ADDR:-127.0.0.1:1100}
. scripts/lib/common.sh
pop3d_build
BIN=$POP3D

DIR=$(mktemp -d /tmp/pop3d-demo.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
mkdir -p "$DIR/mail"
printf '%s\n' '# name:password[:/path/to/mbox]' 'demo:demo' 'alice:wonderland' > "$DIR/users"
chmod 600 "$DIR/users"

cat > "$DIR/mail/demo" <<'MBOX'
From alice@example.org Mon Nov 23 09:15:02 2026
From: Alice <alice@example.org>
To: demo@localhost
Subject: Welcome to pop3d
Date: Mon, 23 Nov 2026 09:15:02 +0000
Message-ID: <welcome@example.org>

Hello!

This is the first demo message. Try RETR 1, TOP 1 0, UIDL and DELE.

From bob@example.net Tue Nov 24 18:40:11 2026
From: Bob <bob@example.net>
To: demo@localhost
Subject: Dots and quoted From lines
Date: Tue, 24 Nov 2026 18:40:11 +0000
Message-ID: <dots@example.net>

A line that starts with a dot is byte-stuffed on the wire:
.like this one
>From lines like this one were quoted by the delivery agent and are sent as they are.

From carol@example.com Wed Nov 25 07:00:00 2026
From: Carol <carol@example.com>
To: demo@localhost
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=
Date: Wed, 25 Nov 2026 07:00:00 +0000
Message-ID: <utf8@example.com>
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 8bit

Grüße aus dem Süden — an 8-bit body.

MBOX
cp "$DIR/mail/demo" "$DIR/mail/alice"

cat <<INFO
pop3d demo: $DIR
  users file: $DIR/users   (logins: demo / demo, alice / wonderland)
  mboxes:     $DIR/mail/%u
Connect from another terminal:
  telnet ${ADDR%:*} ${ADDR##*:}        (or: nc -C ${ADDR%:*} ${ADDR##*:})
  then type:  USER demo / PASS demo / STAT / LIST / RETR 1 / QUIT
Stop with Ctrl-C.
INFO
"$BIN" --listen "$ADDR" --users "$DIR/users" --maildrop "$DIR/mail/%u" --timeout 600
