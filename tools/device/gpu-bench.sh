#!/usr/bin/env bash
# Runs on the device machine (one call, well under 10 minutes): unpacks .device/, checks the adapter,
# and runs the GPU-sized kernel benchmark against that machine's CUDA PyTorch. Results go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/device/device-env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/nvidia-smi.txt"
node mlagent.mjs doctor 2>&1 | tee "$OUT/doctor.txt"
timeout "${KERNEL_BENCH_S:-300}" node mlagent.mjs bench kernels --json --check --out "$OUT/bench.json" "$@" 2> >(tee "$OUT/bench.log" >&2) >/dev/null
echo "kernel bench exit $?"
# Generation on the small preset at batch 1 and 32, against the machine's CUDA torch.
timeout "${POLICY_BENCH_S:-100}" node mlagent.mjs bench policy --presets small --batch 1,32 --prompt-len 256 --new-tokens 32 \
  --json --out "$OUT/bench-policy.json" 2> >(tee "$OUT/bench-policy.log" >&2) >/dev/null
echo "policy bench exit $?"
