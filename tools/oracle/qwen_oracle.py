#!/usr/bin/env python3
"""Independent float64 PyTorch reference of the Qwen2 / Qwen3 causal-LM forward pass (no KV cache).

Follows the semantics of Hugging Face transformers' modeling_qwen2.py / modeling_qwen3.py, written from scratch:
  - RMSNorm: x * rsqrt(mean(x^2) + eps) * w
  - q/k/v projections (Qwen2: with bias), Qwen3: RMSNorm of q and k per head (before RoPE)
  - RoPE with rotate_half, inv_freq = 1 / theta^(arange(0, D, 2) / D), positions 0..T-1; rope_scaling (or
    transformers 5's rope_parameters) of type linear (inv_freq / factor) or yarn (see yarn_inv_freq)
  - GQA by repeating each KV head num_heads / num_kv_heads times
  - causal softmax attention with scale 1/sqrt(D)
  - SwiGLU MLP: down(silu(gate(x)) * up(x))
  - final norm, lm_head (tied to embed_tokens when tie_word_embeddings)

It reads config.json and model.safetensors (or shards through model.safetensors.index.json) with its own tiny
safetensors parser, so it does not depend on the code under test.

LoRA (PEFT semantics): an adapted linear layer computes x @ W.T (+ b) + (lora_alpha / r) * (x @ A.T) @ B.T, with A
[r, in] and B [out, r] read from a PEFT adapter directory (adapter_config.json + adapter_model.safetensors, tensor
names base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}.weight). Gradients come from torch
autograd in float64, with each sequence run on its own (no padding), so padding logic is checked too.

Usage:
  qwen_oracle.py MODEL_DIR IDS_JSON [--out PATH]
IDS_JSON is a list of equal-length id lists, e.g. '[[1,2,3],[4,5,6]]'. Without --out, prints
{"shape": [B, T, V], "logits": [[[...]]]} as JSON. With --out, writes the logits as raw little-endian float64
to PATH and prints only {"shape": [B, T, V]}.

  qwen_oracle.py --train SPEC_JSON
SPEC_JSON names a file holding {"model": DIR, "adapter": DIR or null, "seqs": [[ids]], "dLogprob": [[..]],
"dEntropy": [[..]], "temperature": 1.0, "value": {"dir": DIR, "dValue": [[..]]} (optional)}. Per-token lists have
each sequence's length; index 0 of dLogprob/dEntropy is ignored. Prints JSON: "logprobs", "entropies" (index 0 is
0), "grads" {PEFT tensor name: flat list} of L = sum(dLogprob*logprob) + sum(dEntropy*entropy), and with "value",
"values" and "valueGrads" (the value adapter's PEFT names plus v_head.weight, v_head.bias) of sum(dValue*value),
where value = v_head.weight @ final_norm(h) + v_head.bias and DIR also holds value_head.safetensors.
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


def load_adapter(adapter_dir):
    """PEFT adapter: {'model.layers.{i}.{parent}.{module}': (A, B)} as float64 leaves requiring grad, and the scale."""
    with open(os.path.join(adapter_dir, 'adapter_config.json')) as f:
        acfg = json.load(f)
    tensors = read_safetensors(os.path.join(adapter_dir, 'adapter_model.safetensors'))
    prefix = 'base_model.model.'
    lora = {}
    for name, t in tensors.items():
        if not name.startswith(prefix) or not (name.endswith('.lora_A.weight') or name.endswith('.lora_B.weight')):
            raise SystemExit(f'{adapter_dir}: unexpected adapter tensor {name}')
        module = name[len(prefix):-len('.lora_A.weight')]
        which = 0 if name.endswith('.lora_A.weight') else 1
        pair = lora.setdefault(module, [None, None])
        pair[which] = t.clone().requires_grad_(True)
    return lora, acfg['lora_alpha'] / acfg['r']


def yarn_inv_freq(inv_freq, rope, theta, D, max_pos):
    """YaRN (arXiv 2309.00071) frequencies and cos/sin gain: a frequency index i belongs to a band by how many
    full turns r(i) = L * inv_freq[i] / (2 pi) it makes over the original context L. Indices whose turns exceed
    beta_fast keep their frequency, those under beta_slow are divided by the factor, and a straight line in i joins
    the two band edges (rounded outward unless truncate is false). Gain: 0.1 ln(factor) + 1 unless given."""
    factor = float(rope['factor'])
    L = float(rope.get('original_max_position_embeddings') or max_pos)
    fast, slow = float(rope.get('beta_fast') or 32), float(rope.get('beta_slow') or 1)
    # Solve L * theta^(-2i/D) / (2 pi) = r for i.
    edge = lambda r: D * math.log(L / (2 * math.pi * r)) / (2 * math.log(theta))
    lo, hi = edge(fast), edge(slow)
    if rope.get('truncate', True):
        lo, hi = math.floor(lo), math.ceil(hi)
    lo, hi = max(lo, 0), min(hi, D - 1)
    if hi == lo:
        hi = hi + 0.001
    i = torch.arange(D // 2, dtype=DT)
    w = ((i - lo) / (hi - lo)).clamp(0.0, 1.0)  # 0: keep, 1: divide by factor
    new = inv_freq * (1 - w) + (inv_freq / factor) * w
    gain = rope.get('attention_factor')
    if gain is None:
        ms, ms_all = rope.get('mscale'), rope.get('mscale_all_dim')
        g = lambda m: 1.0 if factor <= 1 else 0.1 * m * math.log(factor) + 1.0
        gain = g(ms) / g(ms_all) if ms and ms_all else g(1.0)
    return new, float(gain)


def hidden(cfg, w, ids, lora=None, scale=1.0):
    """Final-norm hidden states [T, H] of one sequence, with LoRA (lora dict from load_adapter) when given."""
    arch = (cfg.get('architectures') or [None])[0]
    if arch not in ('Qwen2ForCausalLM', 'Qwen3ForCausalLM'):
        raise SystemExit(f'unsupported architecture {arch}')
    qwen3 = arch == 'Qwen3ForCausalLM'
    H = cfg['hidden_size']
    nh = cfg['num_attention_heads']
    nkv = cfg.get('num_key_value_heads', nh)
    D = cfg.get('head_dim') or H // nh
    eps = cfg.get('rms_norm_eps', 1e-6)
    rope = cfg.get('rope_parameters') or cfg.get('rope_scaling') or {}
    theta = rope.get('rope_theta', cfg.get('rope_theta', 10000.0))
    # HF: Qwen2 always has q/k/v biases; Qwen3 has them only with attention_bias (default false).
    has_bias = bool(cfg.get('attention_bias', False)) if qwen3 else True
    lora = lora or {}

    ids_t = torch.tensor(ids, dtype=torch.long)
    B, T = ids_t.shape
    h = w['model.embed_tokens.weight'][ids_t]  # [B, T, H]

    inv_freq = 1.0 / (float(theta) ** (torch.arange(0, D, 2, dtype=DT) / D))
    kind = rope.get('rope_type', rope.get('type', 'default'))
    gain = 1.0
    if kind == 'linear':
        inv_freq = inv_freq / rope['factor']
    elif kind == 'yarn':
        inv_freq, gain = yarn_inv_freq(inv_freq, rope, float(theta), D, cfg.get('max_position_embeddings', 32768))
    elif kind != 'default':
        raise SystemExit(f'unsupported rope type {kind}')
    pos = torch.arange(T, dtype=DT)
    freqs = torch.outer(pos, inv_freq)
    ang = torch.cat([freqs, freqs], dim=-1)  # [T, D]
    cos, sin = gain * ang.cos()[None, None], gain * ang.sin()[None, None]  # [1, 1, T, D]
    causal = torch.ones(T, T, dtype=torch.bool).tril()

    def lin(x, name, bias=False):
        y = x @ w[name + '.weight'].T
        if bias:
            y = y + w[name + '.bias']
        if name in lora:
            a, b = lora[name]
            y = y + scale * ((x @ a.T) @ b.T)
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

    return rms_norm(h, w['model.norm.weight'], eps)


def lm_head(cfg, w):
    tied = cfg.get('tie_word_embeddings', False)
    return w['model.embed_tokens.weight'] if tied or 'lm_head.weight' not in w else w['lm_head.weight']


def forward(cfg, w, ids):
    return hidden(cfg, w, ids) @ lm_head(cfg, w).T


def flat_grads(lora, prefix='base_model.model.'):
    out = {}
    for module, (a, b) in lora.items():
        for which, t in (('A', a), ('B', b)):
            out[f'{prefix}{module}.lora_{which}.weight'] = (t.grad if t.grad is not None else torch.zeros_like(t)).flatten().tolist()
    return out


def train(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    model_dir = spec['model']
    with open(os.path.join(model_dir, 'config.json')) as f:
        cfg = json.load(f)
    w = load_weights(model_dir)
    head = lm_head(cfg, w)
    tau = float(spec.get('temperature', 1.0))
    lora, scale = load_adapter(spec['adapter']) if spec.get('adapter') else ({}, 1.0)
    result = {'logprobs': [], 'entropies': []}
    loss = torch.zeros((), dtype=DT)
    for b, ids in enumerate(spec['seqs']):
        logp = torch.log_softmax((hidden(cfg, w, [ids], lora, scale)[0] @ head.T) / tau, dim=-1)  # [T, V]
        tgt = torch.tensor(ids[1:], dtype=torch.long)
        lp = logp[:-1].gather(1, tgt[:, None])[:, 0]  # logprob of token t+1, t = 0..T-2
        ent = -(logp[:-1].exp() * logp[:-1]).sum(-1)
        c = torch.tensor(spec['dLogprob'][b][1:], dtype=DT)
        e = torch.tensor(spec['dEntropy'][b][1:], dtype=DT)
        loss = loss + (c * lp).sum() + (e * ent).sum()
        result['logprobs'].append([0.0] + lp.tolist())
        result['entropies'].append([0.0] + ent.tolist())
    if lora:
        loss.backward()
    result['grads'] = flat_grads(lora)
    if spec.get('value'):
        vspec = spec['value']
        vlora, vscale = load_adapter(vspec['dir'])
        vh = read_safetensors(os.path.join(vspec['dir'], 'value_head.safetensors'))
        vw = vh['v_head.weight'].clone().requires_grad_(True)
        vb = vh['v_head.bias'].clone().requires_grad_(True)
        vloss = torch.zeros((), dtype=DT)
        values = []
        for b, ids in enumerate(spec['seqs']):
            v = hidden(cfg, w, [ids], vlora, vscale)[0] @ vw.T + vb  # [T, 1]
            vloss = vloss + (torch.tensor(vspec['dValue'][b], dtype=DT) * v[:, 0]).sum()
            values.append(v[:, 0].tolist())
        vloss.backward()
        g = flat_grads(vlora)
        g['v_head.weight'] = vw.grad.flatten().tolist()
        g['v_head.bias'] = vb.grad.flatten().tolist()
        result['values'] = values
        result['valueGrads'] = g
    print(json.dumps(result))


def main():
    args = sys.argv[1:]
    if args[:1] == ['--train']:
        if len(args) != 2:
            raise SystemExit(__doc__)
        return train(args[1])
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
