#!/usr/bin/env bash
# CI's load test: `loadtest run peak`, compressed, against `emu up` running the demo (release
# builds, real PostgreSQL and Redis behind it). Prints report.md, appends it to the CI job summary
# when there is one, and exits with loadtest's code (0 pass, 1 SLO failed, 3 invalid run).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
cargo build --release --bin emu --bin loadtest

work=$(mktemp -d)
port=${PEAK_PORT:-18480}
(cd "$work" && exec "$repo/target/release/emu" up --port "$port" --request-log off) >"$work/emu.log" 2>&1 &
emu_pid=$!
cleanup() {
  kill -TERM "$emu_pid" 2>/dev/null || true
  wait "$emu_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 150); do
  curl -sf "http://127.0.0.1:$port/_emu/status" >/dev/null && break
  sleep 0.2
done

out=${LOADTEST_OUT:-$repo/loadtest-runs/ci-peak}
rm -rf "$out"
set +e
"$repo/target/release/loadtest" run peak --target "http://127.0.0.1:$port" \
  --duration "${PEAK_DURATION:-40s}" --no-progress --out "$out"
rc=$?
set -e
if [ -f "$out/report.md" ]; then
  cat "$out/report.md"
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then cat "$out/report.md" >>"$GITHUB_STEP_SUMMARY"; fi
fi
if [ "$rc" != 0 ]; then
  echo "== emu's log"; tail -n 50 "$work/emu.log"
fi
exit "$rc"
