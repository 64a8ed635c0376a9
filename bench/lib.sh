# Shared by bench/frontdoor.sh and bench/generator.sh: building, child processes that are always
# cleaned up, waiting for ports, medians. Sourced, not run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK="$(mktemp -d /tmp/emu-bench.XXXXXX)"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # Give each child up to 5 s to stop, then make sure.
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }
die() { log "bench: $*"; exit 1; }

# Starts a child in the background and remembers it for cleanup: spawn NAME CMD ARGS...
spawn() {
    local name="$1"; shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PIDS+=("$!")
}

# Waits until something accepts TCP connections on 127.0.0.1:PORT (up to 20 s).
wait_port() {
    local port="$1"
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$port after 20 s (logs in $WORK)"
}

# Fails when 127.0.0.1:PORT is already taken, so a stray server is never measured by mistake.
need_free_port() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        die "port $1 is already in use; set the *_PORT variables to free ports"
    fi
}

# Installs Debian packages that are missing: need_pkgs CMD:PKG ...
need_pkgs() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "bench: installing ${missing[*]} from Debian's packages"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

build() {
    if [ "${NO_BUILD:-0}" = 1 ]; then return 0; fi
    log "bench: cargo build --release $*"
    (cd "$ROOT" && cargo build --release --quiet "$@")
}

# median of the numbers on stdin, one per line
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan" } else if (NR % 2) { print v[(NR + 1) / 2] } else { print (v[NR / 2] + v[NR / 2 + 1]) / 2 } }'
}

# ratio A B with 2 decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.2f\n", a / b }'; }

# value of key=value in a line: kv KEY LINE
kv() { printf '%s\n' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }

machine() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- cpu: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "- memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "- kernel: $(uname -r); $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "- rustc: $(rustc --version 2>/dev/null || echo '?')"
    command -v nginx >/dev/null && echo "- nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //')"
    command -v wrk >/dev/null && echo "- wrk: $(wrk --version 2>&1 | head -1 | awk '{ print $2 }')"
    echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}
