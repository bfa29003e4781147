#!/usr/bin/env bash
# Runs on the device machine (one call): the subgroup-matrix sweep (tools/device/sgm-sweep.ts: every tile
# checked for correctness and timed), then the kernel benchmark of the matmul, attention and head cases with
# the library's defaults against the machine's CUDA PyTorch, then the 7B LoRA training bench, then any extra
# command lines given in $EXTRA_CMDS (run from .device/pkg). Results go to $OUT (at most 8 files come back).
# POLICY_GEN_S (s, default 0: skipped) adds the profiled 7B generation bench at batch 1 and 32; GEN_DPS=N the
# batch-1 decode with N dispatches a submit against the default (up to 400 s).
# Time limits (s): SWEEP_S 200, KERNEL_BENCH_S 200, POLICY_TRAIN_S 90 (0 skips it; POLICY_PROFILE=1 adds one
# profiled step, GPU time by op, in the JSON: allow ~40 s more). SWEEP_PARTS picks the sweep's parts
# (probe,debug,att,proj,square,check; all by default), BENCH_FILTER the kernel cases, BENCH_CHECK=0 times them
# without checking their outputs (bench kernels --check, on by default); BENCH_TOGGLES times TOGGLE_FILTER's cases
# again with more Dawn toggles (TOGGLE_BENCH_S, default 120).
# Prepare here first: bash tools/device/prepare.sh (bundles sgm-sweep.mjs beside mlagent.mjs).
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/device/device-env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/sweep.log"
timeout "${SWEEP_S:-200}" node sgm-sweep.mjs "$OUT" >> "$OUT/sweep.log" 2>&1
echo "sweep exit $?"; grep -v '^Warning' "$OUT/sweep.log" | grep -v mm-check | tail -n 60
rm -f "$OUT/sweep.txt"  # rebuilt from sweep.json; keeps the returned files under 8
# --check (BENCH_CHECK=0 drops it): each case's output sampled against float64 at its own shape and path.
check=(); [ "${BENCH_CHECK:-1}" != 0 ] && check=(--check)
timeout "${KERNEL_BENCH_S:-200}" node mlagent.mjs bench kernels --json --out "$OUT/bench.json" --filter "${BENCH_FILTER:-matmul,attention,head}" \
  ${check[@]+"${check[@]}"} 2> >(tee "$OUT/bench.log" >&2) >/dev/null
echo "kernel bench exit $?"
# BENCH_TOGGLES=a,b (default unset: skipped): the cases of TOGGLE_FILTER again with those Dawn toggles enabled
# (MLAGENT_DAWN_TOGGLES), e.g. disable_robustness: Tint's bounds checks on every array access, never timed on a GPU.
if [ -n "${BENCH_TOGGLES:-}" ]; then
  MLAGENT_DAWN_TOGGLES="$BENCH_TOGGLES" timeout "${TOGGLE_BENCH_S:-120}" node mlagent.mjs bench kernels \
    --filter "${TOGGLE_FILTER:-=matmul f16 4096x4096x4096,=attention fwd causal f16 B1 T2048 Hq28 Hkv4 D128}" ${check[@]+"${check[@]}"} 2>&1 \
    | grep -E '^\||^Adapter|WRONG|rror' | sed "s/^/toggles $BENCH_TOGGLES: /"
  echo "toggled kernel bench exit $?"
fi
# LoRA training of a Qwen2.5-7B-shaped model at 4k tokens against torch (its linears take the scaled-split tensor-core
# path since session 10); POLICY_TRAIN_S=0 skips it.
if [ "${POLICY_TRAIN_S:-90}" -gt 0 ]; then
  timeout "${POLICY_TRAIN_S:-90}" node mlagent.mjs bench policy --mode train --presets 7b --seq-len 4096 --checkpoint on \
    --iterations 1 ${POLICY_PROFILE:+--profile} --json --out "$OUT/policy-7b-train.json" 2> >(tee "$OUT/policy-7b-train.log" >&2) >/dev/null
  echo "policy 7b train exit $?"
fi
# Greedy generation of the 7B shape at batch 1 and 32 (the RL sampling batch), profiled by op, with the planner's
# peak beside the measured one; POLICY_GEN_S=0 (the default) skips it. GEN_KV=f32 times the f32 KV caches
# generate() used before session 32 (default: f16, the weights' dtype).
if [ "${POLICY_GEN_S:-0}" -gt 0 ]; then
  timeout "${POLICY_GEN_S}" node mlagent.mjs bench policy --mode generate --presets 7b --batch 1,32 --prompt-len 512 --new-tokens 16 \
    --iterations 1 --profile ${GEN_KV:+--kv-dtype "$GEN_KV"} --json --out "$OUT/policy-7b-generate.json" >/dev/null
  echo "policy 7b generate exit $?"
fi
# GEN_DPS=N (default unset: skipped): decode at batch 1 with the default 512 dispatches a submit and with N, in turn,
# no torch; whether submitting a 28-layer step in parts lets the GPU start while the rest is recorded (session 16).
if [ -n "${GEN_DPS:-}" ]; then
  for dps in 512 "$GEN_DPS" 512 "$GEN_DPS"; do
    MLAGENT_DISPATCHES_PER_SUBMIT=$dps timeout 100 node mlagent.mjs bench policy --mode generate --presets 7b --batch 1 \
      --prompt-len 64 --new-tokens 32 --iterations 3 --no-torch 2>/dev/null | grep -E '^\| qwen2' | sed "s/^/dps $dps: /"
  done
fi
if [ -n "${EXTRA_CMDS:-}" ]; then bash -c "$EXTRA_CMDS"; fi
