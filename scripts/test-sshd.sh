#!/usr/bin/env bash
# A throwaway sshd on loopback for the SSH certificate tests.
#   scripts/test-sshd.sh start DIR PORT CA_PUB_FILE PRINCIPAL
#   scripts/test-sshd.sh stop DIR
# `start` trusts certificates from CA_PUB_FILE for the current user when they name PRINCIPAL,
# accepts nothing else (no passwords, no authorized_keys), and returns once sshd listens.
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?directory}
case "$cmd" in
  start)
    port=${3:?port} ca=${4:?CA public key file} principal=${5:?principal}
    sshd=$(command -v sshd || echo /usr/sbin/sshd)
    [ -x "$sshd" ] || { echo "sshd is missing: run scripts/test.sh as root, or apt-get install openssh-server" >&2; exit 2; }
    mkdir -p "$dir/principals"
    [ "$(id -u)" = 0 ] && mkdir -p /run/sshd
    ssh-keygen -q -t ed25519 -N '' -f "$dir/host_ed25519" <<<y >/dev/null
    echo "$principal" > "$dir/principals/$(id -un)"
    chmod 700 "$dir"; chmod 600 "$dir/principals/$(id -un)"
    cat > "$dir/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_ed25519
PidFile $dir/sshd.pid
TrustedUserCAKeys $ca
AuthorizedPrincipalsFile $dir/principals/%u
AuthorizedKeysFile none
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
AllowTcpForwarding no
X11Forwarding no
LogLevel VERBOSE
CONF
    "$sshd" -f "$dir/sshd_config" -E "$dir/sshd.log"
    # sshd forks into the background before it binds: a port another process holds shows only
    # in its log (and it writes no pid file). Said at once, naming the cause, so that a caller
    # can try another port ("Address already in use"). Ready when the sshd of the pid file
    # listens on the port itself (ss names the listener's pid), not whoever else might.
    for _ in $(seq 1 200); do
      if grep -q "Address already in use" "$dir/sshd.log" 2>/dev/null; then
        echo "sshd could not bind 127.0.0.1:$port (Address already in use); its log:" >&2
        cat "$dir/sshd.log" >&2
        exit 1
      fi
      if [ -s "$dir/sshd.pid" ]; then
        pid=$(cat "$dir/sshd.pid")
        kill -0 "$pid" 2>/dev/null || break
        if command -v ss >/dev/null; then
          ss -Hltnp "sport = :$port" | grep -q "pid=$pid," && exit 0
        elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
          exit 0
        fi
      fi
      sleep 0.05
    done
    echo "sshd did not start; its log:" >&2; cat "$dir/sshd.log" >&2; exit 1
    ;;
  stop)
    if [ -s "$dir/sshd.pid" ]; then kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true; fi
    ;;
  *) echo "usage: $0 start DIR PORT CA_PUB PRINCIPAL | stop DIR" >&2; exit 2 ;;
esac
