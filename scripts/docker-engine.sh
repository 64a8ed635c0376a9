#!/usr/bin/env bash
# A Docker engine for emu's docker-mode tests, on a machine that has none running (CI, a bare
# Debian box). Idempotent: installs Debian's engine when it is missing, starts one dockerd in a
# fixed state folder unless one already answers there, waits until it answers, and prints the
# line that points the docker CLI (and emu, through bollard) at it:
#
#   eval "$(bash scripts/docker-engine.sh)"        # sets DOCKER_HOST=unix://…/docker.sock
#   bash scripts/docker-engine.sh stop             # stops that engine (its data stays)
#   bash scripts/docker-engine.sh status           # exit 0 when it answers
#
# Only the export line goes to stdout; progress goes to stderr, dockerd's own log to
# $EMU_DOCKER_DIR/dockerd.log.
#
# Settings (environment):
#   EMU_DOCKER_DIR       state folder: socket, pid file, data, log (default /tmp/emu-dockerd-$UID)
#   EMU_DOCKER_STORAGE   storage driver(s) to try in order (default "overlay2 vfs")
#   EMU_DOCKER_WAIT      seconds to wait for the engine to answer (default 90)
#
# Why these dockerd flags: no system service manager runs here, and another engine may own the
# default socket, so everything (socket, pid file, data, exec state) lives in the state folder.
# --iptables=false because the machine's firewall is not ours to rewrite: the default bridge and
# `-p 127.0.0.1:PORT:PORT` still work (through docker-proxy), but containers have no route out,
# which is why image builds use `--network host`. overlay2 first: on this kind of machine a
# container starts in under a second with it, against 10-17 s with vfs, which copies the whole
# image for each container; vfs is the fall-back where overlay2 cannot run (e.g. on overlayfs).
set -euo pipefail

STATE_DIR=${EMU_DOCKER_DIR:-/tmp/emu-dockerd-$(id -u)}
STORAGE_DRIVERS=${EMU_DOCKER_STORAGE:-overlay2 vfs}
WAIT_SECONDS=${EMU_DOCKER_WAIT:-90}
SOCKET="$STATE_DIR/docker.sock"
PIDFILE="$STATE_DIR/dockerd.pid"
LOG="$STATE_DIR/dockerd.log"
HOST="unix://$SOCKET"

say() { echo "docker-engine: $*" >&2; }
die() {
    say "$*"
    exit 1
}

# Runs a command as root: directly when we are root (CI), else through sudo.
as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "'$*' needs root: run this script as root or install sudo"
    fi
}

engine_answers() {
    [ -S "$SOCKET" ] && DOCKER_HOST="$HOST" timeout 10 docker info >/dev/null 2>&1
}

# The pid in the pid file, when that process is still a dockerd (a pid left from a previous boot
# may since belong to something else).
running_pid() {
    local pid
    [ -f "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && echo "$pid"
}

# Installs Debian's engine (dockerd, containerd, runc, the CLI) and debootstrap, which
# scripts/docker-images.sh uses to make a base image without a registry.
install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "no dockerd and no apt-get: install a Docker engine by hand"
    say "installing ${missing[*]} with apt-get"
    local started=$SECONDS
    if ! apt-cache policy "${missing[@]}" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        as_root apt-get update -q >&2
    fi
    # The package's init script would start a second engine on the default socket; a
    # policy-rc.d that says 101 ("not allowed") keeps it stopped, as Debian's images do.
    local policy=/usr/sbin/policy-rc.d added_policy=
    if [ ! -e "$policy" ]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        added_policy=1
    fi
    local status=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >&2 || status=$?
    [ -n "$added_policy" ] && as_root rm -f "$policy"
    [ "$status" = 0 ] || die "apt-get install ${missing[*]} failed (exit $status)"
    say "installed in $((SECONDS - started))s"
}

start_engine() {
    local driver=$1 group
    group=$(id -gn)
    say "starting dockerd (storage $driver), log: $LOG"
    # setsid + nohup: the engine outlives the shell (and process group) that started it. --wait
    # keeps setsid alive as long as dockerd, so $! tells whether the engine is still up.
    as_root setsid --wait nohup dockerd \
        --iptables=false --ip6tables=false \
        --storage-driver="$driver" \
        --data-root "$STATE_DIR/root" --exec-root "$STATE_DIR/exec" \
        -H "$HOST" --pidfile "$PIDFILE" --group "$group" \
        >>"$LOG" 2>&1 </dev/null &
}

# Polls until the engine answers. Returns 1 early when dockerd (started as pid $1) has exited;
# fails, with the log's tail, when it runs but does not answer in time.
wait_for_engine() {
    local started=$SECONDS launcher=$1
    until engine_answers; do
        if [ $((SECONDS - started)) -ge "$WAIT_SECONDS" ]; then
            tail -n 20 "$LOG" >&2 || true
            die "the engine did not answer on $SOCKET within ${WAIT_SECONDS}s (log: $LOG)"
        fi
        if [ -n "$launcher" ] && ! kill -0 "$launcher" 2>/dev/null && ! running_pid >/dev/null; then
            return 1
        fi
        sleep 0.5
    done
    say "engine answers on $SOCKET after $((SECONDS - started))s"
}

# Starts dockerd with the first storage driver that works here.
start_with_some_driver() {
    local driver
    for driver in $STORAGE_DRIVERS; do
        start_engine "$driver"
        if wait_for_engine $!; then
            return 0
        fi
        say "dockerd exited with storage $driver:"
        tail -n 5 "$LOG" >&2 || true
        release_mounts
    done
    die "dockerd did not start with any of: $STORAGE_DRIVERS (log: $LOG)"
}

# Mounts dockerd leaves behind when it exits (its network namespace, a container's file system)
# would keep the state folder from being removed.
release_mounts() {
    local mounts
    mapfile -t mounts < <(awk -v d="$STATE_DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    [ ${#mounts[@]} -eq 0 ] || as_root umount "${mounts[@]}" 2>/dev/null || true
}

stop_engine() {
    local pid
    if ! pid=$(running_pid); then
        say "no engine running in $STATE_DIR"
        release_mounts
        return 0
    fi
    say "stopping dockerd $pid"
    as_root kill -TERM "$pid"
    # dockerd stops its containers (10 s each at most) and its containerd before it exits.
    for _ in $(seq 1 120); do
        kill -0 "$pid" 2>/dev/null || {
            release_mounts
            say "stopped"
            return 0
        }
        sleep 0.5
    done
    die "dockerd $pid still runs after 60s; see $LOG"
}

prepare_state_dir() {
    as_root mkdir -p "$STATE_DIR"
    # The folder holds a root-owned socket that runs containers: it must be the caller's own.
    if [ "$(stat -c %u "$STATE_DIR")" != 0 ] && [ "$(stat -c %u "$STATE_DIR")" != "$(id -u)" ]; then
        die "$STATE_DIR belongs to another user; set EMU_DOCKER_DIR to a folder of yours"
    fi
    # Owned by the caller (dockerd keeps its data-root private), who writes the log and the image
    # cache of scripts/docker-images.sh here.
    as_root chown "$(id -u):$(id -g)" "$STATE_DIR"
    as_root chmod 755 "$STATE_DIR"
    touch "$LOG"
    # A pid file whose process is gone (or is no longer dockerd) would stop dockerd starting.
    if [ -f "$PIDFILE" ] && ! running_pid >/dev/null; then
        as_root rm -f "$PIDFILE"
    fi
}

main() {
    case "${1:-start}" in
    start) ;;
    stop)
        stop_engine
        return
        ;;
    status)
        engine_answers
        return
        ;;
    *) die "usage: $0 [start|stop|status]" ;;
    esac

    if engine_answers; then
        say "engine already answers on $SOCKET"
    else
        install_packages
        prepare_state_dir
        if running_pid >/dev/null; then
            say "dockerd $(running_pid) is starting; waiting for it"
            wait_for_engine ""
        else
            start_with_some_driver
        fi
    fi
    echo "export DOCKER_HOST=$HOST"
}

main "$@"
