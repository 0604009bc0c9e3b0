#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests.
#   scripts/test-postgres.sh start DIR PORT PASSWORD   new cluster; superuser `postgres` with PASSWORD
#   scripts/test-postgres.sh pause DIR                 stop the server, keep its data
#   scripts/test-postgres.sh resume DIR                start it again on the same data and port
#   scripts/test-postgres.sh stop DIR                  stop it and delete its data (and a front's
#                                                      haproxy, when DIR is a front's)
# Failover test beds (tests/end_to_end/failover.rs), on the same helpers:
#   scripts/test-postgres.sh primary DIR PORT PASSWORD  a new cluster set up for streaming
#                                                      replication (as `start`, and it keeps a
#                                                      .pgpass for the commands below)
#   scripts/test-postgres.sh standby DIR PRIMARY_DIR PORT sync|async
#                                                      pg_basebackup -R of the primary into a new
#                                                      cluster on PORT, streaming from it as
#                                                      application_name standby_PORT; `sync` makes
#                                                      the primary's commits wait for it
#   scripts/test-postgres.sh kill DIR                  kill -9 the postmaster and every child of it,
#                                                      all frozen first (the machine is gone)
#   scripts/test-postgres.sh promote DIR               promote a standby (pg_ctl promote -w)
#   scripts/test-postgres.sh solo DIR                  start a killed primary on its old data,
#                                                      writable, waiting for no standby (the old
#                                                      primary of a split brain)
#   scripts/test-postgres.sh front DIR PORT NODE_DIR... haproxy on 127.0.0.1:PORT routing to the
#                                                      one node that is writable
# `pause` and `resume` work on a primary or a standby (a paused synchronous standby stalls the
# primary's commits).
# The server listens on 127.0.0.1:PORT only, with password (SCRAM) authentication over TCP. It
# is built for tests (fsync off) and holds nothing worth keeping. PostgreSQL refuses to run as
# root, so when run as root the cluster belongs to the `postgres` user (created by Debian's
# package) and lives in a directory of its own, linked from DIR/cluster.
set -euo pipefail
cmd=${1:?start, pause, resume, stop, primary, standby, kill, promote, solo or front}
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
  local data=$1 extra=${2:-} port
  port=$(cat "$dir/port")
  as_owner "$(bindir)/pg_ctl" start -w -t 60 -D "$data" -l "$data/server.log" \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $data -c fsync=off -c full_page_writes=off -c max_connections=200 $extra" \
    >/dev/null || { echo "postgres did not start; its log:" >&2; cat "$data/server.log" >&2; exit 1; }
}

# The cluster's data directory, resolved here (DIR itself may be closed to the postgres user).
data_dir() {
  echo "$(readlink -f "$dir/cluster")/data"
}

# A new, empty directory for a cluster's files, owned by the cluster's owner and linked from
# DIR/cluster; DIR/port holds PORT. Prints the directory.
new_cluster_dir() {
  local port=$1 cluster
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
  echo "$cluster"
}

# SQL as the superuser on the node whose directory is $1 (its .pgpass holds the password).
node_sql() {
  local node=$1 sql=$2
  PGPASSFILE="$(readlink -f "$node/cluster")/pgpass" PGCONNECT_TIMEOUT=5 \
    psql -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(cat "$node/port")" -U postgres -d postgres -c "$sql"
}

# Wait (60 s at most) until `sql` run on node $1 prints `want`.
wait_for() {
  local node=$1 sql=$2 want=$3 what=$4 i
  for i in $(seq 600); do
    [ "$(node_sql "$node" "$sql" 2>/dev/null || true)" = "$want" ] && return 0
    sleep 0.1
  done
  echo "$what: not after 60 s" >&2
  exit 1
}

case "$cmd" in
  start)
    port=${3:?port} password=${4:?superuser password}
    cluster=$(new_cluster_dir "$port")
    pwfile="$cluster/.pw"
    printf '%s\n' "$password" > "$pwfile"
    [ "$(id -u)" = 0 ] && chown postgres: "$pwfile"
    as_owner "$(bindir)/initdb" -D "$cluster/data" -U postgres --pwfile="$pwfile" \
      --auth-host=scram-sha-256 --auth-local=scram-sha-256 -E UTF8 --locale=C >"$cluster/initdb.log" 2>&1 \
      || { cat "$cluster/initdb.log" >&2; exit 1; }
    rm -f "$pwfile"
    pg_start "$cluster/data"
    ;;
  primary)
    port=${3:?port} password=${4:?superuser password}
    "$0" start "$dir" "$port" "$password"
    cluster=$(readlink -f "$dir/cluster")
    # What the standbys, the front's check and this script use to log in: libpq's password
    # file (`:` and `\` escaped), readable by the cluster's owner alone.
    escaped=$(printf '%s' "$password" | sed -e 's/[\\:]/\\&/g')
    printf '127.0.0.1:*:*:postgres:%s\n' "$escaped" > "$cluster/pgpass"
    chmod 600 "$cluster/pgpass"
    [ "$(id -u)" = 0 ] && chown postgres: "$cluster/pgpass"
    data="$cluster/data"
    # Streaming replication (most are PostgreSQL's defaults; said here so that the test bed
    # does not depend on them). wal_keep_size lets a paused standby catch up when resumed.
    cat >> "$data/postgresql.conf" <<'CONF'
# scripts/test-postgres.sh primary: streaming replication
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
synchronous_commit = on
wal_keep_size = '256MB'
CONF
    grep -Eq '^host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+scram-sha-256' "$data/pg_hba.conf" \
      || echo 'host replication all 127.0.0.1/32 scram-sha-256' >> "$data/pg_hba.conf"
    as_owner "$(bindir)/pg_ctl" stop -w -D "$data" -m fast >/dev/null
    pg_start "$data"
    ;;
  standby)
    primary=${3:?primary directory} port=${4:?port} mode=${5:?sync or async}
    case "$mode" in sync|async) ;; *) echo "standby: sync or async, not $mode" >&2; exit 2 ;; esac
    pcluster=$(readlink -f "$primary/cluster")
    [ -f "$pcluster/pgpass" ] || { echo "standby: $primary is not a primary made by \`primary\`" >&2; exit 2; }
    cluster=$(new_cluster_dir "$port")
    cp "$pcluster/pgpass" "$cluster/pgpass"
    chmod 600 "$cluster/pgpass"
    [ "$(id -u)" = 0 ] && chown postgres: "$cluster/pgpass"
    name="standby_$port"
    # -R writes standby.signal and primary_conninfo (with application_name and passfile).
    as_owner env PGPASSFILE="$cluster/pgpass" "$(bindir)/pg_basebackup" -D "$cluster/data" -X stream -R -c fast \
      -d "host=127.0.0.1 port=$(cat "$primary/port") user=postgres application_name=$name passfile=$cluster/pgpass" \
      >"$cluster/basebackup.log" 2>&1 || { cat "$cluster/basebackup.log" >&2; exit 1; }
    rm -f "$cluster/data/server.log"
    pg_start "$cluster/data"
    if [ "$mode" = sync ]; then
      node_sql "$primary" "ALTER SYSTEM SET synchronous_standby_names = '\"$name\"'" >/dev/null
      node_sql "$primary" "SELECT pg_reload_conf()" >/dev/null
      wait_for "$primary" "SELECT sync_state FROM pg_stat_replication WHERE application_name = '$name'" sync \
        "the standby on port $port streams synchronously"
    else
      wait_for "$primary" "SELECT state FROM pg_stat_replication WHERE application_name = '$name'" streaming \
        "the standby on port $port streams"
    fi
    ;;
  kill)
    # The machine is gone: SIGKILL for the postmaster and all its processes at once, no
    # shutdown checkpoint, no goodbye to the clients or the standby.
    # Every process is frozen first (the postmaster first, so that it forks no more), then
    # killed: killed one after the other, the later ones would notice the postmaster's death
    # and act on it (a backend waiting for its synchronous standby stops waiting and commits
    # locally), which a machine that is gone does not do.
    data=$(data_dir)
    pid=$(head -1 "$data/postmaster.pid")
    kill -STOP "$pid"
    pids="$pid $(pgrep -P "$pid" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    kill -STOP $pids 2>/dev/null || true
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    # Dead once gone or a zombie (their parent is dead; whoever adopts them reaps them).
    for _ in $(seq 100); do
      alive=0
      for p in $pids; do
        case "$(ps -o stat= -p "$p" 2>/dev/null || true)" in '' | Z*) ;; *) alive=1 ;; esac
      done
      [ $alive = 0 ] && break
      sleep 0.1
    done
    # PostgreSQL would remove the stale files itself, unless a zombie not yet reaped still
    # holds the number they name; removing them here also keeps `stop` from signalling
    # whatever process reuses it.
    rm -f "$data/postmaster.pid" "$data"/.s.PGSQL.*
    ;;
  promote)
    as_owner "$(bindir)/pg_ctl" promote -w -t 60 -D "$(data_dir)" >/dev/null
    ;;
  solo)
    # A killed primary started again as it was: writable on its own timeline. It was set to
    # wait for a synchronous standby that now follows someone else; waiting for none lets it
    # commit, as an old primary restarted by mistake with the setting cleared would.
    pg_start "$(data_dir)" "-c synchronous_standby_names="
    ;;
  front)
    port=${3:?port}
    shift 3
    [ $# -ge 1 ] || { echo "front: name the nodes' directories" >&2; exit 2; }
    command -v haproxy >/dev/null || { echo "haproxy is missing: run scripts/test.sh as root, or apt-get install haproxy" >&2; exit 2; }
    mkdir -p "$dir"
    cp "$(readlink -f "$1/cluster")/pgpass" "$dir/pgpass"
    chmod 600 "$dir/pgpass"
    # haproxy's external check: arguments are the proxy's address and port, then the server's.
    # Up only when the node answers and is not in recovery, so writes reach the writable node.
    # libpq's shortest connect timeout is 2 s (it reads 1 as 2); haproxy kills a check that
    # outlasts its interval (see below), which comes first.
    cat > "$dir/check.sh" <<CHECK
#!/bin/sh
out=\$(PGPASSFILE='$dir/pgpass' PGCONNECT_TIMEOUT=2 '$(command -v psql)' -X -At -h "\$3" -p "\$4" -U postgres -d postgres -c 'SELECT pg_is_in_recovery()' 2>/dev/null)
[ "\$out" = f ]
CHECK
    chmod 700 "$dir/check.sh"
    {
      printf 'global\n  insecure-fork-wanted\n  external-check\n  maxconn 2000\n'
      # haproxy gives an external check until the next one is due (min of the interval and
      # `timeout connect`; `timeout check` is not used for it) and counts it failed then.
      printf 'defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1h\n  timeout server 1h\n'
      printf 'listen postgres\n  bind 127.0.0.1:%s\n' "$port"
      printf '  option external-check\n  external-check path "/usr/bin:/bin"\n  external-check command %s\n' "$dir/check.sh"
      # A node that is up is checked every second, so a check (sh, then psql) that a loaded
      # machine slows past 250 ms still counts; after a failure, and while a node is down,
      # every 250 ms. Three failures in a row mark a node down and cut its sessions (a killed
      # node: within about 1.5 s, its checks refused at once); one success brings it up.
      printf '  default-server inter 1s fastinter 250ms downinter 250ms fall 3 rise 1 on-marked-down shutdown-sessions\n'
      n=0
      for node in "$@"; do
        n=$((n + 1))
        printf '  server node%s 127.0.0.1:%s check\n' "$n" "$(cat "$node/port")"
      done
    } > "$dir/haproxy.cfg"
    haproxy -q -c -f "$dir/haproxy.cfg" >/dev/null
    haproxy -q -D -f "$dir/haproxy.cfg" -p "$dir/haproxy.pid"
    echo "$port" > "$dir/port"
    # haproxy starts with every server up until its checks say otherwise: ready once ten
    # connections in a row (round robin among the servers up) reach a writable node.
    in_a_row=0
    for _ in $(seq 300); do
      if [ "$(PGPASSFILE="$dir/pgpass" PGCONNECT_TIMEOUT=2 psql -X -At -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c 'SELECT pg_is_in_recovery()' 2>/dev/null || true)" = f ]; then
        in_a_row=$((in_a_row + 1))
        [ $in_a_row -ge 10 ] && break
      else
        in_a_row=0
      fi
      sleep 0.1
    done
    [ $in_a_row -ge 10 ] || { echo "front: haproxy on $port does not route to a writable node" >&2; exit 1; }
    ;;
  pause)
    as_owner "$(bindir)/pg_ctl" stop -w -D "$(data_dir)" -m fast >/dev/null
    ;;
  resume)
    pg_start "$(data_dir)"
    ;;
  stop)
    if [ -f "$dir/haproxy.pid" ]; then
      pids=$(cat "$dir/haproxy.pid")
      # shellcheck disable=SC2086
      kill $pids 2>/dev/null || true
      for _ in $(seq 50); do
        alive=0
        for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
      done
      rm -f "$dir/haproxy.pid" "$dir/pgpass" "$dir/check.sh" "$dir/haproxy.cfg"
    fi
    if [ -e "$(data_dir)/postmaster.pid" ]; then
      as_owner "$(bindir)/pg_ctl" stop -w -D "$(data_dir)" -m immediate >/dev/null 2>&1 || true
    fi
    if [ -L "$dir/cluster" ]; then
      rm -rf "$(readlink -f "$dir/cluster")"
      rm -f "$dir/cluster"
    fi
    ;;
  *)
    echo "usage: $0 start DIR PORT PASSWORD | pause DIR | resume DIR | stop DIR" >&2
    echo "       $0 primary DIR PORT PASSWORD | standby DIR PRIMARY_DIR PORT sync|async | kill DIR" >&2
    echo "       $0 promote DIR | solo DIR | front DIR PORT NODE_DIR..." >&2
    exit 2 ;;
esac
