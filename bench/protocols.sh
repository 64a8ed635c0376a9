#!/usr/bin/env bash
# bench/protocols.sh: what emu's front door costs for WebSockets and for gRPC over h2c, against a
# direct connection to the same upstream in the same run. Prints a markdown report; the ratios
# are what to compare across machines (bench/frontdoor.sh covers plain HTTP/1.1).
#
#   bench/protocols.sh                 # build, then ~2 min of measuring
#   REPEATS=5 bench/protocols.sh       # more rounds (each round measures both targets)
#   NO_BUILD=1 bench/protocols.sh      # use target/release as it is
#
# Upstreams (bench-proto, bench/hello/src/bin/proto.rs): a tokio-tungstenite echo server and a
# tonic unary echo server. emu runs one service in front of each, concurrency 1000 so admission
# never queues; the gRPC service has `protocol = "h2c"`, so emu speaks HTTP/2 to it.
# Measures, closed-loop, round trips per second and their p50/p99:
#   websocket  $WS_CONNS sockets, each sending 32 bytes and awaiting the echo, for ${SECONDS_EACH}s
#   grpc       $GRPC_CHANNELS h2c connections × $GRPC_CALLS concurrent unary calls, ${SECONDS_EACH}s
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REPEATS="${REPEATS:-3}"
SECONDS_EACH="${SECONDS_EACH:-8}"
WS_CONNS="${WS_CONNS:-32}"
GRPC_CHANNELS="${GRPC_CHANNELS:-4}"
GRPC_CALLS="${GRPC_CALLS:-16}"
WS_PORT="${WS_PORT:-18191}"
GRPC_PORT="${GRPC_PORT:-18192}"
EMU_PORT="${EMU_PORT:-18193}"
EMU_WS_PORT="${EMU_WS_PORT:-18194}"
EMU_GRPC_PORT="${EMU_GRPC_PORT:-18195}"

build -p emulator -p bench-hello
for p in "$WS_PORT" "$GRPC_PORT" "$EMU_PORT" "$EMU_WS_PORT" "$EMU_GRPC_PORT"; do need_free_port "$p"; done

spawn ws "$BIN/bench-proto" ws-serve "127.0.0.1:$WS_PORT"
spawn grpc "$BIN/bench-proto" grpc-serve "127.0.0.1:$GRPC_PORT"
wait_port "$WS_PORT"
wait_port "$GRPC_PORT"

mkdir -p "$WORK/emu"
cat >"$WORK/emu/emu.toml" <<TOML
# Each service on its own port; admission runs (slots, counters) but never waits.
[[service]]
name = "ws"
upstream = "http://127.0.0.1:$WS_PORT"
port = $EMU_WS_PORT
concurrency = 1000
min_instances = 1
max_instances = 1

[[service]]
name = "grpc"
upstream = "http://127.0.0.1:$GRPC_PORT"
protocol = "h2c"
port = $EMU_GRPC_PORT
concurrency = 1000
min_instances = 1
max_instances = 1
TOML
spawn emu "$BIN/emu" up --config "$WORK/emu/emu.toml" --port "$EMU_PORT" --request-log off
wait_port "$EMU_WS_PORT"
wait_port "$EMU_GRPC_PORT"

# target PROTOCOL → URL
url() {
    case "$1:$2" in
        direct:ws) echo "ws://127.0.0.1:$WS_PORT/" ;;
        emu:ws) echo "ws://127.0.0.1:$EMU_WS_PORT/" ;;
        direct:grpc) echo "http://127.0.0.1:$GRPC_PORT" ;;
        emu:grpc) echo "http://127.0.0.1:$EMU_GRPC_PORT" ;;
    esac
}
drive() {
    if [ "$2" = ws ]; then
        "$BIN/bench-proto" ws "$(url "$1" ws)" "$WS_CONNS" "$3"
    else
        "$BIN/bench-proto" grpc "$(url "$1" grpc)" "$GRPC_CHANNELS" "$GRPC_CALLS" "$3"
    fi
}

# emu's instances are ready once a short run through them has no errors.
for proto in ws grpc; do
    for _ in $(seq 50); do
        line="$(drive emu "$proto" 0.2 2>/dev/null || true)"
        [ -n "$line" ] && [ "$(kv errors "$line")" = 0 ] && [ "$(kv ok "$line")" != 0 ] && break
        sleep 0.2
    done
    [ "$(kv errors "$line")" = 0 ] || die "emu's $proto service does not answer (logs in $WORK): $line"
done

log "bench: warming up"
for proto in ws grpc; do for t in direct emu; do drive "$t" "$proto" 2 >/dev/null; done; done

declare -A RATE P50 P99 RR
for r in $(seq 0 $((REPEATS - 1))); do
    for proto in ws grpc; do
        # Alternate which target goes first, so background load hits both alike.
        if [ $((r % 2)) = 0 ]; then targets="direct emu"; else targets="emu direct"; fi
        for t in $targets; do
            line="$(drive "$t" "$proto" "$SECONDS_EACH")"
            [ "$(kv errors "$line")" = 0 ] || log "bench: $t $proto: errors: $line"
            RATE[$t,$proto]+="$(kv rate "$line") "
            P50[$t,$proto]+="$(kv p50_us "$line") "
            P99[$t,$proto]+="$(kv p99_us "$line") "
            RR[$t,$proto,$r]="$(kv rate "$line")"
            log "bench: round $((r + 1))/$REPEATS $proto $t: $line"
        done
    done
done

med() { printf '%s\n' $1 | median; }
round_ratio() {
    local r
    for r in $(seq 0 $((REPEATS - 1))); do ratio "${RR[emu,$1,$r]}" "${RR[direct,$1,$r]}"; done | median
}
row() {
    local proto="$1" label="$2"
    printf '| %s | %.0f | %.0f | %s | %s / %s | %s / %s |\n' "$label" \
        "$(med "${RATE[direct,$proto]}")" "$(med "${RATE[emu,$proto]}")" "$(round_ratio "$proto")" \
        "$(med "${P50[direct,$proto]}")" "$(med "${P50[emu,$proto]}")" \
        "$(med "${P99[direct,$proto]}")" "$(med "${P99[emu,$proto]}")"
}

cat <<REPORT
## WebSocket and gRPC (bench/protocols.sh)

$(machine)
- runs: $REPEATS rounds of ${SECONDS_EACH}s per target; closed loop, 32-byte messages; WebSocket over $WS_CONNS sockets (one round trip in flight on each); gRPC unary over $GRPC_CHANNELS h2c connections × $GRPC_CALLS concurrent calls; emu speaks h2c to the gRPC upstream

| protocol | direct round trips/s (median) | emu round trips/s (median) | emu / direct (median of per-round ratios) | p50 µs direct / emu | p99 µs direct / emu |
|---|---:|---:|---:|---:|---:|
$(row ws "WebSocket messages (echo)")
$(row grpc "gRPC unary calls over h2c")
REPORT
