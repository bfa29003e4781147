"""Shared pieces of the PyTorch benchmark scripts: device, config, weights (from a checkpoint or random on the
device), memory checks and the Qwen2/Qwen3 building blocks. Plain torch, no transformers."""
import json
import math
import os
import sys

import torch

# The weight loader of the oracle: in the repo at tools/oracle, or copied next to this script (a device bundle).
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, '..', '..', '..', 'tools', 'oracle')]
from qwen_oracle import load_weights  # noqa: E402
from blas_info import blas_kernels  # noqa: E402

DEV = 'cuda' if torch.cuda.is_available() else 'cpu'
DTYPES = {'float32': torch.float32, 'float16': torch.float16, 'bfloat16': torch.bfloat16}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sync():
    if DEV == 'cuda':
        torch.cuda.synchronize()


def setup_threads():
    # OpenMP may default to one thread here; lavapipe uses every core, so torch gets every core too.
    torch.set_num_threads(os.cpu_count() or 1)


class Config:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, 'config.json')) as f:
            cfg = json.load(f)
        self.qwen3 = cfg['architectures'][0] == 'Qwen3ForCausalLM'
        self.H = cfg['hidden_size']
        self.I = cfg['intermediate_size']
        self.V = cfg['vocab_size']
        self.nh = cfg['num_attention_heads']
        self.nkv = cfg.get('num_key_value_heads', self.nh)
        self.D = cfg.get('head_dim') or self.H // self.nh
        self.L = cfg['num_hidden_layers']
        self.eps = cfg.get('rms_norm_eps', 1e-6)
        self.bias = bool(cfg.get('attention_bias', False)) if self.qwen3 else True
        self.theta = float(cfg.get('rope_theta', 10000.0))
        self.tied = bool(cfg.get('tie_word_embeddings', False))

    def shapes(self):
        """Every tensor's HF name and shape."""
        H, I, V, D, nh, nkv = self.H, self.I, self.V, self.D, self.nh, self.nkv
        out = {'model.embed_tokens.weight': (V, H), 'model.norm.weight': (H,)}
        if not self.tied:
            out['lm_head.weight'] = (V, H)
        for l in range(self.L):
            p = f'model.layers.{l}'
            out.update({
                f'{p}.input_layernorm.weight': (H,), f'{p}.post_attention_layernorm.weight': (H,),
                f'{p}.self_attn.q_proj.weight': (nh * D, H), f'{p}.self_attn.k_proj.weight': (nkv * D, H),
                f'{p}.self_attn.v_proj.weight': (nkv * D, H), f'{p}.self_attn.o_proj.weight': (H, nh * D),
                f'{p}.mlp.gate_proj.weight': (I, H), f'{p}.mlp.up_proj.weight': (I, H), f'{p}.mlp.down_proj.weight': (H, I),
            })
            if self.bias:
                out.update({f'{p}.self_attn.q_proj.bias': (nh * D,), f'{p}.self_attn.k_proj.bias': (nkv * D,), f'{p}.self_attn.v_proj.bias': (nkv * D,)})
            if self.qwen3:
                out.update({f'{p}.self_attn.q_norm.weight': (D,), f'{p}.self_attn.k_norm.weight': (D,)})
        return out


def pick_dtype(name):
    """The base matrices' dtype: as asked on CUDA; float32 on the CPU, where half-precision matmuls crawl."""
    if DEV == 'cpu' and name != 'float32':
        log(f'torch bench: {name} asked, using float32 on the CPU')
        return torch.float32, 'float32'
    return DTYPES[name], name


def check_cuda_memory(need_bytes, what):
    """Fails fast, before allocating, when the GPU does not have `need_bytes` free."""
    if DEV != 'cuda':
        return
    free, total = torch.cuda.mem_get_info()
    if need_bytes > free:
        raise SystemExit(f'torch bench: {what} needs about {need_bytes / 2**30:.1f} GiB but the GPU has '
                         f'{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB')


def weights(model_dir, cfg, dtype, random_seed=None):
    """Matrices in `dtype`, norms and biases in float32, on DEV. With random_seed the checkpoint is not read:
    weights ~ N(0, 0.02²) and norms = 1 are drawn on the device (the 7B-shaped benchmarks)."""
    shapes = cfg.shapes()
    elem = torch.finfo(dtype).bits // 8
    check_cuda_memory(sum(math.prod(s) * (elem if len(s) == 2 else 4) for s in shapes.values()), 'the weights')
    if random_seed is None:
        return {k: v.to(device=DEV, dtype=dtype if v.dim() == 2 else torch.float32).contiguous() for k, v in load_weights(model_dir).items()}
    g = torch.Generator(device=DEV).manual_seed(random_seed)
    w = {}
    for i, (name, s) in enumerate(shapes.items()):
        if name.endswith('norm.weight'):
            w[name] = torch.ones(s, device=DEV)
        else:
            w[name] = (torch.randn(s, generator=g, device=DEV, dtype=torch.float32 if len(s) == 1 else dtype) * 0.02)
        if (i + 1) % 100 == 0:
            log(f'torch bench: {i + 1}/{len(shapes)} random tensors')
    return w


def lm_head(cfg, w):
    return w['model.embed_tokens.weight'] if cfg.tied or 'lm_head.weight' not in w else w['lm_head.weight']


def rms_norm(x, w, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * w).to(x.dtype)


def rope(x, pos, inv_freq):
    """x [B, heads, T, D] rotated at positions pos [T] (rotate-half layout, as HF Qwen)."""
    ang = torch.outer(pos.float(), inv_freq)
    emb = torch.cat([ang, ang], -1)
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], -1)
    return (x.float() * emb.cos() + rot.float() * emb.sin()).to(x.dtype)


def inv_freq(cfg):
    return 1.0 / (cfg.theta ** (torch.arange(0, cfg.D, 2, dtype=torch.float32, device=DEV) / cfg.D))


def run_info(dtype_name):
    """What every bench script reports besides its timings: peak CUDA bytes, threads, BLAS, device, torch, dtype."""
    return {
        'peak_bytes': torch.cuda.max_memory_allocated() if DEV == 'cuda' else None,
        'threads': torch.get_num_threads(),
        'blas': blas_kernels() if DEV == 'cpu' else '',
        'device': torch.cuda.get_device_name(0) if DEV == 'cuda' else 'cpu',
        'torch': torch.__version__,
        'dtype': dtype_name,
    }
