#!/usr/bin/env bash
# Forward authentication under load, side by side in one run: the same demo app (an nginx
# answering 200, scripts/forward-auth/upstream.conf) behind nginx without auth
# (nginx-plain.conf) and behind nginx asking jitgate with auth_request (nginx.conf), alice
# holding a grant, GRANTS other grants seeded in the database. wrk measures each for
# DURATION; the summary gives requests per second and p50/p99 latency of both, the ratio of
# throughputs, and what the decision adds at p99.
#   GRANTS=100000 DURATION=20s CONNECTIONS=64 scripts/bench-forward-auth.sh
# BUILD=debug measures a debug build (only to try the script: the figures mean nothing);
# JITGATE_BIN=PATH measures another build. SEEDED=PATH keeps the seeded database (as
# bench-http.sh). NGINX_WORKERS sets nginx's worker_processes for both fronts (default 1:
# two cores serve wrk, nginx and jitgate). ROUNDS=N alternates the two N times.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
BUILD=${BUILD:-release}
GRANTS=${GRANTS:-100000}
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-1}
export NGINX_WORKERS=${NGINX_WORKERS:-1}

need_wrk
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] ||
  { echo "nginx is missing: run scripts/test.sh as root, or apt-get install nginx" >&2; exit 2; }
case "$BUILD" in
  release)
    choose_jitgate_bin
    cargo build --release -q -p jitgate-store --example seed
    SEED=./target/release/examples/seed
    ;;
  debug)
    if [ -z "${JITGATE_BIN:-}" ]; then
      cargo build -q -p jitgate
      JITGATE_BIN=./target/debug/jitgate
    fi
    cargo build -q -p jitgate-store --example seed
    SEED=./target/debug/examples/seed
    ;;
  *) echo "BUILD is release or debug, not $BUILD" >&2; exit 2 ;;
esac

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

work=$(mktemp -d)
server=""
cleanup() {
  for d in plain auth app; do bash scripts/proxies.sh stop "$work/$d" 2>/dev/null || true; done
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${SEEDED:-}" ] && [ -f "$SEEDED" ]; then
  cp "$SEEDED" "$work/jitgate.db"
else
  "$SEED" "$work/jitgate.db" "$GRANTS" >/dev/null
  if [ -n "${SEEDED:-}" ]; then cp "$work/jitgate.db" "$SEEDED"; fi
fi

jport=$(free_port)
jitgate="http://127.0.0.1:$jport"
JITGATE_LOG=warn "$JITGATE_BIN" serve --listen "127.0.0.1:$jport" \
  --policy examples/forward-auth --database "sqlite://$work/jitgate.db" 2>"$work/server.log" &
server=$!
wait_until_ready "$jport" "$server"

# alice asks to read the demo app, bob approves.
request=$(curl -sf -H 'authorization: Bearer demo-alice' -H 'content-type: application/json' \
  -d '{"resource":"demo-app","action":"read","duration":"8h","reason":"benchmark"}' "$jitgate/v1/requests")
rid=$(printf '%s' "$request" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
curl -sf -H 'authorization: Bearer demo-bob' -H 'content-type: application/json' -d '{}' \
  "$jitgate/v1/requests/$rid/approve" >/dev/null

app=$(free_port) plain=$(free_port) auth=$(free_port)
bash scripts/proxies.sh upstream "$work/app" "$app"
bash scripts/proxies.sh nginx-plain "$work/plain" "$plain" "$app"
bash scripts/proxies.sh nginx "$work/auth" "$auth" "$jport" "$app"

# Correctness before measuring: through jitgate alice reaches the app as herself, and a
# caller without a credential does not reach it at all.
curl -sf -H 'Host: app.example.test' -H 'Authorization: Bearer demo-alice' "http://127.0.0.1:$auth/" |
  grep -qx 'principal=alice' || { echo "alice is not let through as alice" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: app.example.test' "http://127.0.0.1:$auth/")
[ "$code" = 401 ] || { echo "a caller without credentials got $code, not 401" >&2; exit 1; }
curl -sf -H 'Host: app.example.test' "http://127.0.0.1:$plain/" | grep -q '^demo app: ' ||
  { echo "the plain front does not reach the app" >&2; exit 1; }

# wrk's latency figures in milliseconds.
to_ms() {
  awk '{ v = $1; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) }
         else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } printf "%.3f\n", v }'
}

measure() {
  local name=$1 port=$2 out="$work/wrk-$1.txt"
  echo "== $name: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency http://127.0.0.1:$port/"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
    -H 'Host: app.example.test' -H 'Authorization: Bearer demo-alice' "http://127.0.0.1:$port/" | tee "$out"
  if grep -q 'Non-2xx' "$out"; then echo "$name: some answers were not 200" >&2; exit 1; fi
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  p50=$(awk '$1 == "50%" { print $2 }' "$out" | to_ms)
  p99=$(awk '$1 == "99%" { print $2 }' "$out" | to_ms)
  echo "$name $rps $p50 $p99" >> "$work/results"
}

for _ in $(seq "$ROUNDS"); do
  measure without "$plain"
  measure with "$auth"
done

echo
echo "nginx in front of the same app, $CONNECTIONS connections, $DURATION each, $GRANTS grants seeded, build $BUILD"
awk '{ n[$1]++; rps[$1] += $2; p50[$1] += $3; p99[$1] += $4 }
     END {
       printf "%-28s %12s %10s %10s\n", "", "req/s", "p50 ms", "p99 ms"
       printf "%-28s %12.0f %10.3f %10.3f\n", "without auth_request", rps["without"] / n["without"], p50["without"] / n["without"], p99["without"] / n["without"]
       printf "%-28s %12.0f %10.3f %10.3f\n", "with auth_request (jitgate)", rps["with"] / n["with"], p50["with"] / n["with"], p99["with"] / n["with"]
       printf "throughput ratio with/without: %.2f (the bar: at least 0.50)\n", (rps["with"] / n["with"]) / (rps["without"] / n["without"])
       printf "added at p99: %.3f ms (the bar: under 2 ms)\n", p99["with"] / n["with"] - p99["without"] / n["without"]
     }' "$work/results"
echo "jitgate RSS after load: $(ps -o rss= -p "$server") KiB"
