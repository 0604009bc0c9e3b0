#!/usr/bin/env bash
# The official MCP Python SDK (`mcp` on PyPI, pinned below) for the MCP tests and benchmark, in
# a virtualenv of its own (target/venv-mcp, or $MCP_VENV):
#   scripts/mcp.sh venv        make it if missing; print its python's path
#   scripts/mcp.sh filesystem  install the reference filesystem server from npm (pinned with
#                              its lock in scripts/mcp/) into target/npm-mcp if missing; print
#                              its entry point's path
# scripts/mcp/upstream.py is an MCP server built with the SDK (FastMCP) and scripts/mcp/agent.py
# an SDK client (ClientSession) that runs a JSON script of calls; both run with that python.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?venv or filesystem}

# 1.x: FastMCP, stdio_client and streamablehttp_client, as docs/agents.md shows them (2.x
# renamed them).
MCP_VERSION=1.30.0
VENV=${MCP_VENV:-$root/target/venv-mcp}

die() { echo "mcp.sh: $*" >&2; exit 2; }

# shellcheck source=lib/npm-ci.sh
. "$root/scripts/lib/npm-ci.sh"

case $cmd in
  venv)
    # Tests run in parallel: one installs while the others wait for it.
    mkdir -p "$(dirname "$VENV")"
    exec 9>"$VENV.lock"
    flock 9
    if ! "$VENV/bin/python" -c "import mcp, importlib.metadata as m; assert m.version('mcp') == '$MCP_VERSION'" 2>/dev/null; then
      python3 -m venv "$VENV" || die "python3 -m venv failed: apt-get install python3-venv"
      "$VENV/bin/pip" install --quiet --disable-pip-version-check "mcp==$MCP_VERSION" >&2 ||
        die "could not install mcp==$MCP_VERSION from PyPI"
    fi
    exec 9>&-
    echo "$VENV/bin/python"
    ;;
  filesystem)
    # Pinned with its whole dependency tree (scripts/mcp/package.json and its lock), so that
    # a new release of a dependency does not change the server the tests run.
    dir=$root/target/npm-mcp
    npm_ci_into "$root/scripts/mcp" "$dir" mcp.sh
    echo "$dir/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"
    ;;
  *) die "unknown command $cmd: venv or filesystem" ;;
esac
