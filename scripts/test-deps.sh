# scripts/test-deps.sh: installs and starts what the test suite needs when it is missing —
# PostgreSQL, Redis, xmllint, Python's google-auth, the real stacks' Python and Node packages
# (FastAPI, Flask, gunicorn…; express, pg, ioredis), a Docker engine and the test images — and
# exports DOCKER_HOST.
# Sourced (it sets the caller's environment) by scripts/test.sh and scripts/stress-tests.sh, so
# both run the suite on the same footing.
#
#   source scripts/test-deps.sh

say() { printf '== %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# A full disk fails the build deep inside a C compile ("No space left on device"); say it first.
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${free_kb:-0}" -lt $((10 * 1024 * 1024)) ]; then
  say "warning: only $((free_kb / 1024)) MiB free on $(df -P . | awk 'NR == 2 { print $6 }'); the build and test images need ~10 GiB"
fi

# --- PostgreSQL and Redis: installed and answering on their usual ports -----------------------
missing=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v pg_isready >/dev/null 2>&1 || missing+=(postgresql-client)
# xmllint: loadtest's junit.xml is checked against the strict Ant JUnit schema (loadtest/tests/junit.rs).
command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)
# python3 and pip: emulator/tests/metadata.rs runs Google's auth library in an instance.
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  say "starting PostgreSQL"
  cluster=$(ls /etc/postgresql | sort -V | tail -n 1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$cluster" main start || true
  for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi
# The tests connect as postgres over TCP without a password (external mode): allow it on loopback.
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
  say "allowing trust auth for loopback connections to the local PostgreSQL"
  hba=$(as_root find /etc/postgresql -name pg_hba.conf | sort -V | tail -n 1)
  as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main reload
  sleep 1
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  say "starting Redis"
  mkdir -p /tmp/emu-ci-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp/emu-ci-redis
  for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi

# --- Python's google-auth (with requests, PyJWT and cryptography), for the metadata server's test -
py_packages=(google-auth requests pyjwt cryptography)
if ! python3 -c 'import google.auth, requests, jwt, cryptography' >/dev/null 2>&1; then
  say "installing ${py_packages[*]} for python3"
  # Debian's own python3 refuses `pip install` outside a venv (externally-managed-environment).
  python3 -m pip install --quiet "${py_packages[@]}" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "${py_packages[@]}"
fi

# --- The real stacks (emulator/tests/real_stacks.rs): FastAPI/uvicorn/asyncpg, Flask/gunicorn/
# psycopg2, redis-py; Node.js with express, pg and ioredis installed beside the express app -----
stack_py=(fastapi uvicorn asyncpg redis flask gunicorn psycopg2-binary)
if ! python3 -c 'import fastapi, uvicorn, asyncpg, redis, flask, gunicorn, psycopg2' >/dev/null 2>&1; then
  say "installing ${stack_py[*]} for python3"
  python3 -m pip install --quiet "${stack_py[@]}" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "${stack_py[@]}"
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "installing nodejs npm"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nodejs npm >/dev/null
fi
stack_js=emulator/tests/data/stacks
if ! (cd "$stack_js" && node -e "require.resolve('express'); require.resolve('pg'); require.resolve('ioredis')") >/dev/null 2>&1; then
  say "npm install (express pg ioredis) in $stack_js"
  npm install --prefix "$stack_js" --no-audit --no-fund --silent
fi

# --- Docker: an engine and the test images, so the docker-mode tests run (they fail without one) -
# Both scripts are idempotent and cached (docker/README.md): seconds when already done.
say "Docker engine and test images"
eval "$(bash scripts/docker-engine.sh)"
bash scripts/docker-images.sh
