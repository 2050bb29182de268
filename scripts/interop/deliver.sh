#!/bin/sh
# An MDA for the interop suite: stores the message on stdin, byte for byte, as the next
# numbered file (001, 002, ...) in the directory given as $1.
set -eu
n=$(ls "$1" | wc -l)
exec cat > "$1/$(printf '%03d' $((n + 1)))"
