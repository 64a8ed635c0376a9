#!/usr/bin/env bash
# bench/generator.sh: how efficient loadtest is as a load generator (issue 7), measured against wrk
# on the same target in the same run. Prints a markdown report.
#
#   bench/generator.sh               # build, then ~2.5 min of measuring
#   NO_BUILD=1 REPEATS=5 bench/generator.sh
#   LOADTEST=/path/to/loadtest PEAK=/path/to/peak.toml bench/generator.sh   # another build
#
# Target: bench-hello (bench/hello), reached directly, so the generator is what runs out first.
#   max rate   wrk -t$THREADS -c$CONNS -d${MAX_SECONDS}s, against `loadtest run` of a one-stage
#              scenario asking for 100000 rps with max_in_flight = $CONNS (loadtest then fails or voids the run,
#              exit 1 or 3: it could not produce the load; its report.json says what it did)
#   peak cost  `loadtest run peak --rps $PEAK_RPS --duration ${PEAK_SECONDS}s` (the peak scenario
#              compressed: ramp then hold); loadtest's CPU time (utime + stime from /proc, sampled
#              every 0.5 s) over the hold window that report.json names, per 1000 requests and as
#              cores; plus /usr/bin/time -v's totals for the whole run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REPEATS="${REPEATS:-3}"
THREADS="${THREADS:-2}"
CONNS="${CONNS:-64}"
MAX_SECONDS="${MAX_SECONDS:-8}"
PEAK_RPS="${PEAK_RPS:-1000}"
PEAK_SECONDS="${PEAK_SECONDS:-40}"
HELLO_PORT="${HELLO_PORT:-18191}"
URL="http://127.0.0.1:$HELLO_PORT"

need_pkgs wrk:wrk jq:jq
if [ -n "${LOADTEST:-}" ]; then build -p bench-hello; else build -p loadtest -p bench-hello; fi
need_free_port "$HELLO_PORT"

LT="${LOADTEST:-$BIN/loadtest}"
# The peak scenario: the repo's file when there is one, else whatever loadtest finds by name.
PEAK="${PEAK:-}"
[ -z "$PEAK" ] && [ -f "$ROOT/scenarios/peak.toml" ] && PEAK="$ROOT/scenarios/peak.toml"
PEAK="${PEAK:-peak}"
if ! "$LT" run --help 2>/dev/null | grep -q -- '--rps'; then
    cat <<REPORT
## Generator (bench/generator.sh)

$(machine)

Not measured yet: \`$LT\` has no \`run --rps\` (the loadtest CLI has not landed on this branch).
REPORT
    exit 0
fi

spawn hello "$BIN/bench-hello" "127.0.0.1:$HELLO_PORT"
wait_port "$HELLO_PORT"

cat >"$WORK/max.toml" <<TOML
# As fast as loadtest can: far more than it can send, with as many requests in flight as wrk has
# connections.
name = "max"
description = "saturate the generator"
max_in_flight = $CONNS

[[stage]]
rps = 100000
hold = "${MAX_SECONDS}s"

[[request]]
name = "home"
method = "GET"
path = "/"
expect_status = [200]
TOML

# Achieved requests/s from a report.json, whichever fields this version of the schema has.
achieved() {
    jq -r '(.load.holds[0].achieved_rps // .load.achieved_rps // (.totals.requests / .duration_s)) | tostring' "$1"
}

# CPU seconds (utime + stime) of PID, from /proc/PID/stat.
cpu_of() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null
}

log "bench: warming up"
wrk -t"$THREADS" -c"$CONNS" -d2s "$URL/" >/dev/null

declare -A R
for r in $(seq 0 $((REPEATS - 1))); do
    for g in $( ((r % 2)) && echo "loadtest wrk" || echo "wrk loadtest"); do
        if [ "$g" = wrk ]; then
            rps="$(wrk -t"$THREADS" -c"$CONNS" -d"${MAX_SECONDS}s" "$URL/" | awk '/^Requests\/sec:/ { print $2 }')"
        else
            out="$WORK/max-$r"
            set +e
            "$LT" run "$WORK/max.toml" --target "$URL" --out "$out" --no-progress >"$WORK/lt-max-$r.log" 2>&1
            code=$?
            set -e
            [ -f "$out/report.json" ] || die "loadtest wrote no report.json (exit $code); see $WORK/lt-max-$r.log"
            rps="$(achieved "$out/report.json")"
        fi
        R[$g]+="$rps "
        R[$g,$r]="$rps"
        log "bench: round $((r + 1))/$REPEATS max rate $g: $rps req/s"
    done
done

# --- holding peak ------------------------------------------------------------------------------
out="$WORK/peak"
set +e
/usr/bin/time -v -o "$WORK/peak.time" \
    "$LT" run "$PEAK" --target "$URL" --rps "$PEAK_RPS" --duration "${PEAK_SECONDS}s" --out "$out" --no-progress \
    >"$WORK/lt-peak.log" 2>&1 &
TPID=$!
PIDS+=("$TPID")
set -e
# /usr/bin/time's child is loadtest; sample its CPU with a timestamp relative to its start.
LPID=""
for _ in $(seq 100); do
    LPID="$(pgrep -P "$TPID" -x loadtest || true)"
    [ -n "$LPID" ] && break
    sleep 0.05
done
[ -n "$LPID" ] || die "loadtest did not start (see $WORK/lt-peak.log)"
T0="$(date +%s.%N)"
: >"$WORK/peak.cpu"
while kill -0 "$LPID" 2>/dev/null; do
    c="$(cpu_of "$LPID")" || break
    [ -n "$c" ] && echo "$(awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN { print a - b }') $c" >>"$WORK/peak.cpu"
    sleep 0.5
done
wait "$TPID" || true
[ -f "$out/report.json" ] || die "loadtest peak wrote no report.json; see $WORK/lt-peak.log"

hold_start="$(jq -r '.load.holds[-1].start_s' "$out/report.json")"
hold_end="$(jq -r '.load.holds[-1].end_s' "$out/report.json")"
hold_rps="$(jq -r '.load.holds[-1].achieved_rps' "$out/report.json")"
# CPU over the hold, trimmed by a second at each end so start-up and shutdown are not in it.
read -r cpu_s span_s < <(awk -v s="$hold_start" -v e="$hold_end" '
    $1 >= s + 1 && $1 <= e - 1 { if (!n++) { t0 = $1; c0 = $2 } t1 = $1; c1 = $2 }
    END { if (n < 2) print "nan nan"; else print c1 - c0, t1 - t0 }' "$WORK/peak.cpu")
cores="$(awk -v c="$cpu_s" -v t="$span_s" 'BEGIN { if (t + 0 > 0) printf "%.3f", c / t; else print "nan" }')"
per_k="$(awk -v c="$cpu_s" -v t="$span_s" -v r="$hold_rps" 'BEGIN { if (t * r > 0) printf "%.1f", 1000 * c / (t * r) * 1000; else print "nan" }')"
tot_user="$(awk -F': ' '/User time/ { print $2 }' "$WORK/peak.time")"
tot_sys="$(awk -F': ' '/System time/ { print $2 }' "$WORK/peak.time")"
tot_rss="$(awk -F': ' '/Maximum resident/ { print $2 }' "$WORK/peak.time")"
tot_req="$(jq -r '.totals.requests' "$out/report.json")"
verdict="$(jq -r '.verdict' "$out/report.json")"

M_WRK="$(printf '%s\n' ${R[wrk]} | median)"
M_LT="$(printf '%s\n' ${R[loadtest]} | median)"
RATIO="$(for r in $(seq 0 $((REPEATS - 1))); do ratio "${R[loadtest,$r]}" "${R[wrk,$r]}"; done | median)"

cat <<REPORT
## Generator (bench/generator.sh)

$(machine)
- target: bench-hello direct; $REPEATS rounds; wrk \`-t$THREADS -c$CONNS -d${MAX_SECONDS}s\` vs loadtest at 100000 rps asked, max_in_flight $CONNS, ${MAX_SECONDS}s

| generator | max req/s (median) | each round |
|---|---:|---|
| wrk | $(printf '%.0f' "$M_WRK") | $(printf '%.0f ' ${R[wrk]}) |
| loadtest | $(printf '%.0f' "$M_LT") | $(printf '%.0f ' ${R[loadtest]}) |

loadtest / wrk max rate (median of per-round ratios): **$RATIO**

Holding \`peak\` at $PEAK_RPS rps (\`--duration ${PEAK_SECONDS}s\`, verdict $verdict): hold window ${hold_start}–${hold_end} s at $hold_rps rps achieved;
loadtest CPU over the hold: **$cores cores**, **$per_k ms CPU per 1000 requests**.
Whole run (/usr/bin/time -v): user ${tot_user}s, sys ${tot_sys}s for $tot_req requests, max RSS ${tot_rss} KiB.
REPORT
