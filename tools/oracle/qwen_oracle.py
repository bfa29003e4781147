#!/usr/bin/env python3
"""Independent float64 PyTorch reference of the Qwen2 / Qwen3 causal-LM forward pass (no KV cache).

Follows the semantics of Hugging Face transformers' modeling_qwen2.py / modeling_qwen3.py, written from scratch:
  - RMSNorm: x * rsqrt(mean(x^2) + eps) * w
  - q/k/v projections (Qwen2: with bias), Qwen3: RMSNorm of q and k per head (before RoPE)
  - RoPE with rotate_half, inv_freq = 1 / theta^(arange(0, D, 2) / D), positions 0..T-1
  - GQA by repeating each KV head num_heads / num_kv_heads times
  - causal softmax attention with scale 1/sqrt(D)
  - SwiGLU MLP: down(silu(gate(x)) * up(x))
  - final norm, lm_head (tied to embed_tokens when tie_word_embeddings)

It reads config.json and model.safetensors (or shards through model.safetensors.index.json) with its own tiny
safetensors parser, so it does not depend on the code under test.

Usage:
  qwen_oracle.py MODEL_DIR IDS_JSON [--out PATH]
IDS_JSON is a list of equal-length id lists, e.g. '[[1,2,3],[4,5,6]]'. Without --out, prints
{"shape": [B, T, V], "logits": [[[...]]]} as JSON. With --out, writes the logits as raw little-endian float64
to PATH and prints only {"shape": [B, T, V]}.
"""
import json
import math
import os
import struct
import sys

import torch

DT = torch.float64


def read_safetensors(path):
    with open(path, 'rb') as f:
        data = f.read()
    (n,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + n].decode('utf-8'))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        begin, end = info['data_offsets']
        raw = bytearray(data[base + begin:base + end])
        shape = info['shape']
        dtype = info['dtype']
        if dtype == 'F32':
            t = torch.frombuffer(raw, dtype=torch.float32) if raw else torch.zeros(0, dtype=torch.float32)
        elif dtype == 'F16':
            t = torch.frombuffer(raw, dtype=torch.float16) if raw else torch.zeros(0, dtype=torch.float16)
        elif dtype == 'BF16':
            # bf16 is the top half of an f32: widen by shifting the bits, without relying on bf16 support.
            bits = torch.frombuffer(raw, dtype=torch.int16).to(torch.int32) & 0xFFFF
            t = (bits << 16).to(torch.int32).view(torch.float32)
        else:
            raise SystemExit(f'{path}: tensor {name} has unsupported dtype {dtype}')
        out[name] = t.to(DT).reshape(shape)
    return out


def load_weights(model_dir):
    index = os.path.join(model_dir, 'model.safetensors.index.json')
    if os.path.exists(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)['weight_map'].values()))
        w = {}
        for s in shards:
            w.update(read_safetensors(os.path.join(model_dir, s)))
        return w
    return read_safetensors(os.path.join(model_dir, 'model.safetensors'))


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def forward(cfg, w, ids):
    arch = (cfg.get('architectures') or [None])[0]
    if arch not in ('Qwen2ForCausalLM', 'Qwen3ForCausalLM'):
        raise SystemExit(f'unsupported architecture {arch}')
    qwen3 = arch == 'Qwen3ForCausalLM'
    H = cfg['hidden_size']
    nh = cfg['num_attention_heads']
    nkv = cfg.get('num_key_value_heads', nh)
    D = cfg.get('head_dim') or H // nh
    eps = cfg.get('rms_norm_eps', 1e-6)
    theta = cfg.get('rope_theta', 10000.0)
    # HF: Qwen2 always has q/k/v biases; Qwen3 has them only with attention_bias (default false).
    has_bias = bool(cfg.get('attention_bias', False)) if qwen3 else True
    tied = cfg.get('tie_word_embeddings', False)

    ids_t = torch.tensor(ids, dtype=torch.long)
    B, T = ids_t.shape
    h = w['model.embed_tokens.weight'][ids_t]  # [B, T, H]

    inv_freq = 1.0 / (float(theta) ** (torch.arange(0, D, 2, dtype=DT) / D))
    pos = torch.arange(T, dtype=DT)
    freqs = torch.outer(pos, inv_freq)
    ang = torch.cat([freqs, freqs], dim=-1)  # [T, D]
    cos, sin = ang.cos()[None, None], ang.sin()[None, None]  # [1, 1, T, D]
    causal = torch.ones(T, T, dtype=torch.bool).tril()

    def lin(x, name, bias=False):
        y = x @ w[name + '.weight'].T
        if bias:
            y = y + w[name + '.bias']
        return y

    for l in range(cfg['num_hidden_layers']):
        p = f'model.layers.{l}'
        x = rms_norm(h, w[f'{p}.input_layernorm.weight'], eps)
        q = lin(x, f'{p}.self_attn.q_proj', has_bias).view(B, T, nh, D)
        k = lin(x, f'{p}.self_attn.k_proj', has_bias).view(B, T, nkv, D)
        v = lin(x, f'{p}.self_attn.v_proj', has_bias).view(B, T, nkv, D)
        if qwen3:
            q = rms_norm(q, w[f'{p}.self_attn.q_norm.weight'], eps)
            k = rms_norm(k, w[f'{p}.self_attn.k_norm.weight'], eps)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, T, D]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = nh // nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        scores = scores.masked_fill(~causal, float('-inf'))
        o = torch.softmax(scores, dim=-1) @ v  # [B, nh, T, D]
        o = o.transpose(1, 2).reshape(B, T, nh * D)
        h = h + lin(o, f'{p}.self_attn.o_proj')
        x = rms_norm(h, w[f'{p}.post_attention_layernorm.weight'], eps)
        g = lin(x, f'{p}.mlp.gate_proj')
        u = lin(x, f'{p}.mlp.up_proj')
        h = h + lin(torch.nn.functional.silu(g) * u, f'{p}.mlp.down_proj')

    h = rms_norm(h, w['model.norm.weight'], eps)
    head = w['model.embed_tokens.weight'] if tied or 'lm_head.weight' not in w else w['lm_head.weight']
    return h @ head.T


def main():
    args = sys.argv[1:]
    out = None
    if '--out' in args:
        i = args.index('--out')
        out = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2:
        raise SystemExit(__doc__)
    model_dir, ids_json = args
    with open(os.path.join(model_dir, 'config.json')) as f:
        cfg = json.load(f)
    ids = json.loads(ids_json)
    if not ids or any(len(r) != len(ids[0]) for r in ids):
        raise SystemExit('ids must be a non-empty list of equal-length lists')
    with torch.no_grad():
        logits = forward(cfg, load_weights(model_dir), ids)
    shape = list(logits.shape)
    if out:
        with open(out, 'wb') as f:
            f.write(logits.contiguous().numpy().astype('<f8').tobytes())
        print(json.dumps({'shape': shape}))
    else:
        print(json.dumps({'shape': shape, 'logits': logits.tolist()}))


if __name__ == '__main__':
    main()
