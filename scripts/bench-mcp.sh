#!/usr/bin/env bash
# What `jitgate mcp proxy` adds to an automatically approved tool call: the MCP Python SDK's
# client (scripts/mcp/agent.py) calls read_file N times in a row on the SDK-built upstream
# (scripts/mcp/upstream.py, over stdio), once straight and once through the proxy, against a
# jitgate server on the quickstart policy (its `files` resource: reads automatic for dev), as an
# agent token acting for alice.
# Each call through the proxy is one POST /v1/grants/use (after the first, which files the
# automatic request). Prints p50, p99 and mean of both and what the proxy adds at p99 (the
# issue's bar: under 5 ms).
#   CALLS=2000 ROUNDS=3 scripts/bench-mcp.sh
# BUILD=debug measures a debug build (only to try the script: the figures mean nothing);
# JITGATE_BIN=PATH measures another build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
BUILD=${BUILD:-release}
CALLS=${CALLS:-2000}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-7461}

case "$BUILD" in
  release) choose_jitgate_bin ;;
  debug)
    if [ -z "${JITGATE_BIN:-}" ]; then
      cargo build -q -p jitgate
      JITGATE_BIN=./target/debug/jitgate
    fi
    ;;
  *) echo "BUILD is release or debug" >&2; exit 2 ;;
esac
PYTHON=$(scripts/mcp.sh venv)

work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The quickstart: its `files` resource reads automatically for dev, and so for alice's agents.
mkdir -p "$work/policy" "$work/root"
cp examples/quickstart/{directory,workflows,resources}.toml "$work/policy/"
echo "a line to read" >"$work/root/notes.txt"

printf '[limits]\nrequests_per_minute = 0\nwrites_per_minute = 0\n' >"$work/config.toml"
JITGATE_LOG=warn "$JITGATE_BIN" serve --listen "127.0.0.1:$PORT" --policy "$work/policy" \
  --database "sqlite://$work/jitgate.db" --config "$work/config.toml" 2>"$work/server.log" &
server_pid=$!
wait_until_ready "$PORT" "$server_pid"

export JITGATE_URL="http://127.0.0.1:$PORT"
# The agent's own credential, acting for alice.
JITGATE_TOKEN=$(JITGATE_TOKEN=demo-admin "$JITGATE_BIN" token create --principal claude-alice \
  --agent-for alice --output json | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["token"])')
export JITGATE_TOKEN
upstream=("$PYTHON" scripts/mcp/upstream.py --root "$work/root" --log "$work/calls.log")
# A warm-up call first (it files the automatic request through the proxy), then the measured run.
script='[{"call": "read_file", "arguments": {"path": "notes.txt"}}, {"bench": "read_file", "arguments": {"path": "notes.txt"}, "n": '"$CALLS"'}]'

measure() {
  "$PYTHON" scripts/mcp/agent.py --script "$script" -- "$@" | tail -1
}

for round in $(seq "$ROUNDS"); do
  direct=$(measure "${upstream[@]}")
  proxied=$(measure "$JITGATE_BIN" mcp proxy --resource files -- "${upstream[@]}")
  "$PYTHON" - "$round" "$direct" "$proxied" <<'PY'
import json, sys
round_, direct, proxied = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
for name, r in (("direct", direct), ("proxied", proxied)):
    if "error" in r or "p99_ms" not in r:
        sys.exit(f"{name}: {r}")
print(f"round {round_}: {direct['calls']} calls each")
print(f"  straight to the upstream  p50 {direct['p50_ms']:.3f} ms  p99 {direct['p99_ms']:.3f} ms  mean {direct['mean_ms']:.3f} ms")
print(f"  through jitgate mcp proxy p50 {proxied['p50_ms']:.3f} ms  p99 {proxied['p99_ms']:.3f} ms  mean {proxied['mean_ms']:.3f} ms")
print(f"  added: p50 {proxied['p50_ms'] - direct['p50_ms']:+.3f} ms, p99 {proxied['p99_ms'] - direct['p99_ms']:+.3f} ms")
PY
done
