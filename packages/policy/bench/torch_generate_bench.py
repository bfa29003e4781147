#!/usr/bin/env python3
"""PyTorch timing of Qwen2/Qwen3 generation (float32, KV cache, greedy, CPU or CUDA), for `mlagent bench policy`'s ratios.

Same weights (read by tools/oracle/qwen_oracle.py's loader), same batch, prompt length and number of new tokens as
our side. Prefill: one pass over the prompts filling the KV cache, then the last position's logits and argmax.
Decode: one token per sequence per step against the cache. Times are wall clock, median over iterations after one
warm-up.

Usage: torch_generate_bench.py MODEL_DIR BATCH PROMPT_LEN NEW_TOKENS ITERATIONS
Prints {"prefill_ms", "decode_ms", "threads", "device", "torch"} as JSON. Runs on CUDA where torch has it.
"""
import json
import math
import os
import statistics
import sys
import time

import torch

# The weight loader of the oracle: in the repo at tools/oracle, or copied next to this script (a device bundle).
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, '..', '..', '..', 'tools', 'oracle')]
from qwen_oracle import load_weights  # noqa: E402


DEV = 'cuda' if torch.cuda.is_available() else 'cpu'


def sync():
    if DEV == 'cuda':
        torch.cuda.synchronize()


class Qwen:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, 'config.json')) as f:
            cfg = json.load(f)
        self.w = {k: v.to(device=DEV, dtype=torch.float32).contiguous() for k, v in load_weights(model_dir).items()}
        self.qwen3 = cfg['architectures'][0] == 'Qwen3ForCausalLM'
        self.H = cfg['hidden_size']
        self.nh = cfg['num_attention_heads']
        self.nkv = cfg.get('num_key_value_heads', self.nh)
        self.D = cfg.get('head_dim') or self.H // self.nh
        self.L = cfg['num_hidden_layers']
        self.eps = cfg.get('rms_norm_eps', 1e-6)
        self.bias = bool(cfg.get('attention_bias', False)) if self.qwen3 else True
        theta = float(cfg.get('rope_theta', 10000.0))
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.D, 2, dtype=torch.float32, device=DEV) / self.D))
        tied = cfg.get('tie_word_embeddings', False) or 'lm_head.weight' not in self.w
        self.head = self.w['model.embed_tokens.weight'] if tied else self.w['lm_head.weight']

    def norm(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def rope(self, x, pos):
        ang = torch.outer(pos.float(), self.inv_freq)
        cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
        half = self.D // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos[None, None] + rot * sin[None, None]

    def lin(self, x, name, bias=False):
        y = x @ self.w[name + '.weight'].T
        return y + self.w[name + '.bias'] if bias else y

    def step(self, ids, start, cache):
        """ids [B, T] at positions start..start+T-1; appends K/V to cache; returns the last position's logits."""
        B, T = ids.shape
        pos = torch.arange(start, start + T, device=DEV)
        h = self.w['model.embed_tokens.weight'][ids]
        for l in range(self.L):
            p = f'model.layers.{l}'
            x = self.norm(h, self.w[f'{p}.input_layernorm.weight'])
            q = self.lin(x, f'{p}.self_attn.q_proj', self.bias).view(B, T, self.nh, self.D)
            k = self.lin(x, f'{p}.self_attn.k_proj', self.bias).view(B, T, self.nkv, self.D)
            v = self.lin(x, f'{p}.self_attn.v_proj', self.bias).view(B, T, self.nkv, self.D)
            if self.qwen3:
                q = self.norm(q, self.w[f'{p}.self_attn.q_norm.weight'])
                k = self.norm(k, self.w[f'{p}.self_attn.k_norm.weight'])
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            q, k = self.rope(q, pos), self.rope(k, pos)
            kc, vc = cache[l]
            kc[:, :, start:start + T] = k
            vc[:, :, start:start + T] = v
            S = start + T
            rep = self.nh // self.nkv
            kk = kc[:, :, :S].repeat_interleave(rep, dim=1)
            vv = vc[:, :, :S].repeat_interleave(rep, dim=1)
            scores = (q @ kk.transpose(-1, -2)) / math.sqrt(self.D)
            if T > 1:
                mask = torch.ones(T, S, dtype=torch.bool, device=DEV).tril(diagonal=start)
                scores = scores.masked_fill(~mask, float('-inf'))
            o = (torch.softmax(scores, -1) @ vv).transpose(1, 2).reshape(B, T, self.nh * self.D)
            h = h + self.lin(o, f'{p}.self_attn.o_proj')
            x = self.norm(h, self.w[f'{p}.post_attention_layernorm.weight'])
            h = h + self.lin(torch.nn.functional.silu(self.lin(x, f'{p}.mlp.gate_proj')) * self.lin(x, f'{p}.mlp.up_proj'), f'{p}.mlp.down_proj')
        return self.norm(h[:, -1], self.w['model.norm.weight']) @ self.head.T

    def generate(self, ids, new_tokens):
        B, T = ids.shape
        cache = [(torch.zeros(B, self.nkv, T + new_tokens, self.D, device=DEV), torch.zeros(B, self.nkv, T + new_tokens, self.D, device=DEV)) for _ in range(self.L)]
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
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    model_dir = sys.argv[1]
    batch, prompt_len, new_tokens, iterations = (int(x) for x in sys.argv[2:])
    # OpenMP may default to one thread here; lavapipe uses every core, so torch gets every core too.
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    with torch.inference_mode():
        m = Qwen(model_dir)
        ids = torch.randint(0, m.head.shape[0], (batch, prompt_len), device=DEV)
        m.generate(ids, new_tokens)
        runs = [m.generate(ids, new_tokens) for _ in range(iterations)]
    print(json.dumps({
        'prefill_ms': statistics.median(r[0] for r in runs),
        'decode_ms': statistics.median(r[1] for r in runs),
        'threads': torch.get_num_threads(),
        'device': torch.cuda.get_device_name(0) if DEV == 'cuda' else 'cpu',
        'torch': torch.__version__,
    }))


if __name__ == '__main__':
    main()
