#!/usr/bin/env bash
# Where a lavapipe matmul spends its time, by address in llvmpipe's generated code: samples the running process
# with perf's cpu-clock (this VM has no hardware counters), copies the executable anonymous mappings out of
# /proc/PID/mem while it still runs, disassembles the one the samples fall in and prints, per 2 KB of code, the
# share of samples and the instructions there. GALLIVM_DEBUG=asm stops listing a function early and prints
# offsets only; this reads the code that actually ran.
# Usage: bash tools/bench/jit-profile/run.sh [MxNxK] [SECONDS]   (default 1024x1024x1024, 4 s; one shader thread)
# Needs perf (Debian: linux-perf), objdump (binutils) and a build of packages/core-kernels; run as root or with
# kernel.perf_event_paranoid <= 1 and ptrace access to the child.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
shape="${1:-1024x1024x1024}"
seconds="${2:-4}"
for tool in perf objdump python3; do
  command -v "$tool" >/dev/null || { echo "jit-profile: needs $tool (perf: apt-get install linux-perf; objdump: binutils)" >&2; exit 1; }
done
[[ -f "$root/packages/core-kernels/dist/index.js" ]] || { echo "jit-profile: build packages/core-kernels first" >&2; exit 1; }
work="$(mktemp -d)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$root/.bench-builds"
cat > "$root/.bench-builds/jit-profile-loop.mjs" <<'JS'
import { Gpu, matmul } from '../packages/core-kernels/dist/index.js';
const [M, N, K] = process.argv[2].split('x').map(Number);
const gpu = await Gpu.create();
const random = (n) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
const a = gpu.tensor([M, K], 'f32').write(random(M * K));
const b = gpu.tensor([K, N], 'f32').write(random(K * N));
let n = 0;
const t0 = performance.now();
process.on('SIGTERM', () => {
  console.log(`${n} products, ${((performance.now() - t0) / Math.max(1, n)).toFixed(1)} ms each (first one includes compiling)`);
  process.exit(0);
});
for (;;) { matmul(gpu, a, b).dispose(); await gpu.sync(); n++; }
JS
LP_NUM_THREADS="${LP_NUM_THREADS:-1}" node "$root/.bench-builds/jit-profile-loop.mjs" "$shape" > "$work/loop.txt" 2>&1 &
pid=$!
# Let the shaders compile and the loop settle before sampling.
sleep 6
perf record -q -F 4000 -e cpu-clock -p "$pid" -o "$work/perf.data" -- sleep "$seconds" >/dev/null 2>&1
python3 "$here/dump_code.py" "$pid" "$work"
kill "$pid"; wait "$pid" 2>/dev/null || true
pid=""
grep -v Warning "$work/loop.txt" || true
perf script -i "$work/perf.data" -F ip,dso > "$work/samples.txt" 2>/dev/null
python3 "$here/histogram.py" "$work"
