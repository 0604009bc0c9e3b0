#!/usr/bin/env bash
# scim2-tester (PyPI, pinned below), the SCIM 2.0 conformance checker nobody here wrote, in a
# virtualenv of its own (target/venv-scim, or $SCIM_VENV):
#   scripts/scim.sh venv            make it if missing; print its python's path
#   scripts/scim.sh check URL TOKEN run every check against URL (…/scim/v2) and print one line
#                                   per result (SUCCESS / ERROR / SKIPPED …) and a count;
#                                   exit 1 if any is ERROR or CRITICAL (scripts/scim/check.py)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?venv or check}

SCIM2_TESTER_VERSION=0.5.2
VENV=${SCIM_VENV:-$root/target/venv-scim}

die() { echo "scim.sh: $*" >&2; exit 2; }

venv() {
  # Tests run in parallel: one installs while the others wait for it.
  mkdir -p "$(dirname "$VENV")"
  exec 9>"$VENV.lock"
  flock 9
  if ! "$VENV/bin/python" -c "import scim2_tester, httpx2, importlib.metadata as m; assert m.version('scim2-tester') == '$SCIM2_TESTER_VERSION'" 2>/dev/null; then
    python3 -m venv "$VENV" || die "python3 -m venv failed: apt-get install python3-venv"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "scim2-tester[httpx2]==$SCIM2_TESTER_VERSION" >&2 ||
      die "could not install scim2-tester==$SCIM2_TESTER_VERSION from PyPI"
  fi
  exec 9>&-
}

case $cmd in
  venv)
    venv
    echo "$VENV/bin/python"
    ;;
  check)
    url=${2:?check URL TOKEN}
    token=${3:?check URL TOKEN}
    venv
    # 0.5 ships no command line: scripts/scim/check.py runs check_server and prints each result.
    exec "$VENV/bin/python" "$root/scripts/scim/check.py" "$url" "$token"
    ;;
  *) die "unknown command $cmd: venv or check" ;;
esac
