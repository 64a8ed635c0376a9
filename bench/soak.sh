#!/usr/bin/env bash
# bench/soak.sh: is emu's memory flat over a long run? `emu up` with one demo service, a steady
# load from bench-rate, and emu's resident memory (VmRSS of the emu process alone, not its
# instances) sampled every 10 s. Prints a markdown report: RSS after the warm-up (5 min by
# default), at the end, the range in between, and the drift in % of the warm value.
#
#   bench/soak.sh                          # 1 h at 200 requests/s (the figure in RESULTS.md)
#   SECONDS_TOTAL=600 RATE=100 bench/soak.sh
#   NO_BUILD=1 bench/soak.sh               # use target/release as it is
#
# The timeline (/_emu/events) is bounded by time, so over an hour it fills and then holds; the
# request path keeps no per-request state after the answer. Anything that grows shows here.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SECONDS_TOTAL="${SECONDS_TOTAL:-3600}"
WARMUP="${WARMUP:-300}"
RATE="${RATE:-200}"
CONNS="${CONNS:-16}"
EMU_PORT="${EMU_PORT:-18480}"
EVERY=10

build -p emulator -p bench-hello
need_free_port "$EMU_PORT"

cat >"$WORK/emu.toml" <<EOF
[[service]]
name = "soak"
command = ["$BIN/emu", "demo-app"]
min_instances = 1
concurrency = 80
EOF
pushd "$WORK" >/dev/null
spawn emu "$BIN/emu" up --port "$EMU_PORT" --backends none --request-log off
popd >/dev/null
emu_pid="${PIDS[-1]}"
wait_port "$EMU_PORT"
for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$EMU_PORT/" >/dev/null 2>&1 && break
    sleep 0.2
done

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
log "bench: soak at $RATE requests/s for ${SECONDS_TOTAL}s; emu pid $emu_pid"
spawn rate "$BIN/bench-rate" "http://127.0.0.1:$EMU_PORT/" "$RATE" "$SECONDS_TOTAL" "$CONNS" 0
rate_pid="${PIDS[-1]}"

start=$(date +%s)
: >"$WORK/rss.tsv"
while kill -0 "$rate_pid" 2>/dev/null; do
    printf '%s\t%s\n' "$(( $(date +%s) - start ))" "$(rss_kb "$emu_pid")" >>"$WORK/rss.tsv"
    sleep "$EVERY"
done
wait "$rate_pid" || die "bench-rate failed: $(cat "$WORK/rate.err")"
events=$(curl -s "http://127.0.0.1:$EMU_PORT/_emu/events?since=0" | grep -o '"ts_ms"' | wc -l)

warm=$(awk -v w="$WARMUP" '$1 >= w { print $2; exit }' "$WORK/rss.tsv")
[ -n "$warm" ] || die "the run was shorter than the warm-up ($WARMUP s)"
end=$(tail -n 1 "$WORK/rss.tsv" | cut -f2)
read -r lo hi < <(awk -v w="$WARMUP" '$1 >= w { if (!n++ || $2 < lo) lo = $2; if ($2 > hi) hi = $2 } END { print lo, hi }' "$WORK/rss.tsv")
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f", (a - b) * 100 / b }'; }

echo "## Soak: emu's memory at $RATE requests/s for $((SECONDS_TOTAL / 60)) min"
echo
machine
echo
echo "| measure | value |"
echo "|---|---|"
echo "| RSS after ${WARMUP}s warm-up | $((warm / 1024)).$(( (warm % 1024) * 10 / 1024 )) MiB |"
echo "| RSS at the end | $((end / 1024)).$(( (end % 1024) * 10 / 1024 )) MiB ($(pct "$end" "$warm") %) |"
echo "| lowest / highest after warm-up | $(pct "$lo" "$warm") % / $(pct "$hi" "$warm") % |"
echo "| timeline entries at the end | $events |"
echo "| client | $(tail -n 3 "$WORK/rate.out" | tr '\n' ' ') |"
echo
echo "Samples (s, KiB) every ${EVERY}s: $(awk 'NR % 30 == 1 { printf "%s:%s ", $1, $2 }' "$WORK/rss.tsv")"
