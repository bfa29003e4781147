#!/usr/bin/env bash
# One command on a fresh machine: install everything, then run the main job on its embedded default.
# Until the RL pipeline lands, the main job is the kernel benchmark (ours vs PyTorch on this machine).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/mlagent-runtime-$(id -u)}"
node apps/cli/bin/mlagent.js bench kernels "$@"
