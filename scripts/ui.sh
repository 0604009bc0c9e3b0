#!/usr/bin/env bash
# What the web UI's accessibility test needs from npm: axe-core (pinned in
# scripts/ui/package.json and its lock), installed with `npm ci` into target/node-ui
# (or $UI_NODE_DIR):
#   scripts/ui.sh install   install it if missing; print the directory
#   scripts/ui.sh axe       install it if missing; print the path of axe.min.js, which
#                           tests/end_to_end/web_ui/accessibility.rs injects into every page
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?install or axe}

DIR=${UI_NODE_DIR:-$root/target/node-ui}

die() { echo "ui.sh: $*" >&2; exit 2; }

# shellcheck source=lib/npm-ci.sh
. "$root/scripts/lib/npm-ci.sh"
install() { npm_ci_into "$root/scripts/ui" "$DIR" ui.sh; }

case $cmd in
  install)
    install
    echo "$DIR"
    ;;
  axe)
    install
    axe="$DIR/node_modules/axe-core/axe.min.js"
    [ -f "$axe" ] || die "$axe is missing after npm ci"
    echo "$axe"
    ;;
  *) die "unknown command $cmd: install or axe" ;;
esac
