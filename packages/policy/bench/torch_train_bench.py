#!/usr/bin/env python3
"""PyTorch timing of one LoRA SFT step on a Qwen2/Qwen3 model, for `mlagent bench policy --mode train`'s ratios.

The same step as ours: frozen base (float32 on CPU; --dtype on CUDA), LoRA A/B in float32 on the chosen linears
with scale alpha/r, B = 0 and A ~ U(±1/√in) as PEFT initialises them; forward over random tokens, mean
next-token NLL over every position, autograd backward, global-norm clipping to 1 and AdamW. With --checkpoint
each decoder layer runs under torch.utils.checkpoint (only its input kept, recomputed in backward). Attention is
torch's scaled_dot_product_attention where it exists (torch >= 2), else the math form.

Usage: torch_train_bench.py MODEL_DIR BATCH SEQ_LEN ITERATIONS [--r 16] [--targets q_proj,...] [--checkpoint]
       [--dtype float32|float16|bfloat16] [--random-weights SEED]
Prints {"step_ms", "peak_bytes", "loss", "threads", "device", "torch", "dtype"} as JSON (median step over
ITERATIONS after one warm-up step on the first 256 tokens, as ours).
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from torch_qwen_common import (DEV, DTYPES, Config, pick_dtype, check_cuda_memory, inv_freq, lm_head, log, run_info,
                               rms_norm, rope, setup_threads, sync, weights)

MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
PARENT = {m: 'self_attn' if m in ('q_proj', 'k_proj', 'v_proj', 'o_proj') else 'mlp' for m in MODULES}
SDPA = getattr(F, 'scaled_dot_product_attention', None)
WARMUP_TOKENS = 256


class LoraQwen:
    def __init__(self, model_dir, dtype, random_seed, r, targets):
        self.c = Config(model_dir)
        self.w = weights(model_dir, self.c, dtype, random_seed)
        self.inv_freq = inv_freq(self.c)
        self.head = lm_head(self.c, self.w)
        self.scale = 2.0  # alpha = 2r
        self.lora = {}
        for l in range(self.c.L):
            for m in targets:
                W = self.w[f'model.layers.{l}.{PARENT[m]}.{m}.weight']
                out_f, in_f = W.shape
                A = (torch.rand(r, in_f, device=DEV) * 2 - 1) / math.sqrt(in_f)
                self.lora[(l, m)] = (A.requires_grad_(), torch.zeros(out_f, r, device=DEV, requires_grad=True))

    def params(self):
        return [t for ab in self.lora.values() for t in ab]

    def lin(self, x, l, m, bias=False):
        name = f'model.layers.{l}.{PARENT[m]}.{m}'
        y = x @ self.w[name + '.weight'].T
        if bias:
            y = y + self.w[name + '.bias'].to(y.dtype)
        ab = self.lora.get((l, m))
        if ab is not None:
            y = y + ((x.float() @ ab[0].T) @ ab[1].T * self.scale).to(y.dtype)
        return y

    def layer(self, h, l, pos):
        c = self.c
        B, T, _ = h.shape
        p = f'model.layers.{l}'
        x = rms_norm(h, self.w[f'{p}.input_layernorm.weight'], c.eps)
        q = self.lin(x, l, 'q_proj', c.bias).view(B, T, c.nh, c.D)
        k = self.lin(x, l, 'k_proj', c.bias).view(B, T, c.nkv, c.D)
        v = self.lin(x, l, 'v_proj', c.bias).view(B, T, c.nkv, c.D)
        if c.qwen3:
            q = rms_norm(q, self.w[f'{p}.self_attn.q_norm.weight'], c.eps)
            k = rms_norm(k, self.w[f'{p}.self_attn.k_norm.weight'], c.eps)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q, k = rope(q, pos, self.inv_freq), rope(k, pos, self.inv_freq)
        rep = c.nh // c.nkv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        if SDPA is not None:
            o = SDPA(q, k, v, is_causal=True)
        else:
            scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(c.D)
            mask = torch.ones(T, T, dtype=torch.bool, device=DEV).tril()
            o = torch.softmax(scores.masked_fill(~mask, float('-inf')), -1).to(v.dtype) @ v
        h = h + self.lin(o.transpose(1, 2).reshape(B, T, c.nh * c.D), l, 'o_proj')
        x = rms_norm(h, self.w[f'{p}.post_attention_layernorm.weight'], c.eps)
        return h + self.lin(F.silu(self.lin(x, l, 'gate_proj')) * self.lin(x, l, 'up_proj'), l, 'down_proj')

    def loss(self, ids, use_checkpoint):
        T = ids.shape[1]
        pos = torch.arange(T, device=DEV)
        h = self.w['model.embed_tokens.weight'][ids]
        for l in range(self.c.L):
            h = checkpoint(self.layer, h, l, pos, use_reentrant=False) if use_checkpoint else self.layer(h, l, pos)
        logits = rms_norm(h[:, :-1], self.w['model.norm.weight'], self.c.eps) @ self.head.T
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def main():
    ap = argparse.ArgumentParser(description='PyTorch LoRA training-step timing for mlagent bench policy')
    ap.add_argument('model_dir')
    for name in ('batch', 'seq_len', 'iterations'):
        ap.add_argument(name, type=int)
    ap.add_argument('--r', type=int, default=16)
    ap.add_argument('--targets', default=','.join(MODULES))
    ap.add_argument('--checkpoint', action='store_true')
    ap.add_argument('--dtype', choices=sorted(DTYPES), default='float32')
    ap.add_argument('--random-weights', type=int, metavar='SEED', help='draw weights on the device instead of reading the checkpoint')
    a = ap.parse_args()
    targets = a.targets.split(',')
    bad = [t for t in targets if t not in MODULES]
    if bad:
        raise SystemExit(f'torch_train_bench: unknown target module(s) {bad}; choose from {MODULES}')
    setup_threads()
    dtype, a.dtype = pick_dtype(a.dtype)
    torch.manual_seed(0)
    m = LoraQwen(a.model_dir, dtype, a.random_weights, a.r, targets)
    # The logits of the whole batch in float32 (cross entropy) are the largest activation; fail before the step.
    check_cuda_memory(3 * a.batch * a.seq_len * m.c.V * 4, f'the logits of batch {a.batch} x {a.seq_len} tokens')
    opt = torch.optim.AdamW(m.params(), lr=1e-4, weight_decay=0.0)
    ids = torch.randint(0, m.head.shape[0], (a.batch, a.seq_len), device=DEV)

    def step(n=a.seq_len):
        sync()
        t0 = time.perf_counter()
        loss = m.loss(ids[:, :n], a.checkpoint)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.params(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        value = loss.item()
        sync()
        return (time.perf_counter() - t0) * 1e3, value

    if DEV == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    # As ours: the warm-up runs on the first WARMUP_TOKENS tokens (a 7B step at 4k takes long; kernels are ready).
    log(f'torch train bench: warm-up step (batch {a.batch}, {min(a.seq_len, WARMUP_TOKENS)} tokens, checkpoint {a.checkpoint})')
    step(min(a.seq_len, WARMUP_TOKENS))
    runs = []
    for i in range(a.iterations):
        runs.append(step())
        log(f'torch train bench: step {i + 1}/{a.iterations}: {runs[-1][0]:.0f} ms')
    print(json.dumps({
        'step_ms': statistics.median(r[0] for r in runs),
        'loss': runs[-1][1],
        **run_info(a.dtype),
    }))


if __name__ == '__main__':
    main()
