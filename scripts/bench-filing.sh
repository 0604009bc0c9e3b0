#!/usr/bin/env bash
# HTTP load test of filing automatically approved requests (POST /v1/requests, each one
# durably committed with its grant and audit events before the 201): starts a release server
# on a fresh SQLite file and runs wrk on the same machine, then checks that every 201 wrk
# counted is in the database and the audit chain verifies.
#   DURATION=20s CONNECTIONS=32 scripts/bench-filing.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-32}
PORT=${PORT:-7482}

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
  else
    echo "wrk is missing: install it (apt-get install wrk) or run as root" >&2; exit 2
  fi
fi
# JITGATE_BIN=PATH measures another build (an earlier commit's, for before-and-after
# figures in one run); by default this checkout's, built here.
if [ -z "${JITGATE_BIN:-}" ]; then
  cargo build --release -q -p jitgate
  JITGATE_BIN=./target/release/jitgate
fi

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
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do
  # A server that could not start (the port taken by another) must not be measured instead.
  kill -0 "$server_pid" 2>/dev/null || { echo "the server exited; is port $PORT in use?" >&2; exit 1; }
  sleep 0.05
done
wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/wrk-file.lua "http://127.0.0.1:$PORT/v1/requests" | tee "$work/wrk.txt"
# Everything acknowledged is there: requests in the database, and a whole chain.
filed=$(sqlite3 "$work/jitgate.db" "SELECT COUNT(*) FROM requests")
echo "requests in the database: $filed"
JITGATE_URL="http://127.0.0.1:$PORT" JITGATE_TOKEN=demo-admin "$JITGATE_BIN" audit verify
