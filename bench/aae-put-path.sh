#!/bin/sh
# Put path before and after anti-entropy, interleaved: OLD is a checkout without it (e.g. a detached
# worktree of main with node_modules linked), NEW this one. Each round starts a 3-replica cluster
# from one checkout on its own ports, runs the same YCSB workload A (50% puts) against it with
# `npm run bench -- --seeds`, and stops it; rounds alternate old, new, old, new... Reported, never
# asserted: compare the put ops/s and p99 lines.
#
#   sh bench/aae-put-path.sh OLD_DIR [ROUNDS=3] [BASE_PORT=18340]
set -eu
old=${1:?usage: sh bench/aae-put-path.sh OLD_DIR [ROUNDS] [BASE_PORT]}
rounds=${2:-3}
base=${3:-18340}
new=$(cd "$(dirname "$0")/.." && pwd)
records=${RECORDS:-5000}
ops=${OPS:-20000}
conc=${CONCURRENCY:-32}

run() { # label dir port
  label=$1; dir=$2; port=$3
  data=$(mktemp -d)
  (cd "$dir" && exec node --import tsx infra/local-cluster.ts --base-port "$port" --http-port 0 --data-dir "$data" --no-s3 >"$data/cluster.log" 2>&1) &
  pid=$!
  i=0
  until curl -sf "http://127.0.0.1:$((port + 2))/health" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 120 ] && { echo "$label: cluster did not start"; tail -5 "$data"/*.log; kill $pid; exit 1; }
    sleep 1
  done
  seeds="ws://127.0.0.1:$port,ws://127.0.0.1:$((port + 1)),ws://127.0.0.1:$((port + 2))"
  echo "== $label"
  (cd "$new" && node --import tsx bench/ycsb.ts --workload a --records "$records" --ops "$ops" --concurrency "$conc" --no-baseline --seeds "$seeds") 2>&1 | grep -E '^(phase|load|run)' | head -8
  kill -INT $pid; wait $pid 2>/dev/null || true
  rm -rf "$data"
}

r=1
while [ $r -le "$rounds" ]; do
  run "old round $r" "$old" "$base"
  run "new round $r" "$new" "$((base + 10))"
  r=$((r + 1))
done
