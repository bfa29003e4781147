"""HF PEFT side of lora_device_check.ts (needs transformers + peft, as on the GPU machine): loads the adapter we
saved onto HF's Qwen and writes its logits, and makes a PEFT adapter (random A and B) for us to load, with its logits.

Usage: peft_interop.py DIR (after `node check.mjs prep DIR`).
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM
from peft import LoraConfig, PeftModel, get_peft_model
root = sys.argv[1]
ids = torch.tensor(json.load(open(os.path.join(root, 'ids.json'))))
for arch in ('qwen2', 'qwen3'):
    d = os.path.join(root, arch)
    base = AutoModelForCausalLM.from_pretrained(os.path.join(d, 'model'), torch_dtype=torch.float32)
    m = PeftModel.from_pretrained(base, os.path.join(d, 'ours')).eval()
    with torch.no_grad():
        z = m(ids).logits.float().contiguous().numpy()
    z.astype('<f4').tofile(os.path.join(d, 'peft_on_ours.f32'))
    base = AutoModelForCausalLM.from_pretrained(os.path.join(d, 'model'), torch_dtype=torch.float32)
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=['q_proj', 'v_proj', 'up_proj', 'down_proj'],
                     init_lora_weights=False, task_type='CAUSAL_LM')
    pm = get_peft_model(base, cfg).eval()
    pm.save_pretrained(os.path.join(d, 'theirs'))
    with torch.no_grad():
        z = pm(ids).logits.float().contiguous().numpy()
    z.astype('<f4').tofile(os.path.join(d, 'theirs_logits.f32'))
    from safetensors import safe_open
    with safe_open(os.path.join(d, 'theirs', 'adapter_model.safetensors'), 'pt') as f:
        keys = sorted(f.keys())
    print(arch, 'PEFT saved', len(keys), 'tensors, e.g.', keys[0], json.load(open(os.path.join(d, 'theirs', 'adapter_config.json'))).get('target_modules'))
