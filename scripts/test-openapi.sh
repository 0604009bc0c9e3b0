#!/usr/bin/env bash
# Checks /openapi.json against tools nobody on this project wrote: openapi-spec-validator must
# accept the document, and Schemathesis (all its checks) must find no failure against the real
# server on the quickstart, called as an admin and as a user. Exits non-zero on any failure.
#
# The tools live in a virtualenv under target/ (created when missing; `install` does only
# that). The server is the debug binary (JITGATE_BIN to use another), on a free loopback port
# (OPENAPI_PORT to choose it) with a database of its own in a temporary directory. OPENAPI_MAX_EXAMPLES bounds each operation's examples (default
# 25: the whole run takes about a minute on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=$(pwd)/${OPENAPI_VENV:-target/venv-openapi}
# Exact versions (Hypothesis too, which draws the examples), so that a run does not change
# behaviour when a new release comes out.
OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0
SCHEMATHESIS_VERSION=4.32.5
HYPOTHESIS_VERSION=6.170.27
# Tests run in parallel: one installs while the others wait (scripts/test.sh installs before
# the tests, with `scripts/test-openapi.sh install`). A network or registry failure is tried
# again twice.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if ! "$VENV/bin/python" -c "import importlib.metadata as m; assert [m.version(p) for p in ('openapi-spec-validator', 'schemathesis', 'hypothesis')] == ['$OPENAPI_SPEC_VALIDATOR_VERSION', '$SCHEMATHESIS_VERSION', '$HYPOTHESIS_VERSION']" 2>/dev/null; then
  python3 -m venv "$VENV"
  for try in 1 2 3; do
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
      "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION" "schemathesis==$SCHEMATHESIS_VERSION" \
      "hypothesis==$HYPOTHESIS_VERSION" && break
    [ "$try" = 3 ] && { echo "test-openapi.sh: could not install the tools from PyPI" >&2; exit 2; }
    sleep $((try * 10))
  done
fi
exec 9>&-
[ "${1:-}" = install ] && exit 0

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

# The port: OPENAPI_PORT, or one of the test ports (scripts/lib/test-port.sh: outside the
# kernel's ephemeral range, in a block no other test process uses). A process outside the tests
# may still hold it: then the server exits ("Address already in use") and starts again on the
# next one, as Postgres::start does, unless OPENAPI_PORT fixed it.
# shellcheck source=lib/test-port.sh
. scripts/lib/test-port.sh
# /readyz answered by our server: it is alive after the answer, and holds the port itself
# (ss names the listener's pid), not another process that happens to listen there.
ours_answers() {
  python3 -c "import urllib.request; urllib.request.urlopen('$url/readyz', timeout=1)" 2>/dev/null || return 1
  kill -0 "$server" 2>/dev/null || return 1
  command -v ss >/dev/null || return 0
  ss -Hltnp "sport = :$port" | grep -q "pid=$server,"
}
ready=""
for _ in 1 2 3 4 5; do
  if [ -n "${OPENAPI_PORT:-}" ]; then
    port=$OPENAPI_PORT
  else
    test_port_next
    port=$TEST_PORT
  fi
  url="http://127.0.0.1:$port"
  JITGATE_LOG=warn "$BIN" serve --listen "127.0.0.1:$port" --policy examples/quickstart \
    --database "sqlite://$work/jitgate.db" --config "$work/config.toml" 2>>"$work/server.log" &
  server=$!
  for _ in $(seq 600); do
    # Ours first: once it has exited, whatever answers on the port is someone else.
    kill -0 "$server" 2>/dev/null || break
    if ours_answers; then
      ready=yes
      break
    fi
    sleep 0.1
  done
  [ -n "$ready" ] && break
  if kill -0 "$server" 2>/dev/null; then
    if ss -Hltnp "sport = :$port" 2>/dev/null | grep -q .; then
      echo "another process than our server listens on 127.0.0.1:$port" >&2
    else
      echo "the server was not ready after 60 s on 127.0.0.1:$port" >&2
    fi
    kill "$server" 2>/dev/null || true
  fi
  wait "$server" 2>/dev/null || true
  server=""
  if [ -n "${OPENAPI_PORT:-}" ] || ! grep -q "Address already in use" "$work/server.log"; then
    break
  fi
  echo "127.0.0.1:$port was taken before the server bound it: trying another port" >&2
done
if [ -z "$ready" ]; then
  echo "the server never became ready; its log:" >&2
  cat "$work/server.log" >&2
  exit 1
fi

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

# The examples are random: one seed per commit (OPENAPI_SEED to choose one), printed, so that
# a failure replays with the same examples and a new commit still explores new ones. Hypothesis'
# too_slow health check judges how fast examples are drawn on a loaded machine, not the API.
if [ -n "${OPENAPI_SEED:-}" ]; then
  seed=$OPENAPI_SEED
elif commit=$(git rev-parse --short=8 HEAD 2>/dev/null); then
  seed=$((16#$commit))
else
  seed=$RANDOM$RANDOM
fi
echo "== Schemathesis seed $seed (OPENAPI_SEED=$seed scripts/test-openapi.sh replays it)"
status=0
for token in demo-admin demo-alice; do
  echo "== Schemathesis as $token"
  # From the temporary directory, where Schemathesis leaves its cache. One worker: with two
  # threads, CPython 3.11's ast.parse (which Hypothesis calls to describe filters) can fail
  # with "AST constructor recursion depth mismatch", an error of the tool, not the server.
  (cd "$work" && "$VENV/bin/st" --config-file "$work/schemathesis.toml" run "$url/openapi.json" \
    --max-examples "${OPENAPI_MAX_EXAMPLES:-25}" \
    --seed "$seed" \
    --suppress-health-check too_slow \
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
