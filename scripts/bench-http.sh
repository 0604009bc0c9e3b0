#!/usr/bin/env bash
# HTTP load test of /v1/check: seeds GRANTS active grants, starts a release server on
# loopback, and runs wrk (installed from Debian if missing) on the same machine.
#   GRANTS=100000 DURATION=20s CONNECTIONS=64 scripts/bench-http.sh
# SEEDED=PATH keeps the seeded database at PATH and reuses it on the next run (seeding a
# million grants takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
GRANTS=${GRANTS:-100000}
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
PORT=${PORT:-7481}

need_wrk
choose_jitgate_bin
cargo build --release -q -p jitgate-store --example seed

work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

if [ -n "${SEEDED:-}" ] && [ -f "$SEEDED" ]; then
  cp "$SEEDED" "$work/jitgate.db"
else
  ./target/release/examples/seed "$work/jitgate.db" "$GRANTS"
  if [ -n "${SEEDED:-}" ]; then cp "$work/jitgate.db" "$SEEDED"; fi
fi
start=$(date +%s%N)
JITGATE_LOG=warn "$JITGATE_BIN" serve --listen "127.0.0.1:$PORT" \
  --policy examples/quickstart --database "sqlite://$work/jitgate.db" &
server=$!
server_pid=$server
wait_until_ready "$PORT" "$server_pid"
echo "server ready with $GRANTS grants in $(( ($(date +%s%N) - start) / 1000000 )) ms; RSS $(ps -o rss= -p "$server") KiB"
# A quick correctness probe before measuring: grant 0 must allow.
curl -sf -H 'authorization: Bearer demo-svc' -H 'content-type: application/json' \
  -d '{"principal":"user-0","resource":"resource-0","action":"read"}' "http://127.0.0.1:$PORT/v1/check" | grep -q '"allow":true'
GRANTS=$GRANTS wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/wrk-check.lua "http://127.0.0.1:$PORT/v1/check"
echo "RSS after load: $(ps -o rss= -p "$server") KiB"
