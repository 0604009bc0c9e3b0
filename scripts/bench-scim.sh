#!/usr/bin/env bash
# SCIM provisioning at scale (issue #25): a release server on loopback with the quickstart, a
# provisioning token, then scripts/scim/load.py provisions SCIM_USERS users and SCIM_GROUPS groups
# through /scim/v2 and measures list pages of 100 and userName lookups.
#   SCIM_USERS=10000 SCIM_GROUPS=1000 SCIM_MEMBERS=10 CONCURRENCY=8 scripts/bench-scim.sh
# (not GROUPS: bash keeps that name for the caller's group ids)
# DATABASE=postgres://... measures on PostgreSQL instead of a fresh SQLite file.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
PORT=${PORT:-7483}

choose_jitgate_bin

work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# The provisioning client writes far faster than a person: the per-principal write limit is
# the API's and does not apply to it, but the quickstart's defaults are kept otherwise.
printf '[limits]\nwrites_per_minute = 0\n' > "$work/config.toml"
JITGATE_LOG=warn "$JITGATE_BIN" serve --listen "127.0.0.1:$PORT" --policy examples/quickstart \
  --database "${DATABASE:-sqlite://$work/jitgate.db}" --config "$work/config.toml" &
server=$!
wait_until_ready "$PORT" "$server"
token=$(curl -sf -H 'authorization: Bearer demo-admin' -H 'content-type: application/json' \
  -d '{"principal":"scim-bench","scim":true}' "http://127.0.0.1:$PORT/v1/tokens" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
python3 scripts/scim/load.py "http://127.0.0.1:$PORT/scim/v2" "$token"
echo "RSS after load: $(ps -o rss= -p "$server") KiB"
