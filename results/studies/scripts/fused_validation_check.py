"""Does Avey-B's fused (Triton) path give the same masked-LM loss and gradients as the PyTorch
reference on a pretrained checkpoint, on training and on validation batches, with and without
an all-ones attention mask, in train and eval mode? (Training passes no mask; validation passes
one.) Usage: python fused_validation_check.py RUN_DIR OUT.json  (RUN_DIR: an `aveyb pretrain` run)
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from aveyb.data.masking import IGNORE_INDEX, MaskingConfig, mask_batch
from aveyb.data.packing import SequencePacker
from aveyb.data.sources import validate_source
from aveyb.data.tokenizer import load_tokenizer, special_token_ids
from aveyb.pretrain.config import PretrainConfig
from aveyb.pretrain.distributed import DistInfo
from aveyb.pretrain.loop import _validation_batches
from transformers import AutoModelForMaskedLM

run, out_path = Path(sys.argv[1]), Path(sys.argv[2])
values = json.loads((run / "config.json").read_text())
values.pop("world_size", None)
cfg = PretrainConfig.from_dict(values)
tok = load_tokenizer(cfg.tokenizer)
sources = [validate_source(s) for s in cfg.sources]
masking = MaskingConfig(mask_token_id=tok.mask_token_id, special_ids=tuple(special_token_ids(tok)),
                        vocab_size=len(tok), rate=cfg.mask_rate, strategy=cfg.mask_strategy, seed=cfg.seed + 7_777)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
info = DistInfo(device=device)
val = _validation_batches(cfg, sources, tok, masking, info)[:4]
packer = SequencePacker(sources, tok, cfg.seq_len, keep_boundaries=False, holdout_every=cfg.holdout_every, role="train")
seqs = []
for item in packer:
    seqs.append(item)
    if len(seqs) >= 4 * cfg.micro_batch_size:
        break
train = []
for s in range(0, len(seqs), cfg.micro_batch_size):
    idx = list(range(s, s + cfg.micro_batch_size))
    ids = torch.from_numpy(np.stack([seqs[i][0] for i in idx]))
    attn = torch.from_numpy(np.stack([seqs[i][1] for i in idx]))
    inputs, labels = mask_batch(ids, attn, idx, masking)
    train.append((inputs, attn, labels))

model = AutoModelForMaskedLM.from_pretrained(run / "final").to(device)


def loss_of(batches, backend, mode, with_mask, grads=False):
    model.config.kernel_backend = backend
    model.train(mode == "train")
    total, n_total = 0.0, 0
    model.zero_grad(set_to_none=True)
    for inputs, attn, labels in batches:
        with torch.set_grad_enabled(grads), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(input_ids=inputs.to(device), attention_mask=attn.to(device) if with_mask else None,
                        labels=labels.to(device))
        n = int((labels != IGNORE_INDEX).sum())
        if grads:
            (out.loss.float() * n).backward()
        total += float(out.loss.float()) * n
        n_total += n
    g = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None]) if grads else None
    return total / n_total, g


rows = {}
for name, batches in (("train_batches", train), ("val_batches", val)):
    for backend in ("auto", "torch"):
        for mode in ("train", "eval"):
            for with_mask in (False, True):
                key = f"{name}/{backend}/{mode}/{'mask' if with_mask else 'no_mask'}"
                rows[key] = loss_of(batches, backend, mode, with_mask)[0]
                print(f"{key:40s} {rows[key]:.4f}", flush=True)
for with_mask in (False, True):
    lf, gf = loss_of(train[:2], "auto", "train", with_mask, grads=True)
    lr_, gr = loss_of(train[:2], "torch", "train", with_mask, grads=True)
    cos = float(torch.nn.functional.cosine_similarity(gf, gr, dim=0))
    rel = float((gf - gr).norm() / gr.norm())
    rows[f"grad/{'mask' if with_mask else 'no_mask'}"] = {"cosine": cos, "relative_error": rel}
    print(f"grad fused vs torch ({'mask' if with_mask else 'no mask'}): cosine {cos:.5f}, relative error {rel:.4f}")
out_path.write_text(json.dumps(rows, indent=1))
