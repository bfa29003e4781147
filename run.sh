#!/usr/bin/env bash
# One command on a fresh machine: install everything, then run the main job on its embedded default.
# The main job: `mlagent train --preset tiny` (collection -> SFT -> step-wise PPO -> evaluation -> report.html).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/mlagent-runtime-$(id -u)}"
node apps/cli/bin/mlagent.js train --preset tiny --out runs/train "$@"
