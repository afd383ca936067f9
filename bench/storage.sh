#!/bin/sh
# `npm run bench:storage -- [--keys N] [--json]`: the engine benchmark, then snapshot/restore,
# both with the same flags.
set -e
cd "$(dirname "$0")/.."
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
node --expose-gc --import tsx bench/storage-bench.ts "$@"
node --import tsx bench/snapshot-bench.ts "$@"
