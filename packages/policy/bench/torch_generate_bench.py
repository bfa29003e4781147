#!/usr/bin/env python3
"""PyTorch timing of Qwen2/Qwen3 generation (KV cache, greedy, CPU or CUDA), for `mlagent bench policy`'s ratios.

Same weights (read by tools/oracle/qwen_oracle.py's loader, or drawn on the device with --random-weights for
7B-shaped models), same batch, prompt length and number of new tokens as our side. Prefill: one pass over the
prompts filling the KV cache, then the last position's logits and argmax. Decode: one token per sequence per step
against the cache. Times are wall clock, median over iterations after one warm-up.

Usage: torch_generate_bench.py MODEL_DIR BATCH PROMPT_LEN NEW_TOKENS ITERATIONS [--dtype float32|float16|bfloat16]
       [--random-weights SEED]
Prints {"prefill_ms", "decode_ms", "peak_bytes", "threads", "device", "torch", "dtype"} as JSON. Runs on CUDA
where torch has it.
"""
import argparse
import json
import math
import statistics
import time

import torch

from torch_qwen_common import DEV, DTYPES, Config, pick_dtype, inv_freq, lm_head, run_info, rms_norm, rope, setup_threads, sync, weights


class Qwen:
    def __init__(self, model_dir, dtype, random_seed):
        self.c = Config(model_dir)
        self.dtype = dtype
        self.w = weights(model_dir, self.c, dtype, random_seed)
        self.inv_freq = inv_freq(self.c)
        self.head = lm_head(self.c, self.w)

    def lin(self, x, name, bias=False):
        y = x @ self.w[name + '.weight'].T
        return y + self.w[name + '.bias'].to(y.dtype) if bias else y

    def step(self, ids, start, cache):
        """ids [B, T] at positions start..start+T-1; appends K/V to cache; returns the last position's logits."""
        c = self.c
        B, T = ids.shape
        pos = torch.arange(start, start + T, device=DEV)
        h = self.w['model.embed_tokens.weight'][ids]
        for l in range(c.L):
            p = f'model.layers.{l}'
            x = rms_norm(h, self.w[f'{p}.input_layernorm.weight'], c.eps)
            q = self.lin(x, f'{p}.self_attn.q_proj', c.bias).view(B, T, c.nh, c.D)
            k = self.lin(x, f'{p}.self_attn.k_proj', c.bias).view(B, T, c.nkv, c.D)
            v = self.lin(x, f'{p}.self_attn.v_proj', c.bias).view(B, T, c.nkv, c.D)
            if c.qwen3:
                q = rms_norm(q, self.w[f'{p}.self_attn.q_norm.weight'], c.eps)
                k = rms_norm(k, self.w[f'{p}.self_attn.k_norm.weight'], c.eps)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            q, k = rope(q, pos, self.inv_freq), rope(k, pos, self.inv_freq)
            kc, vc = cache[l]
            kc[:, :, start:start + T] = k
            vc[:, :, start:start + T] = v
            S = start + T
            rep = c.nh // c.nkv
            kk = kc[:, :, :S].repeat_interleave(rep, dim=1)
            vv = vc[:, :, :S].repeat_interleave(rep, dim=1)
            scores = (q @ kk.transpose(-1, -2)).float() / math.sqrt(c.D)
            if T > 1:
                mask = torch.ones(T, S, dtype=torch.bool, device=DEV).tril(diagonal=start)
                scores = scores.masked_fill(~mask, float('-inf'))
            o = (torch.softmax(scores, -1).to(vv.dtype) @ vv).transpose(1, 2).reshape(B, T, c.nh * c.D)
            h = h + self.lin(o, f'{p}.self_attn.o_proj')
            x = rms_norm(h, self.w[f'{p}.post_attention_layernorm.weight'], c.eps)
            h = h + self.lin(torch.nn.functional.silu(self.lin(x, f'{p}.mlp.gate_proj')) * self.lin(x, f'{p}.mlp.up_proj'), f'{p}.mlp.down_proj')
        return rms_norm(h[:, -1], self.w['model.norm.weight'], c.eps) @ self.head.T

    def generate(self, ids, new_tokens):
        c = self.c
        B, T = ids.shape
        cache = [tuple(torch.zeros(B, c.nkv, T + new_tokens, c.D, device=DEV, dtype=self.dtype) for _ in range(2)) for _ in range(c.L)]
        sync()
        t0 = time.perf_counter()
        nxt = self.step(ids, 0, cache).argmax(-1, keepdim=True)
        sync()
        t1 = time.perf_counter()
        for i in range(1, new_tokens):
            nxt = self.step(nxt, T + i - 1, cache).argmax(-1, keepdim=True)
        sync()
        t2 = time.perf_counter()
        return (t1 - t0) * 1e3, (t2 - t1) * 1e3


def main():
    ap = argparse.ArgumentParser(description='PyTorch generation timing for mlagent bench policy')
    ap.add_argument('model_dir')
    for name in ('batch', 'prompt_len', 'new_tokens', 'iterations'):
        ap.add_argument(name, type=int)
    ap.add_argument('--dtype', choices=sorted(DTYPES), default='float32')
    ap.add_argument('--random-weights', type=int, metavar='SEED', help='draw weights on the device instead of reading the checkpoint')
    a = ap.parse_args()
    setup_threads()
    dtype, a.dtype = pick_dtype(a.dtype)
    torch.manual_seed(0)
    with torch.inference_mode():
        m = Qwen(a.model_dir, dtype, a.random_weights)
        ids = torch.randint(0, m.head.shape[0], (a.batch, a.prompt_len), device=DEV)
        m.generate(ids, a.new_tokens)
        runs = [m.generate(ids, a.new_tokens) for _ in range(a.iterations)]
    print(json.dumps({
        'prefill_ms': statistics.median(r[0] for r in runs),
        'decode_ms': statistics.median(r[1] for r in runs),
        **run_info(a.dtype),
    }))


if __name__ == '__main__':
    main()
