#!/usr/bin/env bash
# scripts/stress-tests.sh [N]: runs the whole test suite N times in a row (default 10) while a CPU
# hog keeps every core busy, and prints how many runs were green. A suite that passes here does
# not lean on an idle machine: its timing logic runs under paused time or polls for a state with
# generous bounds instead of asserting wall-clock windows.
#
#   bash scripts/stress-tests.sh        # 10 runs, each core loaded
#   HOG=0 bash scripts/stress-tests.sh 3
set -uo pipefail
cd "$(dirname "$0")/.."

runs="${1:-10}"
hog="${HOG:-$(nproc)}"
logdir="${STRESS_LOGS:-target/stress}"
mkdir -p "$logdir"

# What the suite needs (PostgreSQL, Redis, xmllint, the Docker engine and test images), as
# scripts/test.sh installs and starts it: without it a run fails on the machine, not the code.
source scripts/test-deps.sh >/dev/null

# Build first, unloaded and once: the runs measure the tests, not the compiler.
cargo test --workspace --no-run --quiet || exit 2

hogs=()
for _ in $(seq 1 "$hog"); do
  ( while :; do :; done ) &
  hogs+=($!)
done
stop_hogs() { for p in "${hogs[@]}"; do kill "$p" 2>/dev/null; done; }
trap stop_hogs EXIT

green=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  if cargo test --workspace --no-fail-fast >"$logdir/run-$i.log" 2>&1; then
    green=$((green + 1))
    verdict=green
  else
    verdict="RED (see $logdir/run-$i.log)"
    grep -E "^test .* FAILED$|^    [a-z_:]+$" "$logdir/run-$i.log" | head -20
  fi
  printf 'run %d/%d: %s in %ss\n' "$i" "$runs" "$verdict" "$(( $(date +%s) - start ))"
done
printf '%d of %d runs green with %d CPU hogs on %d cores\n' "$green" "$runs" "$hog" "$(nproc)"
[ "$green" -eq "$runs" ]
