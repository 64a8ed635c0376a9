#!/bin/bash
# Entry point of emu-test/postgres: the official postgres image's basic contract on Debian's
# PostgreSQL, so a container made for `postgres:15` (docker/compose.yaml, emu's docker mode)
# behaves the same on this image:
#   - first start: initdb into $PGDATA as POSTGRES_USER (default postgres) with POSTGRES_PASSWORD
#     (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_INITDB_ARGS passed to initdb,
#     database POSTGRES_DB (default: the user's name) created, /docker-entrypoint-initdb.d/*.sh,
#     *.sql and *.sql.gz run; each variable may instead come from a file named by VAR_FILE;
#   - connections from outside the container need the password (scram-sha-256), on 0.0.0.0:5432;
#   - arguments go to postgres: `postgres -c max_connections=103`, or just `-c ...`;
#   - started as root, it runs PostgreSQL as the `postgres` user.
set -Eeuo pipefail

# VAR from $VAR, or from the file named by $VAR_FILE (Docker/Kubernetes secrets), else DEFAULT.
file_env() {
    local var=$1 default=${2:-}
    local file_var="${var}_FILE"
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        echo "error: both $var and $file_var are set; set one" >&2
        exit 1
    fi
    local value=$default
    if [ -n "${!var:-}" ]; then
        value=${!var}
    elif [ -n "${!file_var:-}" ]; then
        value=$(<"${!file_var}")
    fi
    export "$var"="$value"
    unset "$file_var"
}

setup_env() {
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    : "${POSTGRES_HOST_AUTH_METHOD:=}"
}

require_password() {
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        cat >&2 <<'EOF'
error: the database is uninitialized and the superuser password is not specified.
       Set POSTGRES_PASSWORD to a non-empty value (or POSTGRES_HOST_AUTH_METHOD=trust to allow
       every connection without a password, which is not recommended).
EOF
        exit 1
    fi
}

init_cluster() {
    local args=(--username="$POSTGRES_USER") pwfile=
    if [ -n "$POSTGRES_PASSWORD" ]; then
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
        args+=(--pwfile="$pwfile")
    fi
    # POSTGRES_INITDB_ARGS is a shell-quoted string in the official image; eval keeps that.
    eval 'initdb "${args[@]}" '"$POSTGRES_INITDB_ARGS"
    [ -z "$pwfile" ] || rm -f "$pwfile"
    local method=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    printf '\nhost all all all %s\n' "$method" >>"$PGDATA/pg_hba.conf"
    printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
}

sql() {
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
}

create_database() {
    [ "$POSTGRES_DB" = postgres ] && return 0
    local exists
    exists=$(sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only \
        <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")
    if [ -z "${exists//[[:space:]]/}" ]; then
        sql --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
}

run_init_files() {
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        [ -e "$f" ] || continue
        case "$f" in
        *.sh)
            echo "running $f"
            # shellcheck disable=SC1090 # the user's init script
            if [ -x "$f" ]; then "$f"; else . "$f"; fi
            ;;
        *.sql)
            echo "running $f"
            sql --dbname "$POSTGRES_DB" -f "$f"
            ;;
        *.sql.gz)
            echo "running $f"
            gunzip -c "$f" | sql --dbname "$POSTGRES_DB"
            ;;
        *) echo "ignoring $f" ;;
        esac
    done
}

# First start: a server on the socket only (with the caller's -c settings) creates the database
# and runs the init files, then stops, so no client reaches a half-made cluster.
first_start() {
    require_password
    init_cluster
    local server_args=("$@" -c listen_addresses='' -p 5432)
    pg_ctl -D "$PGDATA" -o "$(printf '%q ' "${server_args[@]}")" -w start
    create_database
    run_init_files
    pg_ctl -D "$PGDATA" -m fast -w stop
    echo "PostgreSQL init process complete; ready for start up."
}

# `postgres --version` and the like answer and exit: no cluster is made for them.
wants_help() {
    local arg
    for arg; do
        case "$arg" in
        -'?' | --help | --describe-config | -V | --version) return 0 ;;
        esac
    done
    return 1
}

main() {
    if [ "${1:0:1}" = '-' ]; then
        set -- postgres "$@"
    fi
    if [ "$1" != postgres ] || wants_help "$@"; then
        exec "$@"
    fi
    setup_env
    if [ "$(id -u)" = 0 ]; then
        mkdir -p "$PGDATA" /var/run/postgresql
        chown postgres:postgres "$PGDATA" /var/run/postgresql
        chmod 700 "$PGDATA"
        exec setpriv --reuid=postgres --regid=postgres --init-groups \
            env HOME=/var/lib/postgresql "${BASH_SOURCE[0]}" "$@"
    fi
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        first_start "${@:2}"
    fi
    exec "$@"
}

main "$@"
