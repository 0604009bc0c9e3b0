#!/usr/bin/env bash
# Soak test: a release server on a fresh SQLite file under mixed load (automatic filings with
# short grants, so expiries never stop; reviewed filings approved or denied; revocations;
# checks) for DURATION seconds, reported every WINDOW seconds: operations, errors, latency
# percentiles per kind and the server's resident memory. Fails on any error.
#   DURATION=600 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-600}
WINDOW=${WINDOW:-30}
PORT=${PORT:-7485}

cargo build --release -q -p jitgate
cargo build --release -q -p jitgate --example soak

work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
# Two principals file all the load; the per-principal limits would measure themselves.
printf '[limits]\nrequests_per_minute = 0\nwrites_per_minute = 0\nmax_pending_per_requester = 0\n' > "$work/config.toml"
JITGATE_LOG=warn ./target/release/jitgate serve --listen "127.0.0.1:$PORT" --config "$work/config.toml" \
  --policy examples/quickstart --database "sqlite://$work/jitgate.db" &
server=$!
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do
  kill -0 "$server" 2>/dev/null || { echo "the server exited; is port $PORT in use?" >&2; exit 1; }
  sleep 0.05
done
echo "soak: $DURATION s on $(nproc) cores, server pid $server"
./target/release/examples/soak "http://127.0.0.1:$PORT" "$DURATION" "$server" "$WINDOW"
echo "database after the soak: $(sqlite3 "$work/jitgate.db" "SELECT COUNT(*) FROM requests") requests, $(sqlite3 "$work/jitgate.db" "SELECT COUNT(*) FROM audit_events") audit events, $(du -h "$work/jitgate.db" | cut -f1)"
curl -sf -H 'authorization: Bearer demo-admin' "http://127.0.0.1:$PORT/v1/audit/verify"; echo
