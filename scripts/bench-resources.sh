#!/usr/bin/env bash
# HTTP load test of GET /v1/resources on a generated catalog: writes a policy directory of
# RESOURCES resources and WORKFLOWS workflows (crates/domain/policy/examples/generate_catalog.rs),
# starts a release server on loopback and runs wrk (installed from Debian if missing) with a mix
# of searches (scripts/wrk-resources.lua) from three callers.
#   RESOURCES=10000 WORKFLOWS=500 DURATION=20s CONNECTIONS=16 scripts/bench-resources.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
RESOURCES=${RESOURCES:-10000}
WORKFLOWS=${WORKFLOWS:-500}
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-1}
PORT=${PORT:-7482}

need_wrk
choose_jitgate_bin
cargo build --release -q -p jitgate-policy --example generate_catalog

work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

./target/release/examples/generate_catalog "$work/policy" --resources "$RESOURCES" --workflows "$WORKFLOWS"
start=$(date +%s%N)
JITGATE_LOG=warn "$JITGATE_BIN" serve --listen "127.0.0.1:$PORT" \
  --policy "$work/policy" --database "sqlite://$work/jitgate.db" &
server=$!
wait_until_ready "$PORT" "$server"
echo "server ready on $RESOURCES resources, $WORKFLOWS workflows in $(( ($(date +%s%N) - start) / 1000000 )) ms; RSS $(ps -o rss= -p "$server") KiB"
# Correctness before speed: alice is offered something, and a search that matches nothing is empty.
curl -sf -H 'authorization: Bearer gen-token-alice' "http://127.0.0.1:$PORT/v1/resources?limit=5" | grep -q '"name"'
curl -sf -H 'authorization: Bearer gen-token-alice' "http://127.0.0.1:$PORT/v1/resources?q=no-such-thing-at-all" | grep -q '"items":\[\]'
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/wrk-resources.lua "http://127.0.0.1:$PORT"
