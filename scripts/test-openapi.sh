#!/usr/bin/env bash
# Checks /openapi.json against tools nobody on this project wrote: openapi-spec-validator must
# accept the document, and Schemathesis (all its checks) must find no failure against the real
# server on the quickstart, called as an admin and as a user. Exits non-zero on any failure.
#
# The tools live in a virtualenv under target/ (created when missing). The server is the
# debug binary (JITGATE_BIN to use another), on a free loopback port with a database of its
# own in a temporary directory. OPENAPI_MAX_EXAMPLES bounds each operation's examples (default
# 25: the whole run takes about a minute on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=$(pwd)/${OPENAPI_VENV:-target/venv-openapi}
if [ ! -x "$VENV/bin/st" ] || [ ! -x "$VENV/bin/openapi-spec-validator" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'openapi-spec-validator>=0.7,<1' 'schemathesis>=4.3,<5'
fi

BIN=${JITGATE_BIN:-target/debug/jitgate}
[ -x "$BIN" ] || cargo build --quiet -p jitgate

work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# Schemathesis calls fast, from one address, with deliberately bad credentials (to check that
# they are refused) and files many requests as one principal. The test server's limits are set
# so that those defences stay out of the way of what is being checked: the per-principal
# rates of filings and writes and the cap on pending requests are off, and failed
# authentications never slow the source down. Their 429s are still documented where they apply.
cat > "$work/config.toml" <<'TOML'
[limits]
requests_per_minute = 0
writes_per_minute = 0
max_pending_per_requester = 0

[auth.throttle]
free_failures = 1000000
TOML

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
JITGATE_LOG=warn "$BIN" serve --listen "127.0.0.1:$port" --policy examples/quickstart \
  --database "sqlite://$work/jitgate.db" --config "$work/config.toml" 2>"$work/server.log" &
server=$!
for _ in $(seq 300); do
  python3 -c "import urllib.request, sys; urllib.request.urlopen('$url/readyz', timeout=1)" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; echo "server exited" >&2; exit 1; }
  sleep 0.1
done

python3 -c "import urllib.request; open('$work/openapi.json', 'wb').write(urllib.request.urlopen('$url/openapi.json').read())"
"$VENV/bin/openapi-spec-validator" "$work/openapi.json"

# What no static schema can state is left to the policy, which answers 422 naming the field:
# a resource or action the policy does not have, a reason its workflow refuses (no ticket),
# a duration over its workflow's maximum, a wait over 60 s. On these operations alone, a
# well-formed request may therefore be refused with 422 (see docs/api.md).
cat > "$work/schemathesis.toml" <<'TOML'
# Every check (as `--checks all` would, but from the file, so that an operation below may turn
# one off: a check named on the command line would win over it).
[checks]
enabled = true

# Forward authentication reads the original request from headers a proxy sets: a request that
# sends none of them is well-formed and still answered 400 naming what is missing; below the
# prefix, a path the catalog cannot judge is a 400 too (an encoded slash, `..` above the root).
# It answers every method, as proxies ask with the original one (Envoy): a method OpenAPI 3.1
# cannot list (QUERY, PROPFIND) is asked about too, not refused with 405. These come first:
# the first entry that selects an operation is the one applied, and an entry's include-path
# and include-method select by either (the entries below select every POST, or GET).
[[operations]]
include-path = "/v1/forward-auth"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403"]
checks.unsupported_method.enabled = false

[[operations]]
include-path = "/v1/forward-auth/{path}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "422"]
checks.unsupported_method.enabled = false

# SCIM (/scim/v2) takes a provisioning token only: the API tokens this run calls with are
# refused there with 401, whatever the data. GET of /Users/.search is /Users/{id} with the id
# ".search" (401 before the id is looked at), not a method the path lacks. A control
# character in the path or query is refused with 422 before any route, as everywhere.
[[operations]]
include-path-regex = "^/scim/v2"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "409", "412", "413", "415", "422"]
checks.unsupported_method.enabled = false

# GitHub's webhook: this server has no [github] section, so every delivery is answered 404
# ("GitHub is not configured") before its headers are looked at, a missing one included. With
# [github], a delivery without X-Hub-Signature-256 is 401 and one without X-GitHub-Event or
# X-GitHub-Delivery 400 (tested in crates/service/tests/github.rs and end to end).
[[operations]]
include-path = "/v1/github/webhook"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "413"]
checks.missing_required_header.enabled = false

[[operations]]
include-path = "/v1/requests"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

[[operations]]
include-path = "/v1/grants/{id}/extend"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

[[operations]]
include-path = "/v1/requests/{id}"
include-method = "GET"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

[[operations]]
include-path = "/v1/tokens"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

TOML

status=0
for token in demo-admin demo-alice; do
  echo "== Schemathesis as $token"
  # From the temporary directory, where Schemathesis leaves its cache. One worker: with two
  # threads, CPython 3.11's ast.parse (which Hypothesis calls to describe filters) can fail
  # with "AST constructor recursion depth mismatch", an error of the tool, not the server.
  (cd "$work" && "$VENV/bin/st" --config-file "$work/schemathesis.toml" run "$url/openapi.json" \
    --max-examples "${OPENAPI_MAX_EXAMPLES:-25}" \
    --workers 1 \
    --header "Authorization: Bearer $token" \
    --request-timeout 70 \
    --no-color) || status=1
done
if [ "$status" != 0 ]; then
  echo "--- server log ---" >&2
  tail -50 "$work/server.log" >&2
fi
exit "$status"
