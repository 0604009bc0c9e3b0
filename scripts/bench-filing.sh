#!/usr/bin/env bash
# HTTP load test of filing automatically approved requests (POST /v1/requests, each one
# durably committed with its grant and audit events before the 201): starts a release server
# on a fresh SQLite file and runs wrk on the same machine, then checks that every 201 wrk
# counted is in the database and the audit chain verifies.
#   DURATION=20s CONNECTIONS=32 scripts/bench-filing.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-32}
PORT=${PORT:-7482}

need_wrk
choose_jitgate_bin

work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# One principal files everything here; the per-principal limits would measure themselves.
printf '[limits]\nrequests_per_minute = 0\nwrites_per_minute = 0\nmax_pending_per_requester = 0\n' > "$work/config.toml"
JITGATE_LOG=warn "$JITGATE_BIN" serve --listen "127.0.0.1:$PORT" --config "$work/config.toml" \
  --policy examples/quickstart --database "sqlite://$work/jitgate.db" &
server=$!
server_pid=$server
wait_until_ready "$PORT" "$server_pid"
wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/wrk-file.lua "http://127.0.0.1:$PORT/v1/requests" | tee "$work/wrk.txt"
# Everything acknowledged is there: requests in the database, and a whole chain.
filed=$(sqlite3 "$work/jitgate.db" "SELECT COUNT(*) FROM requests")
echo "requests in the database: $filed"
JITGATE_URL="http://127.0.0.1:$PORT" JITGATE_TOKEN=demo-admin "$JITGATE_BIN" audit verify
