#!/usr/bin/env bash
# Times, natively, the straight-line multiply-add block llvmpipe generates for the lavapipe matmul (1024^3 f32):
# how fast that code runs outside the shader, against what the whole kernel achieves (docs/BENCHMARKS.md).
# Usage: bash tools/bench/native-span/run.sh [ITERATIONS] [FRACTION]   (needs gcc; builds packages/core-kernels first)
# FRACTION (default 1) times only the first part of the block, as a shorter loop: whether the whole one is held
# back by the instruction cache.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$root"
cat > "$work/one.mjs" <<'TS'
import { Gpu, matmul } from '../packages/core-kernels/dist/index.js';
const gpu = await Gpu.create();
const n = 1024;
const a = gpu.tensor([n, n], 'f32').write(new Float32Array(n * n).fill(1));
const b = gpu.tensor([n, n], 'f32').write(new Float32Array(n * n).fill(1));
matmul(gpu, a, b);
await gpu.sync();
process.exit(0);
TS
mkdir -p .bench-builds && cp "$work/one.mjs" .bench-builds/native-span-one.mjs
GALLIVM_DEBUG=asm MESA_SHADER_CACHE_DISABLE=true LP_NUM_THREADS=1 node .bench-builds/native-span-one.mjs > "$work/asm.txt" 2>&1 || { tail -5 "$work/asm.txt"; exit 1; }
# The matmul kernel is the shader with the most multiplies.
python3 - "$work/asm.txt" "$work/kernel.s" <<'PY'
import sys
text = open(sys.argv[1]).read()
parts = text.split("cs_co_variant:")
best = max(parts[1:], key=lambda p: p.count("vmulps"))
# Since the ticket loop's barrier, the kernel's loop lives in the coroutine's resume function.
open(sys.argv[2], "w").write(best.split(".destroy:")[0])
PY
python3 "$here/span.py" "$work/kernel.s" "$work/block.s" "${2:-1}" | tee "$work/span.txt"
muladds=$(grep -o 'vmulps [0-9]*' "$work/span.txt" | awk '{print $2}')
gcc -O2 "$here/harness.c" "$work/block.s" -o "$work/block"
"$work/block" "${1:-20000}" "$muladds"
