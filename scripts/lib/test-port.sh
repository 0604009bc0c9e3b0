# Sourced by the scripts that start a server of their own on a port they pick themselves
# (scripts/test-openapi.sh): the same ports as the Rust tests' free_port
# (crates/edges/cli/tests/end_to_end/support/ports.rs), by the same rules, so that neither takes
# the other's:
#   - outside the kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range), which no
#     bind(0) or connect() on the machine is ever given: 20000-31999 below it, else above it;
#   - in a block of 100 ports locked for as long as this shell runs
#     (${TMPDIR:-/tmp}/jitgate-test-ports/block-FIRST_PORT, flock), starting at a block derived
#     from the pid; no other test process walks a locked block;
#   - one nothing listens on (a test bind).
#
# test_port_next
#   Sets TEST_PORT to the next such port. The first call locks a block (its file descriptor,
#   TEST_PORT_FD, stays open until the shell exits). Where the ephemeral range leaves no room,
#   the kernel picks.

TEST_PORT=""
TEST_PORT_FD=""
_test_port_next=0
_test_port_end=0

_test_port_bindable() {
  python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
port = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
try:
    s6 = socket.socket(socket.AF_INET6)
    s6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s6.bind(("::1", port))
except OSError as e:
    import errno
    # Only a listener there makes the port taken; no IPv6 loopback (or IPv6 off) does not.
    if e.errno == errno.EADDRINUSE:
        raise
PY
}

# The range as "START END" (END exclusive), or nothing when there is no room.
_test_port_range() {
  local low high
  read -r low high < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || return 0
  local below_end=$((low < 32000 ? low : 32000))
  if [ $((below_end - 20000)) -ge 2000 ]; then
    echo "20000 $below_end"
    return 0
  fi
  local above_start=$((high + 1 > 20000 ? high + 1 : 20000))
  if [ $((65000 - above_start)) -ge 2000 ]; then
    echo "$above_start 65000"
  fi
}

# Lock a block no other test process holds: sets _test_port_next and _test_port_end.
_test_port_claim() {
  local range start end blocks first i block from dir fd
  range=$(_test_port_range)
  read -r start end <<<"$range"
  blocks=$(((end - start) / 100))
  first=$(($$ % blocks))
  dir=${TMPDIR:-/tmp}/jitgate-test-ports
  mkdir -p "$dir" 2>/dev/null || true
  for i in $(seq 0 $((blocks - 1))); do
    block=$(((first + i) % blocks))
    from=$((start + block * 100))
    # A lock file that cannot be opened (the directory left by another user's run): the
    # block is used unlocked, as the Rust side does; the bind test still keeps the ports
    # apart from running servers.
    if ! { exec {fd}>>"$dir/block-$from"; } 2>/dev/null && ! { exec {fd}<"$dir/block-$from"; } 2>/dev/null; then
      TEST_PORT_FD=""
      _test_port_next=$from
      _test_port_end=$((from + 100))
      return 0
    fi
    if flock -n "$fd"; then
      TEST_PORT_FD=$fd
      _test_port_next=$from
      _test_port_end=$((from + 100))
      return 0
    fi
    exec {fd}>&-
  done
  echo "every test port in $start-$end is locked by another process" >&2
  return 1
}

test_port_next() {
  if [ -z "$(_test_port_range)" ]; then
    TEST_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    return 0
  fi
  while :; do
    if [ "$_test_port_next" -ge "$_test_port_end" ]; then
      # The block used up stays locked: ports of it may still be in use.
      _test_port_claim || return 1
    fi
    TEST_PORT=$_test_port_next
    _test_port_next=$((_test_port_next + 1))
    _test_port_bindable "$TEST_PORT" && return 0
  done
}
