#!/usr/bin/env bash
# The project's test command (README): installs and starts what the tests need when it is
# missing (scripts/test-deps.sh), then checks formatting and lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/test-deps.sh

# --- Checks and tests --------------------------------------------------------------------------
say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
say "cargo test"
cargo test --workspace --no-fail-fast
