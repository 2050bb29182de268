#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, checks formatting
# and lints, runs the Rust tests (with the fault-injection points compiled in), then the
# suites that drive real programs against the built server.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/packages.sh
# procmail: the delivery tests append with the real delivery agent.
need_packages procmail:procmail

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --all-features --quiet -- -D warnings
echo "== cargo test"
cargo test --features fault-injection 2>&1

# Suites that drive real programs (mail clients, inetd, nginx) against the release build,
# then a short smoke pass of the benchmark (fails on errors or lost mail, never on a time).
failed=0
for suite in "scripts/interop.sh" "scripts/scale-test.sh" "scripts/bench.sh --smoke"; do
    if [ -x "${suite%% *}" ]; then
        echo "== $suite"
        $suite || { echo "FAILED: $suite"; failed=1; }
    fi
done
exit $failed
