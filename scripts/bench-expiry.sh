#!/usr/bin/env bash
# Expiry at scale: N grants (default 10,000), each with a webhook provider, all ending in the
# same second. Measures how soon /v1/check refuses them (from that second on, by the clock)
# and the lag from each grant's end to its deprovisioning being acknowledged by the receiver
# (jitgate_deprovision_lag_seconds), with a receiver that answers at once.
#   N=10000 scripts/bench-expiry.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
N=${N:-10000}
LEAD=${LEAD:-40}
PORT=${PORT:-7483}
SINK_PORT=${SINK_PORT:-7490}

cargo build --release -q -p jitgate
cargo build --release -q -p jitgate-store --example seed
cargo build --release -q -p jitgate-server --example sink

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

./target/release/examples/sink "127.0.0.1:$SINK_PORT" & pids+=($!)
SEED_EXPIRES_IN="${LEAD}s" SEED_PROVIDER=hook ./target/release/examples/seed "$work/jitgate.db" "$N"
cat > "$work/config.toml" <<CONFIG
[[providers]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:$SINK_PORT/hook"
secret = "benchmark-secret-0123456789"
CONFIG
JITGATE_LOG=warn ./target/release/jitgate serve --listen "127.0.0.1:$PORT" --config "$work/config.toml" \
  --policy examples/quickstart --database "sqlite://$work/jitgate.db" & pids+=($!)
server_pid=$!
wait_until_ready "$PORT" "$server_pid"
ends_ms=$(sqlite3 "$work/jitgate.db" "SELECT MAX(expires_at) FROM grants")
echo "$N grants end at $(date -u -d @$((ends_ms / 1000)) +%T) UTC; waiting"
check() {
  curl -sf -H 'authorization: Bearer demo-svc' -H 'content-type: application/json' \
    -d '{"principal":"user-0","resource":"resource-0","action":"read"}' "http://127.0.0.1:$PORT/v1/check"
}
[[ "$(check)" == *'"allow":true'* ]] || { echo "a seeded grant does not allow before its end" >&2; exit 1; }
# Right after the end: refused.
while [ "$(date +%s%3N)" -lt "$ends_ms" ]; do sleep 0.01; done
sleep 0.01
answer=$(check)
[[ "$answer" == *'"allow":false'* ]] || { echo "allowed after the end: $answer" >&2; exit 1; }
echo "checked $(( $(date +%s%3N) - ends_ms )) ms after the end: refused ($answer)"
# Until every deprovisioning is acknowledged.
until [ "$(sqlite3 "$work/jitgate.db" "SELECT COUNT(*) FROM outbox WHERE operation = 'deprovision' AND done_at IS NULL")" = 0 ]; do
  sleep 0.2
done
echo "all $N deprovisioned $(( $(date +%s%3N) - ends_ms )) ms after the end"
curl -sf "http://127.0.0.1:$PORT/metrics" | awk -v n="$N" '
  /^jitgate_deprovision_lag_seconds_bucket/ {
    match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5); count = $NF
    if (!p50 && count >= n * 0.50) p50 = le
    if (!p99 && count >= n * 0.99) p99 = le
    if (!pmax && count >= n) pmax = le
  }
  /^jitgate_deprovision_lag_seconds_count/ { total = $NF }
  END { printf "deprovision lag (histogram bucket bounds): p50 <= %ss, p99 <= %ss, all <= %ss (%d acknowledged)\n", p50, p99, pmax, total }'
