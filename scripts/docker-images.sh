#!/usr/bin/env bash
# Builds the images emu's docker-mode tests use, from Debian's packages alone (no registry is
# reachable from CI):
#
#   emu-test/debian:bookworm   `debootstrap --variant=minbase bookworm`, imported as a base
#   emu-test/postgres:15       Debian's postgresql-15, the official image's basic contract
#   emu-test/redis:7           Debian's redis-server, the official image's basic contract
#   emu-test/app:latest        a small HTTP service on $PORT (docker/images/app/app.py)
#
#   bash scripts/docker-images.sh     # uses $DOCKER_HOST, or starts scripts/docker-engine.sh's
#
# Cached: the debootstrap tarball is kept in $EMU_DOCKER_CACHE (default: the engine's state
# folder's cache/), the base is imported again only when that tarball changed, and an image is
# built again only when its folder under docker/images/ or the base changed (a hash in the
# image's label emu-test.hash). Each step prints its time. Build output goes to
# $EMU_DOCKER_CACHE/logs/ (its tail is shown when a build fails), or to the terminal with
# EMU_DOCKER_VERBOSE=1.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGES_DIR="$REPO_ROOT/docker/images"
SUITE=bookworm
BASE_IMAGE=emu-test/debian:$SUITE
# name:tag, folder under docker/images/
IMAGES=(
    "emu-test/postgres:15 postgres"
    "emu-test/redis:7 redis"
    "emu-test/app:latest app"
)
HASH_LABEL=emu-test.hash

say() { echo "docker-images: $*" >&2; }
die() {
    say "$*"
    exit 1
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# The engine: the one DOCKER_HOST names when it answers, else scripts/docker-engine.sh's.
connect_engine() {
    if [ -n "${DOCKER_HOST:-}" ] && timeout 10 docker info >/dev/null 2>&1; then
        return 0
    fi
    eval "$(bash "$REPO_ROOT/scripts/docker-engine.sh")"
    export DOCKER_HOST
}

# The Debian mirror this machine's apt uses (the only one known to be reachable), from
# deb822 sources or a one-line sources.list; empty lets debootstrap use its default.
host_mirror() {
    local f
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
        [ -f "$f" ] || continue
        if [[ $f == *.sources ]]; then
            awk '/^URIs:/ { print $2; exit }' "$f"
        else
            awk -v s="$SUITE" '$1 == "deb" && $0 ~ " " s " " { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }' "$f"
        fi | grep -v -- '-security' | head -n 1 && return 0
    done
}

# Finishes a debootstrapped tree the way Debian's own container images are finished: no service
# starts during `apt-get install`, no package documentation, no apt caches; the host's apt
# sources (updates and security included) replace debootstrap's single line.
finish_rootfs() {
    local rootfs=$1
    as_root sh -s "$rootfs" <<'EOF'
set -eu
r=$1
printf '#!/bin/sh\nexit 101\n' > "$r/usr/sbin/policy-rc.d"
chmod 755 "$r/usr/sbin/policy-rc.d"
cat > "$r/etc/dpkg/dpkg.cfg.d/docker-excludes" <<'X'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
X
cat > "$r/etc/apt/apt.conf.d/docker-clean" <<'X'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
X
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$r/etc/apt/sources.list.d/debian.sources"
    rm -f "$r/etc/apt/sources.list"
fi
rm -rf "$r/var/lib/apt/lists/"* "$r/var/cache/apt/"*.bin "$r/var/cache/apt/archives/"*.deb
rm -rf "$r/usr/share/doc/"*/changelog* "$r/usr/share/man/"* "$r/var/log/"*.log
EOF
}

# Makes (or reuses) the cached tarball of a minimal Debian.
debootstrap_tarball() {
    local tarball=$1 rootfs mirror start
    if [ -s "$tarball" ]; then
        say "base tarball cached: $tarball"
        return 0
    fi
    if ! command -v debootstrap >/dev/null; then
        command -v apt-get >/dev/null || die "debootstrap is missing: install it"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
    fi
    start=$(now)
    mirror=${EMU_DEBIAN_MIRROR:-$(host_mirror || true)}
    rootfs=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
    # shellcheck disable=SC2064 # the folder is known now
    trap "as_root umount -R '$rootfs/proc' '$rootfs/sys' 2>/dev/null; as_root rm -rf '$rootfs'" EXIT
    say "debootstrap --variant=minbase $SUITE ${mirror:-(default mirror)}"
    local include=()
    [[ $mirror == https:* ]] && include=(--include=ca-certificates)
    # Two stages, so that dpkg runs the second with unsafe-io (no fsync per file: a throw-away
    # tree). That setting stays in the image, as in Debian's own images, for faster builds on it.
    # shellcheck disable=SC2086 # an empty mirror is no argument
    if ! {
        as_root debootstrap --foreign --variant=minbase "${include[@]}" "$SUITE" "$rootfs" $mirror &&
            as_root sh -c "echo force-unsafe-io > '$rootfs/etc/dpkg/dpkg.cfg.d/docker-apt-speedup'" &&
            as_root chroot "$rootfs" /debootstrap/debootstrap --second-stage
    } >"$LOG_DIR/debootstrap.log" 2>&1; then
        tail -n 30 "$LOG_DIR/debootstrap.log" >&2
        die "debootstrap failed; log: $LOG_DIR/debootstrap.log"
    fi
    finish_rootfs "$rootfs"
    as_root tar --numeric-owner -C "$rootfs" -cf "$tarball.part" .
    as_root chown "$(id -u):$(id -g)" "$tarball.part"
    mv "$tarball.part" "$tarball"
    as_root rm -rf "$rootfs"
    trap - EXIT
    say "debootstrap + tarball: $(since "$start")s ($(du -h "$tarball" | cut -f1))"
}

label_of() {
    docker image inspect -f "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$1" 2>/dev/null || true
}

import_base() {
    local tarball=$1 hash start
    start=$(now)
    hash=$(sha256sum "$tarball" | cut -c1-64)
    if [ "$(label_of "$BASE_IMAGE")" = "$hash" ]; then
        say "$BASE_IMAGE up to date ($(since "$start")s to check)"
        return 0
    fi
    docker import \
        --change "LABEL $HASH_LABEL=$hash" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        "$tarball" "$BASE_IMAGE" >/dev/null
    say "$BASE_IMAGE imported: $(since "$start")s"
}

# A hash of the image's build folder (names and contents) and the base image's id.
context_hash() {
    local dir=$1
    {
        docker image inspect -f '{{ .Id }}' "$BASE_IMAGE"
        (cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    } | sha256sum | cut -c1-64
}

build_image() {
    local tag=$1 dir="$IMAGES_DIR/$2" hash start log
    start=$(now)
    hash=$(context_hash "$dir")
    if [ "$(label_of "$tag")" = "$hash" ]; then
        say "$tag up to date ($(since "$start")s to check)"
        return 0
    fi
    log="$LOG_DIR/build-$2.log"
    say "building $tag from docker/images/$2 (log: $log)"
    # The legacy builder: Debian's docker.io has no buildx plugin. --network host: containers
    # on the bridge have no route out when dockerd runs with --iptables=false.
    local build=(env DOCKER_BUILDKIT=0 docker build --network host --label "$HASH_LABEL=$hash" -t "$tag" "$dir")
    if [ "${EMU_DOCKER_VERBOSE:-}" = 1 ]; then
        "${build[@]}" >&2
    elif ! "${build[@]}" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "building $tag failed; log: $log"
    fi
    say "$tag built: $(since "$start")s"
}

main() {
    local total
    total=$(now)
    connect_engine
    CACHE_DIR=${EMU_DOCKER_CACHE:-${EMU_DOCKER_DIR:-/tmp/emu-dockerd-$(id -u)}/cache}
    LOG_DIR="$CACHE_DIR/logs"
    mkdir -p "$CACHE_DIR" "$LOG_DIR"
    local tarball
    tarball="$CACHE_DIR/debian-$SUITE-minbase-$(dpkg --print-architecture 2>/dev/null || uname -m).tar"
    debootstrap_tarball "$tarball"
    import_base "$tarball"
    local entry
    for entry in "${IMAGES[@]}"; do
        # shellcheck disable=SC2086 # "tag folder"
        build_image $entry
    done
    # Images replaced by a rebuild are left untagged; under vfs each holds a full copy.
    docker image prune -f --filter "label=$HASH_LABEL" >/dev/null
    say "all images ready in $(since "$total")s on $DOCKER_HOST:"
    docker image ls --filter "reference=emu-test/*" --format '  {{.Repository}}:{{.Tag}} {{.Size}}' >&2
}

main "$@"
