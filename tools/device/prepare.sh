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
  --external:webgpu --outfile=.device/pkg/mlagent.mjs --log-level=warning
cp node_modules/webgpu/index.js node_modules/webgpu/package.json .device/pkg/node_modules/webgpu/
cp node_modules/webgpu/dist/linux-x64/dawn.node .device/pkg/node_modules/webgpu/dist/linux-x64/
cp packages/core-kernels/bench/torch_bench.py .device/pkg/
tar -C "$(dirname "$(readlink -f "$(command -v node)")")" -cJf .device/node.tar.xz node
(cd .device/debs && apt-get download libvulkan1 >/dev/null 2>&1) || echo "warning: could not download libvulkan1" >&2
du -sh .device
