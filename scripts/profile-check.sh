#!/usr/bin/env bash
# Instruction counts of the in-process check path (callgrind, deterministic: the same on any
# x86-64 machine for the same build). Builds an index of GRANTS active grants, makes CHECKS
# allowed checks spread over all of them (then, in a second run, CHECKS denied ones), and
# counts only what runs inside GrantIndex::check. Writes the per-function reports to
# docs/profiles/.
#   GRANTS=100000 CHECKS=100000 scripts/profile-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
GRANTS=${GRANTS:-100000}
CHECKS=${CHECKS:-100000}
OUT=${OUT:-docs/profiles/check-callgrind-$GRANTS.txt}

if ! command -v valgrind >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind
  else
    echo "valgrind is missing: install it (apt-get install valgrind) or run as root" >&2; exit 2
  fi
fi
cargo build --release -q -p jitgate-core --example check_profile
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
for kind in allow deny; do
  valgrind --tool=callgrind --callgrind-out-file="$work/$kind" \
    --toggle-collect='jitgate_core::index::GrantIndex::check' \
    ./target/release/examples/check_profile "$GRANTS" "$CHECKS" "$kind" 2>"$work/log"
  callgrind_annotate "$work/$kind" >"$work/report"
  total=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }' "$work/report")
  {
    echo "# GrantIndex::check under callgrind: $GRANTS grants, $CHECKS $kind checks (spread over all grants)"
    echo "# command: GRANTS=$GRANTS CHECKS=$CHECKS scripts/profile-check.sh"
    echo "# instructions inside check: $total in total, $(( total / CHECKS )) per $kind"
    sed -n '/file:function/,$p' "$work/report" | sed -n '1,25p'
    echo
  } >> "$OUT"
  echo "$GRANTS grants: $(( total / CHECKS )) instructions per $kind"
done
