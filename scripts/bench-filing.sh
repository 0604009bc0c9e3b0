#!/usr/bin/env bash
# HTTP load test of filing automatically approved requests (POST /v1/requests, each one
# durably committed with its grant and audit events before the 201): starts a release server
# on a fresh SQLite file (or, with STORE=postgres, a throwaway PostgreSQL started by
# scripts/test-postgres.sh) and runs wrk on the same machine, then checks that every 201 wrk
# counted is in the database and the audit chain verifies.
#   DURATION=20s CONNECTIONS=32 scripts/bench-filing.sh
#   STORE=postgres scripts/bench-filing.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-32}
PORT=${PORT:-7482}

need_wrk
choose_jitgate_bin

work=$(mktemp -d)
chmod 755 "$work"
server=""
STORE=${STORE:-sqlite}
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  wait 2>/dev/null
  [ "$STORE" = postgres ] && scripts/test-postgres.sh stop "$work/pg" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
case "$STORE" in
  sqlite) database="sqlite://$work/jitgate.db" ;;
  postgres)
    pg_port=$((PORT + 1))
    scripts/test-postgres.sh start "$work/pg" "$pg_port" bench-password
    PGPASSWORD=bench-password psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "CREATE DATABASE jitgate"
    database="postgres://postgres:bench-password@127.0.0.1:$pg_port/jitgate"
    ;;
  *) echo "STORE is sqlite or postgres" >&2; exit 2 ;;
esac

# One principal files everything here; the per-principal limits would measure themselves.
printf '[limits]\nrequests_per_minute = 0\nwrites_per_minute = 0\nmax_pending_per_requester = 0\n' > "$work/config.toml"
JITGATE_LOG=warn "$JITGATE_BIN" serve --listen "127.0.0.1:$PORT" --config "$work/config.toml" \
  --policy examples/quickstart --database "$database" &
server=$!
server_pid=$server
wait_until_ready "$PORT" "$server_pid"
wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/wrk-file.lua "http://127.0.0.1:$PORT/v1/requests" | tee "$work/wrk.txt"
# Everything acknowledged is there: requests in the database, and a whole chain.
if [ "$STORE" = postgres ]; then
  filed=$(PGPASSWORD=bench-password psql -X -At -h 127.0.0.1 -p "$pg_port" -U postgres -d jitgate -c "SELECT COUNT(*) FROM requests")
else
  filed=$(sqlite3 "$work/jitgate.db" "SELECT COUNT(*) FROM requests")
fi
echo "requests in the database: $filed"
JITGATE_URL="http://127.0.0.1:$PORT" JITGATE_TOKEN=demo-admin "$JITGATE_BIN" audit verify
