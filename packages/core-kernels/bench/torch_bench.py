"""Times benchmark cases in PyTorch, on the same machine as our kernels, for the ratio in `mlagent bench kernels`.

Reads a JSON list of {"name", "setup", "run"} on stdin; prints a JSON list of {"name", "ms"} or {"name", "error"}.
`setup` and `run` are Python snippets with torch, F, dev and dt in scope (see src/bench/types.ts).

With --serve it answers one JSON request per line instead, so that our kernels and torch can be timed in
alternating rounds (src/bench/torch-session.ts): {"cmd": "hello"} -> {"device"}; {"cmd": "setup", "name", "setup",
"run"} -> {"ok": true} after a warm-up run; {"cmd": "time", "name", "iters"} -> {"ms": [one time per iteration]};
{"cmd": "drop", "name"} -> {"ok": true}. A failing request answers {"error"} and the server goes on.
"""
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

# blas_kernels: in the repo at tools/oracle; a device bundle (GPU only) goes without it.
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tools", "oracle"))
try:
    from blas_info import blas_kernels
except ImportError:
    def blas_kernels():
        return ""

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


def grad_mode(case):
    return torch.no_grad() if "backward" not in case["run"] and "step" not in case["run"] else torch.enable_grad()


class Prepared:
    """One case's scope after its setup and a warm-up run."""

    def __init__(self, case):
        self.case = case
        self.scope = {"torch": torch, "F": F, "dev": dev, "dt": dt}
        self.run = compile(case["run"], case["name"], "exec")
        with grad_mode(case):
            exec(case["setup"], self.scope)
            exec(self.run, self.scope)  # warm-up
            sync()

    def samples(self, iters):
        out = []
        with grad_mode(self.case):
            for _ in range(iters):
                start = time.perf_counter()
                exec(self.run, self.scope)
                sync()
                out.append((time.perf_counter() - start) * 1000)
        return out


def time_case(case):
    prepared = Prepared(case)
    once = prepared.samples(1)[0] / 1000
    iters = max(3, min(50, int(1.0 / max(once, 1e-6))))
    return statistics.median(prepared.samples(iters))


def device_line():
    if dev == "cuda":
        device_name = torch.cuda.get_device_name(0)
    else:
        blas = blas_kernels()
        device_name = f"cpu ({torch.get_num_threads()} threads{', ' + blas if blas else ''})"
    return f"torch {torch.__version__} on {device_name}{SDPA_NOTE}"


def serve():
    prepared = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "hello":
                reply = {"device": device_line()}
            elif cmd == "setup":
                prepared[req["name"]] = Prepared(req)
                reply = {"ok": True}
            elif cmd == "time":
                if req["name"] not in prepared:
                    raise KeyError(f"no case named {req['name']!r} was set up")
                reply = {"ms": prepared[req["name"]].samples(int(req["iters"]))}
            elif cmd == "drop":
                prepared.pop(req["name"], None)
                if dev == "cuda":
                    torch.cuda.empty_cache()
                reply = {"ok": True}
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except Exception as e:  # a failing snippet is reported, not fatal
            reply = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def main():
    if "--serve" in sys.argv[1:]:
        serve()
        return
    cases = json.load(sys.stdin)
    out = []
    for case in cases:
        try:
            out.append({"name": case["name"], "ms": time_case(case)})
        except Exception as e:  # a failing snippet is reported, not fatal
            out.append({"name": case["name"], "error": f"{type(e).__name__}: {e}"})
        if dev == "cuda":
            torch.cuda.empty_cache()
    json.dump({"device": device_line(), "results": out}, sys.stdout)


if __name__ == "__main__":
    main()
