# Sourced by the scripts that install pinned npm packages for the tests (scripts/ui.sh,
# scripts/github.sh, scripts/oidc.sh, scripts/mcp.sh): one copy of how they install.
#
# npm_ci_into SOURCE DIR WHO
#   Install SOURCE/package.json with its lock (SOURCE/package-lock.json) into DIR with `npm ci`,
#   unless DIR already holds exactly that lock, installed. Tests run in parallel: one installs
#   while the others wait for it (a lock file beside DIR). A changed pin installs again. WHO
#   names the script in errors; on failure it exits 2.
npm_ci_into() {
  local source=$1 dir=$2 who=$3
  mkdir -p "$dir"
  exec 9>"$dir.lock"
  flock 9
  if ! cmp -s "$source/package-lock.json" "$dir/package-lock.json" || [ ! -f "$dir/node_modules/.installed" ]; then
    if ! command -v npm >/dev/null; then
      echo "$who: npm is missing: apt-get install nodejs npm" >&2
      exit 2
    fi
    cp "$source/package.json" "$source/package-lock.json" "$dir/"
    # --ignore-scripts: no locked package runs code at install (none has an install script
    # today; a future pin must not run any at test time either).
    if ! (cd "$dir" && npm ci --ignore-scripts --silent --no-audit --no-fund >&2); then
      echo "$who: npm ci failed in $dir (the packages come from the npm registry)" >&2
      exit 2
    fi
    touch "$dir/node_modules/.installed"
  fi
  exec 9>&-
}
