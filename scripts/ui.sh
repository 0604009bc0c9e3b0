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

install() {
  # Tests run in parallel: one installs while the others wait for it. The installed lock is
  # compared with the committed one, so a changed pin installs again.
  mkdir -p "$DIR"
  exec 9>"$DIR.lock"
  flock 9
  if ! cmp -s "$root/scripts/ui/package-lock.json" "$DIR/package-lock.json" || [ ! -f "$DIR/node_modules/.installed" ]; then
    command -v npm >/dev/null || die "npm is missing: apt-get install nodejs npm"
    cp "$root/scripts/ui/package.json" "$root/scripts/ui/package-lock.json" "$DIR/"
    (cd "$DIR" && npm ci --silent --no-audit --no-fund >&2) ||
      die "npm ci failed in $DIR (the packages come from the npm registry)"
    touch "$DIR/node_modules/.installed"
  fi
  exec 9>&-
}

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
