#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (and the history benchmark).
#
#   pg.sh start   initdb (first time) + start; prints the DSN on stdout, nothing else
#   pg.sh stop    stop the server and delete its directory
#   pg.sh halt    stop the server, keep its data (outage tests start it again)
#   pg.sh status  exit 0 when this server is running, 1 otherwise
#   pg.sh dsn     print the DSN
#
# Environment: SZAL_PG_DIR (default /tmp/szal-pg), SZAL_PG_PORT (default 55432).
# Several instances can run side by side with different DIR/PORT pairs.
#
# TEST ONLY: trust authentication on loopback, fsync off. It listens on
# 127.0.0.1 only and its data is meant to be thrown away. Never point it at
# data you care about.
#
# `start` is idempotent (a running server is reused) and serialized with a
# lock file, so `make test` and a pytest fixture may both call it. initdb
# refuses to run as root: as root, the server runs as the `postgres` user
# and the directory is owned by it. If the PostgreSQL binaries are missing,
# `start` installs Debian's `postgresql` package when it can (root with
# apt-get) and otherwise fails saying exactly what is missing.
set -euo pipefail

DIR="${SZAL_PG_DIR:-/tmp/szal-pg}"
PORT="${SZAL_PG_PORT:-55432}"
DB=szal_test
DATA="$DIR/data"
DSN="postgresql://postgres@127.0.0.1:$PORT/$DB"
READY_DEADLINE="${SZAL_PG_READY_SECONDS:-60}"

log() { echo "[pg.sh] $*" >&2; }
die() { echo "[pg.sh] error: $*" >&2; exit 1; }

find_bindir() {
  local candidate
  if [[ -n "${SZAL_PG_BIN:-}" ]]; then echo "$SZAL_PG_BIN"; return 0; fi
  # Debian keeps server binaries out of PATH, one directory per major version.
  for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$candidate/initdb" && -x "$candidate/pg_ctl" ]]; then echo "$candidate"; return 0; fi
  done
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"; return 0
  fi
  return 1
}

ensure_binaries() {
  if BIN="$(find_bindir)"; then return 0; fi
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "PostgreSQL server binaries (initdb, pg_ctl) not found: installing Debian's postgresql package"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
      || die "apt-get update failed; install the 'postgresql' package by hand"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 \
      || die "apt-get install postgresql failed; install it by hand"
    BIN="$(find_bindir)" || die "installed postgresql but still no initdb/pg_ctl under /usr/lib/postgresql/*/bin"
    return 0
  fi
  die "PostgreSQL server binaries not found: need initdb, pg_ctl, postgres, pg_isready and psql \
(Debian: apt-get install postgresql; they live in /usr/lib/postgresql/<version>/bin; or set SZAL_PG_BIN)"
}

# Run a server binary as the cluster's owner: `postgres` when we are root.
as_owner() {
  if [[ $(id -u) == 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to own the cluster"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

is_running() {
  [[ -f "$DATA/PG_VERSION" ]] && as_owner "$BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

wait_ready() {
  local deadline=$(( $(date +%s) + READY_DEADLINE ))
  until "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -d postgres -U postgres; do
    if (( $(date +%s) >= deadline )); then
      tail -n 30 "$DIR/server.log" >&2 2>/dev/null || true
      die "server in $DATA not ready on 127.0.0.1:$PORT after ${READY_DEADLINE}s (log above: $DIR/server.log)"
    fi
    sleep 0.2
  done
}

psql_admin() {
  "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres "$@"
}

cmd_start() {
  ensure_binaries
  mkdir -p "$DIR"
  [[ $(id -u) == 0 ]] && chown postgres: "$DIR"
  exec 9>"$DIR.lock"
  flock -w 120 9 || die "another pg.sh holds $DIR.lock for more than 120s"

  if is_running; then
    wait_ready
  else
    if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" 2>/dev/null; then
      die "port $PORT on 127.0.0.1 is taken by another server (not the one in $DATA); set SZAL_PG_PORT"
    fi
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
      rm -rf "$DATA"
      log "initdb in $DATA"
      as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=trust \
        -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
        || as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=trust \
             -E UTF8 --no-locale >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; die "initdb failed in $DATA"; }
      # Throwaway server: durability traded for speed; loopback only.
      as_owner tee -a "$DATA/postgresql.conf" >/dev/null <<EOF
# --- added by tests/postgres/pg.sh (test only) ---
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
    fi
    log "starting the server on 127.0.0.1:$PORT"
    # 9>&-: the server must not inherit (and keep holding) the lock.
    as_owner "$BIN/pg_ctl" start -D "$DATA" -l "$DIR/server.log" -w -t "$READY_DEADLINE" >/dev/null 9>&- \
      || { tail -n 30 "$DIR/server.log" >&2 2>/dev/null || true; die "pg_ctl start failed (log above: $DIR/server.log)"; }
    wait_ready
  fi

  if [[ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]]; then
    psql_admin -c "CREATE DATABASE $DB" >/dev/null 2>&1 \
      || [[ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" == 1 ]] \
      || die "could not create database $DB"
  fi
  echo "$DSN"
}

cmd_halt() {
  ensure_binaries
  if is_running; then
    as_owner "$BIN/pg_ctl" stop -D "$DATA" -m fast -w >/dev/null
  fi
}

cmd_stop() {
  if BIN="$(find_bindir)" && is_running; then
    as_owner "$BIN/pg_ctl" stop -D "$DATA" -m fast -w >/dev/null || true
  fi
  rm -rf "$DIR" "$DIR.lock"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  halt) cmd_halt ;;
  status) ensure_binaries; is_running || exit 1 ;;
  dsn) echo "$DSN" ;;
  *) echo "usage: $0 start|stop|halt|status|dsn" >&2; exit 2 ;;
esac
