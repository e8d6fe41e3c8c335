#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs every check and test.
set -euo pipefail
cd "$(dirname "$0")/.."
export SHADOWCAT_TEST_DEPS="${SHADOWCAT_TEST_DEPS:-$PWD/.test-deps}"
scripts/install-test-deps.sh "$SHADOWCAT_TEST_DEPS"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo clippy -p shadowcat-loadtest --all-targets -- -D warnings
cargo test --all-targets
cargo test --doc
cargo test -p shadowcat-loadtest
