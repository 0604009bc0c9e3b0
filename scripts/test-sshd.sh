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
    for _ in $(seq 1 100); do
      if [ -s "$dir/sshd.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then exit 0; fi
      sleep 0.05
    done
    echo "sshd did not start; its log:" >&2; cat "$dir/sshd.log" >&2; exit 1
    ;;
  stop)
    if [ -s "$dir/sshd.pid" ]; then kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true; fi
    ;;
  *) echo "usage: $0 start DIR PORT CA_PUB PRINCIPAL | stop DIR" >&2; exit 2 ;;
esac
