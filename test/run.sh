#!/bin/sh
# The README's test command (`npm test`): typecheck, then every test file, listed explicitly
# (Node 20 does not expand globs and `node --test DIR` silently runs nothing). Fails when no test
# ran. The external-S3 suite runs only when S3_ENDPOINT names a server (CI starts Swift for it), and
# the real-browser suite only when a Chromium is installed (CI installs chromium-headless-shell).
set -eu
cd "$(dirname "$0")/.."
echo "typecheck: tsc --noEmit"
npx tsc --noEmit -p .
files=$(find coordinator replica client infra test -name '*.test.ts' -not -path '*/node_modules/*' | grep -v -e 'test/s3/external-s3.test.ts' -e 'test/browser-chromium.test.ts' | sort)
if [ -n "${S3_ENDPOINT:-}" ]; then
  files="$files test/s3/external-s3.test.ts"
else
  echo "note: S3_ENDPOINT not set, so test/s3/external-s3.test.ts (Swift/MinIO) is left out of this run"
fi
if [ -n "${CHROME_PATH:-}" ] || command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null || command -v google-chrome >/dev/null; then
  files="$files test/browser-chromium.test.ts"
else
  echo "note: no Chromium (CHROME_PATH, chromium-headless-shell, chromium), so test/browser-chromium.test.ts is left out of this run"
fi
count=$(echo "$files" | wc -w)
echo "running $count test files"
[ "$count" -gt 0 ] || { echo "no test files found" >&2; exit 1; }
out=$(mktemp)
status=0
# shellcheck disable=SC2086
node --import tsx --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$out" $files || status=$?
tests=$(grep -E '^# tests [0-9]+' "$out" | awk '{print $3}' | tail -1)
pass=$(grep -E '^# pass [0-9]+' "$out" | awk '{print $3}' | tail -1)
fail=$(grep -E '^# fail [0-9]+' "$out" | awk '{print $3}' | tail -1)
skipped=$(grep -E '^# skipped [0-9]+' "$out" | awk '{print $3}' | tail -1)
rm -f "$out"
echo "${pass:-0} passed, ${fail:-0} failed, ${skipped:-0} skipped"
if [ "${tests:-0}" -eq 0 ]; then echo "no tests ran" >&2; exit 1; fi
exit $status
