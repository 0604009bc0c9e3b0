#!/usr/bin/env bash
# The OpenID Provider of the CLI's single sign-on tests (tests/end_to_end/cli_sso.rs): panva's
# oidc-provider (OpenID Certified), pinned in scripts/oidc/package.json and its lock, installed
# with `npm ci` into target/node-oidc (or $OIDC_NODE_DIR):
#   scripts/oidc.sh install        install it if missing; print the directory
#   scripts/oidc.sh start PORT     install it if missing, then run scripts/oidc/provider.mjs
#                                  on 127.0.0.1:PORT (0: any free port) until killed; issuer
#                                  http://127.0.0.1:PORT. Once it listens it prints one line,
#                                  `oidc-provider ready ISSUER`. OIDC_ID_TOKEN_TTL (seconds,
#                                  default 20) sets how long its ID tokens last.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?install or start PORT}
shift

DIR=${OIDC_NODE_DIR:-$root/target/node-oidc}

die() { echo "oidc.sh: $*" >&2; exit 2; }

# shellcheck source=lib/npm-ci.sh
. "$root/scripts/lib/npm-ci.sh"
install() { npm_ci_into "$root/scripts/oidc" "$DIR" oidc.sh; }

case $cmd in
  install)
    install
    echo "$DIR"
    ;;
  start)
    port=${1:?start PORT}
    install
    # provider.mjs lives in the source tree, its packages in DIR; exec, so that killing this
    # process stops the provider.
    OIDC_NODE_DIR="$DIR" exec node "$root/scripts/oidc/provider.mjs" "$port"
    ;;
  *) die "unknown command $cmd: install or start PORT" ;;
esac
