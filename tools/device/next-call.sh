#!/usr/bin/env bash
# The one device call planned for the next session lent an H200 (15 minutes of device time in all, the machine's
# start included, so there is room for one call of ~9 minutes): after `bash tools/device/prepare.sh` here, run
# `bash tools/device/next-call.sh` with carry [".device"] and timeout_s 590, then give the machine back.
# In order of what issue 2 needs (the parts' limits add up to 550 s):
#   1. the tensor-core sweep: attention forward and backward tiles, the f16 square tiles, correctness checks (130 s);
#   2. the kernel benchmark against CUDA torch, with every case's output checked: the two target cases (matmul f16
#      4096^3, attention forward), the candidates waiting since sessions 15-16, and last the sampling cases (session
#      24: top-k/top-p passes that stop early; never timed on a GPU) (240 s);
#   3. the two target cases again with Dawn's bounds checks off (disable_robustness; 60 s);
#   4. one 7B-shaped LoRA step at 4k tokens against torch, profiled by op (120 s).
# Read $OUT/bench.log for WRONG first: a wrong candidate must not become a default.
set -uo pipefail
cd "$(dirname "$0")/../.."
export SWEEP_PARTS="${SWEEP_PARTS:-att,bwd,square,check}" SWEEP_S="${SWEEP_S:-130}"
export KERNEL_BENCH_S="${KERNEL_BENCH_S:-240}" BENCH_FILTER="${BENCH_FILTER:-matmul f16 4096,attention,lora,k_proj T=512,q_proj T=32,T=1 ,sample}"
export BENCH_TOGGLES="${BENCH_TOGGLES:-disable_robustness}" TOGGLE_BENCH_S="${TOGGLE_BENCH_S:-60}"
export POLICY_TRAIN_S="${POLICY_TRAIN_S:-120}" POLICY_PROFILE="${POLICY_PROFILE:-1}"
exec bash tools/device/sgm-sweep.sh
