#!/usr/bin/env bash
# Runs every build, lint and test in the monorepo (installing first if needed), then prints one summary line.
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules ] && [ -x node_modules/.bin/nx ] || bash scripts/setup.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/mlagent-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
export NX_DAEMON=false
rm -f packages/*/.vitest-report.json apps/*/.vitest-report.json
status=0
npx nx run-many -t build lint test --outputStyle=stream "$@" || status=$?
node scripts/test-summary.mjs || status=1
exit $status
