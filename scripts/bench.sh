#!/usr/bin/env bash
# The benchmark; see scripts/bench/run.sh for what it runs and its options (--peer dovecot,
# --smoke, --small, --runs N), and scripts/bench/RESULTS.md for the last full run.
exec "$(dirname "$0")/bench/run.sh" "$@"
