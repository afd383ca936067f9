#!/bin/bash
# A real S3 implementation for CI: single-node, one-replica OpenStack Swift with its s3api
# middleware (and tempauth, memcached), all under $SWIFT_DIR, loopback only.
#
#   eval "$(bash .ci/swift-s3api.sh start)"   # installs if missing, starts, waits, prints exports
#   node --import tsx --test test/s3/external-s3.test.ts
#   bash .ci/swift-s3api.sh stop              # kills the processes named by the pid files
#
# Only the `export ...` line goes to stdout (so `eval` works); progress goes to stderr.
# Ports: S3PORT (default 18080; 8080 is the ringkv gateway's), MCPORT (memcached, default 11211),
# and 6200-6202 for the object, container and account servers (loopback only).
# Seen working with Debian 12's swift 2.30.1.
set -euo pipefail

S3PORT=${S3PORT:-18080}
MCPORT=${MCPORT:-11211}
D=${SWIFT_DIR:-/tmp/ringkv-swift}
READY_WAIT_S=${READY_WAIT_S:-90}

say() { echo "swift-s3api: $*" >&2; }

# HTTP status of a GET, with curl or (Swift brings it) python3.
http_status() {
  if command -v curl >/dev/null 2>&1; then
    curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true
  else
    python3 -c 'import sys,urllib.request
try: print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except Exception: print(0)' "$1"
  fi
}

stop() {
  local pidfile pid
  for pidfile in "$D"/proxy.pid "$D"/object.pid "$D"/container.pid "$D"/account.pid "$D"/memcached.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  say "stopped"
}

install() {
  local missing=0 p
  for p in swift-proxy-server swift-object-server swift-container-server swift-account-server swift-ring-builder memcached; do
    command -v "$p" >/dev/null 2>&1 || missing=1
  done
  [ "$missing" = 0 ] && return 0
  say "installing Debian's swift and memcached (about 70 s)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq swift swift-proxy swift-object swift-container swift-account memcached >&2
}

start() {
  install
  stop 2>/dev/null || true
  rm -rf "$D"; mkdir -p "$D"/{etc,node/d1,cache,log}
  cat > "$D/etc/swift.conf" <<C
[swift-hash]
swift_hash_path_suffix = ringkv
swift_hash_path_prefix = ringkv
[storage-policy:0]
name = gold
default = yes
C
  (
    cd "$D/etc"
    for t in "object 6200" "container 6201" "account 6202"; do
      set -- $t
      swift-ring-builder "$1.builder" create 6 1 1 >/dev/null
      swift-ring-builder "$1.builder" add "r1z1-127.0.0.1:$2/d1" 1 >/dev/null
      swift-ring-builder "$1.builder" rebalance >/dev/null || true
      cat > "$D/etc/$1-server.conf" <<C
[DEFAULT]
swift_dir = $D/etc
user = root
devices = $D/node
mount_check = false
bind_ip = 127.0.0.1
bind_port = $2
workers = 1
log_facility = LOG_LOCAL0
log_address = /dev/null
recon_cache_path = $D/cache
[pipeline:main]
pipeline = $1-server
[app:$1-server]
use = egg:swift#$1
C
    done
  )
  cat > "$D/etc/proxy-server.conf" <<C
[DEFAULT]
swift_dir = $D/etc
user = root
bind_ip = 127.0.0.1
bind_port = $S3PORT
workers = 1
log_address = /dev/null
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk s3api tempauth copy slo dlo proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:s3api]
use = egg:swift#s3api
location = us-east-1
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MCPORT
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
C
  memcached -l 127.0.0.1 -p "$MCPORT" -U 0 -m 64 -u root > "$D/log/memcached.log" 2>&1 &
  echo $! > "$D/memcached.pid"
  local s
  for s in object container account proxy; do
    nohup "swift-$s-server" "$D/etc/$s-server.conf" -v > "$D/log/$s.log" 2>&1 &
    echo $! > "$D/$s.pid"
  done

  say "waiting for http://127.0.0.1:$S3PORT/healthcheck (at most ${READY_WAIT_S} s)"
  local started=$SECONDS
  until [ "$(http_status "http://127.0.0.1:$S3PORT/healthcheck")" = 200 ]; do
    if (( SECONDS - started >= READY_WAIT_S )); then
      say "not ready after ${READY_WAIT_S} s; log tails:"
      for s in proxy object container account memcached; do
        echo "--- $D/log/$s.log" >&2; tail -n 20 "$D/log/$s.log" >&2 || true
      done
      stop
      exit 1
    fi
    for s in proxy object container account memcached; do
      if ! kill -0 "$(cat "$D/$s.pid")" 2>/dev/null; then
        say "$s exited early:"; tail -n 30 "$D/log/$s.log" >&2 || true
        stop
        exit 1
      fi
    done
    sleep 0.5
  done
  say "ready in $((SECONDS - started)) s"
  echo "export S3_ENDPOINT=http://127.0.0.1:$S3PORT S3_ACCESS_KEY_ID=test:tester S3_SECRET_ACCESS_KEY=testing S3_BUCKET=ringkv-ci"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
