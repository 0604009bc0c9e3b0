#!/usr/bin/env bash
# HTTP load test of /v1/check: seeds GRANTS active grants, starts a release server on
# loopback, and runs wrk (installed from Debian if missing) on the same machine.
#   GRANTS=100000 DURATION=20s CONNECTIONS=64 scripts/bench-http.sh
# SEEDED=PATH keeps the seeded database at PATH and reuses it on the next run (seeding a
# million grants takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
GRANTS=${GRANTS:-100000}
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
PORT=${PORT:-7481}

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
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do
  # A server that could not start (the port taken by another) must not be measured instead.
  kill -0 "$server_pid" 2>/dev/null || { echo "the server exited; is port $PORT in use?" >&2; exit 1; }
  sleep 0.05
done
echo "server ready with $GRANTS grants in $(( ($(date +%s%N) - start) / 1000000 )) ms; RSS $(ps -o rss= -p "$server") KiB"
# A quick correctness probe before measuring: grant 0 must allow.
curl -sf -H 'authorization: Bearer demo-svc' -H 'content-type: application/json' \
  -d '{"principal":"user-0","resource":"resource-0","action":"read"}' "http://127.0.0.1:$PORT/v1/check" | grep -q '"allow":true'
GRANTS=$GRANTS wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/wrk-check.lua "http://127.0.0.1:$PORT/v1/check"
echo "RSS after load: $(ps -o rss= -p "$server") KiB"
