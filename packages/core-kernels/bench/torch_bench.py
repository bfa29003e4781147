"""Times benchmark cases in PyTorch, on the same machine as our kernels, for the ratio in `mlagent bench kernels`.

Reads a JSON list of {"name", "setup", "run"} on stdin; prints a JSON list of {"name", "ms"} or {"name", "error"}.
`setup` and `run` are Python snippets with torch, F, dev and dt in scope (see src/bench/types.ts).
"""
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

dev = "cuda" if torch.cuda.is_available() else "cpu"
# OpenMP here may default to one thread; lavapipe uses every core, so torch gets every core too.
if dev == "cpu":
    torch.set_num_threads(os.cpu_count() or 1)
dt = torch.float16 if dev == "cuda" else torch.float32


if not hasattr(F, "scaled_dot_product_attention"):
    # torch < 2.0 (Debian 12 ships 1.13) has no SDPA; time the plain math version it would dispatch to.
    def _sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):
        s = (q @ k.transpose(-2, -1)) / (q.shape[-1] ** 0.5)
        if is_causal:
            t, n = s.shape[-2], s.shape[-1]
            s = s.masked_fill(torch.ones(t, n, dtype=torch.bool, device=s.device).triu(n - t + 1), float("-inf"))
        return torch.softmax(s, dim=-1) @ v

    F.scaled_dot_product_attention = _sdpa
    SDPA_NOTE = " (SDPA: math fallback, torch < 2.0)"
else:
    SDPA_NOTE = ""


def sync():
    if dev == "cuda":
        torch.cuda.synchronize()


def time_case(case):
    scope = {"torch": torch, "F": F, "dev": dev, "dt": dt}
    with torch.no_grad() if "backward" not in case["run"] and "step" not in case["run"] else torch.enable_grad():
        exec(case["setup"], scope)
        run = compile(case["run"], case["name"], "exec")
        exec(run, scope)  # warm-up
        sync()
        start = time.perf_counter()
        exec(run, scope)
        sync()
        once = time.perf_counter() - start
        iters = max(3, min(50, int(1.0 / max(once, 1e-6))))
        samples = []
        for _ in range(iters):
            start = time.perf_counter()
            exec(run, scope)
            sync()
            samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main():
    cases = json.load(sys.stdin)
    device_name = torch.cuda.get_device_name(0) if dev == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    out = []
    for case in cases:
        try:
            out.append({"name": case["name"], "ms": time_case(case)})
        except Exception as e:  # a failing snippet is reported, not fatal
            out.append({"name": case["name"], "error": f"{type(e).__name__}: {e}"})
        if dev == "cuda":
            torch.cuda.empty_cache()
    json.dump({"device": f"torch {torch.__version__} on {device_name}{SDPA_NOTE}", "results": out}, sys.stdout)


if __name__ == "__main__":
    main()
