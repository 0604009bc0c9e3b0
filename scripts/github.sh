#!/usr/bin/env bash
# GitHub's side of jitgate's GitHub App, for the end-to-end tests (tests/end_to_end/github.rs),
# built from GitHub's own npm packages (pinned in scripts/github/package.json and its lock),
# installed with `npm ci` into target/node-github (or $GITHUB_NODE_DIR):
#   scripts/github.sh install                 install them if missing; print the directory
#   scripts/github.sh keys DIR                an RSA key pair for the test App (DIR/app.pem,
#                                             DIR/app.pub.pem); prints their paths as JSON
#   scripts/github.sh standin OPTIONS...      the stand-in for GitHub's REST API, checking every
#                                             call against @octokit/openapi (scripts/github/
#                                             standin.mjs says which options); prints its URL
#   scripts/github.sh sign SECRET             the body on stdin: its X-Hub-Signature-256
#   scripts/github.sh verify SECRET SIGNATURE the body on stdin: exit 0 if the signature verifies
#   scripts/github.sh payload EVENT [JSON]    a webhook payload, checked against
#                                             @octokit/openapi-webhooks (scripts/github/payload.mjs)
#   scripts/github.sh deliver EVENT SECRET [JSON]
#                                             a signed delivery: {event, delivery, signature, body}
#   scripts/github.sh selftest                the stand-in refuses what GitHub would (exit 1 if not)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?install, keys, standin, sign, verify, payload, deliver or selftest}
shift

DIR=${GITHUB_NODE_DIR:-$root/target/node-github}
export GITHUB_NODE_DIR=$DIR

die() { echo "github.sh: $*" >&2; exit 2; }

# shellcheck source=lib/npm-ci.sh
. "$root/scripts/lib/npm-ci.sh"
install() { npm_ci_into "$root/scripts/github" "$DIR" github.sh; }

case $cmd in
  install)
    install
    echo "$DIR"
    ;;
  keys)
    install
    exec node "$root/scripts/github/keys.mjs" "${1:?keys DIR}"
    ;;
  standin)
    install
    exec node "$root/scripts/github/standin.mjs" "$@"
    ;;
  sign)
    install
    exec node "$root/scripts/github/sign.mjs" sign "${1:?sign SECRET}"
    ;;
  verify)
    install
    exec node "$root/scripts/github/sign.mjs" verify "${1:?verify SECRET SIGNATURE}" "${2:?verify SECRET SIGNATURE}"
    ;;
  payload)
    install
    exec node "$root/scripts/github/payload.mjs" build "${1:?payload EVENT [JSON]}" "${2:-{\}}"
    ;;
  deliver)
    install
    exec node "$root/scripts/github/payload.mjs" deliver "${1:?deliver EVENT SECRET [JSON]}" "${2:?deliver EVENT SECRET [JSON]}" "${3:-{\}}"
    ;;
  selftest)
    install
    exec node "$root/scripts/github/selftest.mjs"
    ;;
  *) die "unknown command $cmd: install, keys, standin, sign, verify, payload, deliver or selftest" ;;
esac
