#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests.
#   scripts/test-postgres.sh start DIR PORT PASSWORD   new cluster; superuser `postgres` with PASSWORD
#   scripts/test-postgres.sh pause DIR                 stop the server, keep its data
#   scripts/test-postgres.sh resume DIR                start it again on the same data and port
#   scripts/test-postgres.sh stop DIR                  stop it and delete its data
# The server listens on 127.0.0.1:PORT only, with password (SCRAM) authentication over TCP. It
# is built for tests (fsync off) and holds nothing worth keeping. PostgreSQL refuses to run as
# root, so when run as root the cluster belongs to the `postgres` user (created by Debian's
# package) and lives in a directory of its own, linked from DIR/cluster.
set -euo pipefail
cmd=${1:?start, pause, resume or stop}
dir=${2:?directory}

bindir() {
  local initdb
  initdb=$(command -v initdb 2>/dev/null || true)
  if [ -z "$initdb" ]; then
    initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1 || true)
  fi
  [ -n "$initdb" ] || {
    echo "PostgreSQL is missing: run scripts/test.sh as root, or apt-get install postgresql" >&2
    exit 2
  }
  dirname "$(readlink -f "$initdb")"
}

# Run a PostgreSQL program as the cluster's owner.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_start() {
  local data=$1 port
  port=$(cat "$dir/port")
  as_owner "$(bindir)/pg_ctl" start -w -t 60 -D "$data" -l "$data/server.log" \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $data -c fsync=off -c full_page_writes=off -c max_connections=200" \
    >/dev/null || { echo "postgres did not start; its log:" >&2; cat "$data/server.log" >&2; exit 1; }
}

# The cluster's data directory, resolved here (DIR itself may be closed to the postgres user).
data_dir() {
  echo "$(readlink -f "$dir/cluster")/data"
}

case "$cmd" in
  start)
    port=${3:?port} password=${4:?superuser password}
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
      id postgres >/dev/null 2>&1 || { echo "no postgres user: apt-get install postgresql" >&2; exit 2; }
      cluster=$(mktemp -d /tmp/jitgate-pg.XXXXXX)
      chown postgres: "$cluster"
    else
      cluster="$dir/pgdata"
      mkdir -p "$cluster"
    fi
    chmod 700 "$cluster"
    ln -sfn "$cluster" "$dir/cluster"
    echo "$port" > "$dir/port"
    pwfile="$cluster/.pw"
    printf '%s\n' "$password" > "$pwfile"
    [ "$(id -u)" = 0 ] && chown postgres: "$pwfile"
    as_owner "$(bindir)/initdb" -D "$cluster/data" -U postgres --pwfile="$pwfile" \
      --auth-host=scram-sha-256 --auth-local=scram-sha-256 -E UTF8 --locale=C >"$cluster/initdb.log" 2>&1 \
      || { cat "$cluster/initdb.log" >&2; exit 1; }
    rm -f "$pwfile"
    pg_start "$cluster/data"
    ;;
  pause)
    as_owner "$(bindir)/pg_ctl" stop -w -D "$(data_dir)" -m fast >/dev/null
    ;;
  resume)
    pg_start "$(data_dir)"
    ;;
  stop)
    if [ -e "$(data_dir)/postmaster.pid" ]; then
      as_owner "$(bindir)/pg_ctl" stop -w -D "$(data_dir)" -m immediate >/dev/null 2>&1 || true
    fi
    if [ -L "$dir/cluster" ]; then
      rm -rf "$(readlink -f "$dir/cluster")"
      rm -f "$dir/cluster"
    fi
    ;;
  *) echo "usage: $0 start DIR PORT PASSWORD | pause DIR | resume DIR | stop DIR" >&2; exit 2 ;;
esac
