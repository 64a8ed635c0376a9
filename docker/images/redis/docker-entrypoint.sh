#!/bin/sh
# Entry point of emu-test/redis: the official redis image's basic contract on Debian's
# redis-server, so a container made for `redis:7` (docker/compose.yaml, emu's docker mode)
# behaves the same on this image:
#   - arguments go to redis-server: `redis-server --appendonly yes`, or just `--appendonly yes`
#     (or a .conf file first);
#   - without a config file it listens on every interface with protected mode off, since clients
#     come through Docker's published port, not loopback (later arguments still override that);
#   - started as root, it runs Redis as the `redis` user, in /data.
set -eu

case "${1:-}" in
-* | *.conf) set -- redis-server "$@" ;;
esac

if [ "${1:-}" = redis-server ]; then
    shift
    case "${1:-}" in
    *.conf | -v | --version | -h | --help | --test-memory | --check-system) ;;
    *) set -- --bind 0.0.0.0 --protected-mode no "$@" ;;
    esac
    set -- redis-server "$@"
    if [ "$(id -u)" = 0 ]; then
        chown -R redis:redis /data 2>/dev/null || true
        exec setpriv --reuid=redis --regid=redis --init-groups env HOME=/data "$@"
    fi
fi
exec "$@"
