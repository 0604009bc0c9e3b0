# Shared by the HTTP benchmark scripts (sourced, not run): the load generator, the build to
# measure, and waiting for a server to be ready.

# wrk, installed from Debian when missing (as root).
need_wrk() {
  command -v wrk >/dev/null && return
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
  else
    echo "wrk is missing: install it (apt-get install wrk) or run as root" >&2; exit 2
  fi
}

# JITGATE_BIN=PATH measures another build (an earlier commit's, for before-and-after figures
# in one run); by default this checkout's, built here in release.
choose_jitgate_bin() {
  if [ -z "${JITGATE_BIN:-}" ]; then
    cargo build --release -q -p jitgate
    JITGATE_BIN=./target/release/jitgate
  fi
}

# Wait until the server PID listening on PORT answers /readyz. A server that could not start
# (the port taken by another) must not be measured instead.
wait_until_ready() {
  local port=$1 pid=$2
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "the server exited; is port $port in use?" >&2; exit 1; }
    sleep 0.05
  done
}
