#!/usr/bin/env bash
# bench/connflood.sh: what 10,000 idle keep-alive connections cost emu's memory, and how much of
# it comes back once they close (issue 22). Prints a markdown report; RSS is emu's own (VmRSS),
# instances excluded (the service is an `upstream`, bench-hello, outside emu).
#
#   bench/connflood.sh                          # build, then ~1 min
#   CONNS=20000 bench/connflood.sh              # another flood size
#   EMU_BEFORE=/tmp/emu-old bench/connflood.sh  # also measure another emu build, same flood
#
# Each emu: started, warmed with 200 connections that make one request each and close, RSS
# read ("baseline"); then bench-flood opens $CONNS connections that make one request each and
# stay open, idle ("held", read $SETTLE s after they are all open, so per-connection buffers an
# idle connection gives back are given back); then they close and RSS is read again $SETTLE s
# later ("after"). Memory is not asserted anywhere: the allocator decides what it returns.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CONNS="${CONNS:-10000}"
SETTLE="${SETTLE:-5}"
HELLO_PORT="${HELLO_PORT:-18191}"
EMU_PORT="${EMU_PORT:-18192}"

build -p emulator -p bench-hello
need_free_port "$HELLO_PORT"
need_free_port "$EMU_PORT"
spawn hello "$BIN/bench-hello" "127.0.0.1:$HELLO_PORT"
wait_port "$HELLO_PORT"

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# flood NAME PID N: bench-flood's connections held until its stdin closes.
flood() {
    local name="$1" n="$2" fifo="$WORK/$1.fifo"
    mkfifo "$fifo"
    "$BIN/bench-flood" "127.0.0.1:$EMU_PORT" "$n" <"$fifo" >"$WORK/$name.flood" 2>&1 &
    local flooder=$!
    exec 7>"$fifo"
    for _ in $(seq 600); do grep -q '^open' "$WORK/$name.flood" && break; sleep 0.1; done
    grep -q '^open' "$WORK/$name.flood" || die "bench-flood did not open its connections ($WORK/$name.flood)"
    sleep "$SETTLE"
    FLOOD_OPEN="$(awk '/^open/ { print $2 " open, " $3 " failed" }' "$WORK/$name.flood")"
    HELD="$(rss_kib "$EMU_PID")"
    exec 7>&-
    wait "$flooder"
    rm -f "$fifo"
}

measure() {
    local name="$1" bin="$2"
    mkdir -p "$WORK/$name"
    {
        # One client may hold every connection here (a build without these keys takes none).
        if grep -q max_connections_per_client "$bin"; then
            printf '[emu]\nmax_connections = %s\nmax_connections_per_client = %s\n\n' \
                "$((CONNS + 1000))" "$((CONNS + 1000))"
        fi
        printf '[[service]]\nname = "hello"\nupstream = "http://127.0.0.1:%s"\nconcurrency = 1000\nmin_instances = 1\nmax_instances = 1\n' "$HELLO_PORT"
    } >"$WORK/$name/emu.toml"
    spawn "$name" "$bin" up --config "$WORK/$name/emu.toml" --port "$EMU_PORT" --request-log off
    EMU_PID="${PIDS[-1]}"
    wait_port "$EMU_PORT"
    log "bench: $name: warming, then $CONNS connections"
    flood "$name-warm" 200
    sleep 1
    local base; base="$(rss_kib "$EMU_PID")"
    flood "$name" "$CONNS"
    sleep "$SETTLE"
    local after; after="$(rss_kib "$EMU_PID")"
    kill -TERM "$EMU_PID"; wait "$EMU_PID" 2>/dev/null || true
    printf '| %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f |\n' "$name" "$FLOOD_OPEN" \
        "$(awk -v k="$base" 'BEGIN { print k / 1024 }')" \
        "$(awk -v k="$HELD" 'BEGIN { print k / 1024 }')" \
        "$(awk -v k="$HELD" -v b="$base" -v n="$CONNS" 'BEGIN { print (k - b) / n }')" \
        "$(awk -v k="$after" 'BEGIN { print k / 1024 }')" \
        "$(awk -v k="$after" -v b="$base" 'BEGIN { print (k - b) / 1024 }')"
}

echo "## Connection flood: $CONNS idle keep-alive connections"
echo
machine
echo
echo "| emu | connections | baseline MiB | held MiB | KiB per connection | after close MiB | kept MiB |"
echo "|---|---|---|---|---|---|---|"
measure emu "$BIN/emu"
if [ -n "${EMU_BEFORE:-}" ]; then
    [ -x "$EMU_BEFORE" ] || die "EMU_BEFORE=$EMU_BEFORE is not an executable"
    measure emu-before "$EMU_BEFORE"
fi
