#!/usr/bin/env bash
# bench/frontdoor.sh: what emu's front door costs, measured against a direct connection and nginx
# in the same run (issue 7). Prints a markdown report; ratios are what to compare across machines.
#
#   bench/frontdoor.sh                 # build, then ~3 min of measuring
#   REPEATS=5 bench/frontdoor.sh       # more rounds (each round measures all three targets)
#   NO_BUILD=1 bench/frontdoor.sh      # use target/release as it is
#   EMU_BEFORE=/tmp/emu-old bench/frontdoor.sh   # also measure another emu build ("emu-before"),
#                                                # e.g. one built from an earlier commit
#
# Targets, each serving bench-hello (bench/hello: 200 "hello\n" to everything):
#   direct  bench-hello itself
#   emu     `emu up` with one `upstream` service, concurrency 1000 so admission never queues
#   nginx   Debian's nginx, proxy_pass to an upstream block with keepalive connections
#   relay   bench-relay (bench/hello/src/bin/relay.rs): a TCP relay with no HTTP in it, one event
#           loop per core, one upstream connection per client connection. Every proxy that ends
#           the client's TCP connection and opens its own pays at least this, so it is the floor:
#           emu/relay is how much of that ceiling emu reaches, relay/nginx the most any proxy
#           could gain on nginx on this machine.
# Measures, in rounds that rotate the order so background load hits all three alike:
#   throughput  wrk -t$THREADS -c$CONNS -d${TP_SECONDS}s, requests/s
#   latency     bench-rate (bench/hello/src/bin/rate.rs) at $RATE requests/s to each target for
#               ${LAT_SECONDS}s over $LAT_CONNS connections each, all targets side by side on one
#               staggered schedule, measured from each request's intended send time
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REPEATS="${REPEATS:-3}"
THREADS="${THREADS:-2}"
CONNS="${CONNS:-64}"
TP_SECONDS="${TP_SECONDS:-8}"
RATE="${RATE:-1000}"
LAT_SECONDS="${LAT_SECONDS:-10}"
LAT_CONNS="${LAT_CONNS:-16}"
HELLO_PORT="${HELLO_PORT:-18181}"
EMU_PORT="${EMU_PORT:-18182}"
NGINX_PORT="${NGINX_PORT:-18183}"
BEFORE_PORT="${BEFORE_PORT:-18184}"
RELAY_PORT="${RELAY_PORT:-18185}"
TARGETS=(direct emu nginx relay)
if [ -n "${EMU_BEFORE:-}" ]; then
    [ -x "$EMU_BEFORE" ] || die "EMU_BEFORE=$EMU_BEFORE is not an executable"
    TARGETS+=(emu-before)
fi

need_pkgs wrk:wrk nginx:nginx
build -p emulator -p bench-hello
for p in "$HELLO_PORT" "$EMU_PORT" "$NGINX_PORT" "$BEFORE_PORT" "$RELAY_PORT"; do need_free_port "$p"; done

# --- the three targets -------------------------------------------------------------------------
spawn hello "$BIN/bench-hello" "127.0.0.1:$HELLO_PORT"
wait_port "$HELLO_PORT"

mkdir -p "$WORK/emu"
cat >"$WORK/emu/emu.toml" <<TOML
# Admission runs (slots, counters, the time-weighted concurrency) but never waits.
[[service]]
name = "hello"
upstream = "http://127.0.0.1:$HELLO_PORT"
concurrency = 1000
min_instances = 1
max_instances = 1
TOML
spawn emu "$BIN/emu" up --config "$WORK/emu/emu.toml" --port "$EMU_PORT" --request-log off
wait_port "$EMU_PORT"
if [ -n "${EMU_BEFORE:-}" ]; then
    mkdir -p "$WORK/emu-before"
    cp "$WORK/emu/emu.toml" "$WORK/emu-before/emu.toml"
    spawn emu-before "$EMU_BEFORE" up --config "$WORK/emu-before/emu.toml" --port "$BEFORE_PORT" --request-log off
    wait_port "$BEFORE_PORT"
fi

mkdir -p "$WORK/nginx/logs"
cat >"$WORK/nginx/nginx.conf" <<CONF
# A reverse proxy as people deploy it: workers per core, keepalive to the upstream, no logging.
user root;
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream hello {
        server 127.0.0.1:$HELLO_PORT;
        keepalive 256;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://hello;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
spawn nginx nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/logs/error.log"
wait_port "$NGINX_PORT"

spawn relay "$BIN/bench-relay" "127.0.0.1:$RELAY_PORT" "127.0.0.1:$HELLO_PORT"
wait_port "$RELAY_PORT"

url() {
    case "$1" in
        direct) echo "http://127.0.0.1:$HELLO_PORT/" ;;
        emu) echo "http://127.0.0.1:$EMU_PORT/" ;;
        nginx) echo "http://127.0.0.1:$NGINX_PORT/" ;;
        relay) echo "http://127.0.0.1:$RELAY_PORT/" ;;
        emu-before) echo "http://127.0.0.1:$BEFORE_PORT/" ;;
    esac
}

# An emu's instance is ready once a request through it succeeds.
for t in "${TARGETS[@]}"; do
    for _ in $(seq 100); do
        curl -sf -o /dev/null "$(url "$t")" && break
        sleep 0.2
    done
done
for t in "${TARGETS[@]}"; do
    curl -sf -o /dev/null "$(url "$t")" || die "$t ($(url "$t")) does not answer 200 (logs in $WORK)"
done

# --- measuring ---------------------------------------------------------------------------------
# Round r starts with target r mod n, so no target always runs first (or after the same one).
order() {
    local r="$1" n="${#TARGETS[@]}" i
    for i in $(seq 0 $((n - 1))); do echo "${TARGETS[$(((r + i) % n))]}"; done
}

log "bench: warming up"
for t in "${TARGETS[@]}"; do wrk -t"$THREADS" -c"$CONNS" -d2s "$(url "$t")" >/dev/null; done

declare -A TP TPR LAT50 LAT99 P50R P99R
for r in $(seq 0 $((REPEATS - 1))); do
    for t in $(order "$r"); do
        out="$(wrk -t"$THREADS" -c"$CONNS" -d"${TP_SECONDS}s" "$(url "$t")")"
        rps="$(printf '%s\n' "$out" | awk '/^Requests\/sec:/ { print $2 }')"
        errs="$(printf '%s\n' "$out" | awk '/Non-2xx|Socket errors/ { print }')"
        [ -n "$errs" ] && log "bench: $t: $errs"
        TP[$t]+="$rps "
        TPR[$t,$r]="$rps"
        log "bench: round $((r + 1))/$REPEATS throughput $t: $rps req/s"
    done
    # All targets at once, on one staggered schedule (their place in it rotating by round), so
    # a stall of the machine lands on each alike and p99s compare fairly.
    urls="$(for t in $(order "$r"); do url "$t"; done | paste -sd, -)"
    lines="$("$BIN/bench-rate" "$urls" "$RATE" "$LAT_SECONDS" "$LAT_CONNS" 1)"
    for t in "${TARGETS[@]}"; do
        line="$(printf '%s\n' "$lines" | grep -F "url=$(url "$t") ")" || die "bench-rate gave no line for $t"
        [ "$(kv errors "$line")" = 0 ] || log "bench: $t: errors at $RATE rps: $line"
        LAT50[$t]+="$(kv p50_us "$line") "
        LAT99[$t]+="$(kv p99_us "$line") "
        P50R[$t,$r]="$(kv p50_us "$line")"
        P99R[$t,$r]="$(kv p99_us "$line")"
        log "bench: round $((r + 1))/$REPEATS latency $t: $line"
    done
done

med() { printf '%s\n' $1 | median; }
declare -A M_TP M_50 M_99
for t in "${TARGETS[@]}"; do
    M_TP[$t]="$(med "${TP[$t]}")"
    M_50[$t]="$(med "${LAT50[$t]}")"
    M_99[$t]="$(med "${LAT99[$t]}")"
done
# Median over rounds of the per-round ratio: each round measured both targets minutes apart at most.
round_ratio() {
    local r
    for r in $(seq 0 $((REPEATS - 1))); do ratio "${TPR[$1,$r]}" "${TPR[$2,$r]}"; done | median
}
# What target A adds to target B at a percentile: the median over rounds of A's minus B's, each
# pair measured side by side in the same seconds (a stall hits both, and cancels).
added() {
    local pct="$1" a="$2" b="$3" r
    for r in $(seq 0 $((REPEATS - 1))); do
        if [ "$pct" = 50 ]; then echo "${P50R[$a,$r]} ${P50R[$b,$r]}"; else echo "${P99R[$a,$r]} ${P99R[$b,$r]}"; fi
    done | awk '{ print $1 - $2 }' | median | awk '{ printf "%+.0f", $1 }'
}

cat <<REPORT
## Front door (bench/frontdoor.sh)

$(machine)
- runs: $REPEATS rounds; throughput \`wrk -t$THREADS -c$CONNS -d${TP_SECONDS}s\`; latency \`bench-rate\` at $RATE rps to each target at once (staggered) for ${LAT_SECONDS}s over $LAT_CONNS connections each, from intended send time

| target | throughput req/s (median) | each round | p50 µs @ $RATE rps | p99 µs @ $RATE rps | p99 added to direct µs (median of per-round differences) |
|---|---:|---|---:|---:|---:|
$(for t in "${TARGETS[@]}"; do
    printf '| %s | %.0f | %s | %s | %s | %s |\n' "$t" "${M_TP[$t]}" "$(printf '%.0f ' ${TP[$t]})" "${M_50[$t]}" "${M_99[$t]}" "$(added 99 "$t" direct)"
done)

| throughput ratio | median of per-round ratios | each round |
|---|---:|---|
$(pairs=(emu:direct nginx:direct relay:direct emu:nginx relay:nginx emu:relay nginx:relay)
[ -n "${EMU_BEFORE:-}" ] && pairs+=(emu-before:direct emu-before:nginx emu:emu-before)
for pair in "${pairs[@]}"; do
    a="${pair%%:*}"; b="${pair##*:}"
    printf '| %s / %s | %s | %s |\n' "$a" "$b" "$(round_ratio "$a" "$b")" \
        "$(for r in $(seq 0 $((REPEATS - 1))); do ratio "${TPR[$a,$r]}" "${TPR[$b,$r]}"; done | tr '\n' ' ')"
done)

p50 added to direct: emu $(added 50 emu direct) µs, nginx $(added 50 nginx direct) µs, relay $(added 50 relay direct) µs.
Added to the relay's (a bare extra hop, so what is left is the proxy's own work): emu p50 $(added 50 emu relay) µs, p99 $(added 99 emu relay) µs; nginx p50 $(added 50 nginx relay) µs, p99 $(added 99 nginx relay) µs.
REPORT
