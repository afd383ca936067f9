#!/bin/sh
# Installs the yardsticks of `npm run bench -- --yardsticks` (bench/yardsticks.ts): etcd (server and
# etcdctl) and Redis (server and redis-benchmark), from the distribution's packages. Debian and
# Ubuntu only; run as root (or through sudo).
#
# The bench starts its own etcd members and its own redis-server in a temp dir on free loopback
# ports. The packages, though, would start system services on the default ports (2379/2380, 6379)
# with data in /var/lib: they would compete with the bench for the CPU and the disk, and stay behind.
# So this script keeps them from starting (a policy-rc.d that refuses, for the length of the install,
# unless one is already there), then disables and stops whatever services exist, and finally stops
# any daemon the packages started anyway, found by the package's own pid file or by its default
# configuration on its command line, never by a bare process name.

set -eu

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then exec sudo "$0" "$@"; fi
  echo "install-yardsticks: run as root (apt-get needs it)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-yardsticks: apt-get not found; install etcd (3.4+) and redis (6+) by other means, with etcd, etcdctl, redis-server and redis-benchmark on PATH" >&2
  exit 1
fi

# Refuse service starts while the packages install (invoke-rc.d honours policy-rc.d, exit 101).
POLICY=/usr/sbin/policy-rc.d
OUR_POLICY=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# Temporary, from ringkv bench/install-yardsticks.sh: no service starts during the install.\nexit 101\n' >"$POLICY"
  chmod 755 "$POLICY"
  OUR_POLICY=1
fi
remove_policy() { if [ "$OUR_POLICY" = 1 ]; then rm -f "$POLICY"; fi; }
trap remove_policy EXIT INT TERM

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends etcd-server etcd-client redis-server redis-tools

remove_policy
OUR_POLICY=0

# Disable and stop the system services, whichever init system is in charge. `systemctl disable`
# works without a running systemd (it removes the unit's links), so a later boot does not start them.
for svc in etcd redis-server; do
  if command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then systemctl disable --now "$svc" >/dev/null 2>&1 || true
    else systemctl disable "$svc" >/dev/null 2>&1 || true; fi
  fi
  if [ ! -d /run/systemd/system ]; then
    if [ -x "/etc/init.d/$svc" ]; then "/etc/init.d/$svc" stop >/dev/null 2>&1 || true; fi
    if command -v update-rc.d >/dev/null 2>&1; then update-rc.d "$svc" disable >/dev/null 2>&1 || true; fi
  fi
done

# Stop a daemon the packages started anyway. The packages run their services as their own users
# (etcd, redis) from their own pid files; the bench runs its etcd and redis-server as the user who
# runs the bench. So only processes of those binaries owned by those users are touched: someone
# else's etcd or redis on other ports is left alone.
stop_pid() {
  pid=$1
  what=$2
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    echo "install-yardsticks: stopping the $what the package started (pid $pid)"
    kill "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
  fi
}
uid_of() { id -u "$1" 2>/dev/null || echo none; }
ETCD_UID=$(uid_of etcd)
REDIS_UID=$(uid_of redis)
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  exe=$(readlink "$p/exe" 2>/dev/null || true)
  owner=$(awk '/^Uid:/ {print $2}' "$p/status" 2>/dev/null || true)
  case "$exe" in
    /usr/bin/etcd) if [ "$owner" = "$ETCD_UID" ]; then stop_pid "$pid" etcd; fi ;;
    /usr/bin/redis-server|/usr/bin/redis-check-rdb) if [ "$owner" = "$REDIS_UID" ]; then stop_pid "$pid" redis-server; fi ;;
  esac
done
for port in 2379 2380 6379; do
  if command -v ss >/dev/null 2>&1 && ss -ltn "sport = :$port" 2>/dev/null | grep -q LISTEN; then
    echo "install-yardsticks: note: something still listens on port $port (not started by this script; left alone)" >&2
  fi
done

echo
echo "installed:"
for b in etcd etcdctl redis-server redis-benchmark; do
  printf '  %-16s %s\n' "$b" "$(command -v "$b" || echo MISSING)"
done
etcd --version 2>/dev/null | head -n 1 || true
redis-server --version 2>/dev/null || true
