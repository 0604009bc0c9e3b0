#!/usr/bin/env bash
# Refresh docs/ui/: runs the web UI's accessibility test (tests/end_to_end/web_ui/accessibility.rs),
# which opens every page at desktop (1280x860) and phone (390x844) size in headless Chromium,
# checks it with axe-core and saves a screenshot of each to target/ui-screenshots/; then copies
# those screenshots (NAME-desktop.png, NAME-phone.png) to docs/ui/, replacing the old set.
# Needs what scripts/test.sh installs (chromium, chromium-driver, node and npm).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
shots=target/ui-screenshots
rm -f "$shots"/*-desktop.png "$shots"/*-phone.png
CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-0} \
  cargo test -p jitgate --test end_to_end -- web_ui::accessibility:: >&2
shopt -s nullglob
taken=("$shots"/*-desktop.png "$shots"/*-phone.png)
[ ${#taken[@]} -gt 0 ] || { echo "ui-screenshots.sh: the test took no screenshots" >&2; exit 1; }
rm -f docs/ui/*-desktop.png docs/ui/*-phone.png
for png in "${taken[@]}"; do
  # Smaller files for the repository when a lossless optimizer is at hand.
  if command -v optipng >/dev/null; then optipng -quiet -o2 "$png"; fi
  cp "$png" docs/ui/
done
echo "${#taken[@]} screenshots in docs/ui/"
