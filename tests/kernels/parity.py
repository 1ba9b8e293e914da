"""Every Triton kernel against its PyTorch reference, run by Triton's CPU interpreter.

``python tests/kernel_interpreter_check.py`` (with TRITON_INTERPRET=1 set *before* Triton is
imported, which is why ``tests/test_kernels_interpreter.py`` runs this file in a subprocess) prints
one JSON line per case: ``{"case": name, "err": relative error, "reference_err": ...}``; for the
layers both are measured against float64 (err: the kernels in float32; reference_err: the PyTorch
reference in float32), elsewhere err is against the float32 reference. The interpreter runs the kernels'
own code in float32 with numpy, so it checks their logic (tiling, masks, padding, epilogues) on
CPU, in CI; the GPU parity tests (``test_kernels_parity.py``, marked ``gpu``) add bf16, tensor-core
precision and the autotuned tile shapes.
"""

from __future__ import annotations

import copy
import json
import os
import sys

CASES = {  # name -> what it checks
    "layers-split-major": "split_tile's program order (every block once, split-major) and the static mix with "
                          "several row and column blocks per split",
    "layers-static-sum-gelu": "two static layers through run_layers (row statistics passed on), padded",
    "layers-dynamic-sum-gelu": "two dynamic layers, divide-by-sum, padded",
    "layers-dynamic-softmax-gelu_tanh": "dynamic layers, softmax with tau and masked keys",
    "layers-coupled-signed_sum-silu": "coupled layers (P ⊙ A), signed sum, unpadded",
    "layers-dynamic-none-relu": "dynamic layers without normalisation, S not a power of 2",
    "train-static-sum-gelu": "training layer (LayerFunction): output and every gradient, padded",
    "train-dynamic-sum-gelu": "training layer, dynamic divide-by-sum: N, dC, ρ and the cosines' backward",
    "train-dynamic-softmax-gelu_tanh": "training layer, softmax with masked keys: dτ",
    "train-coupled-signed_sum-silu": "training layer, coupled (dP), signed sum, unpadded",
    "train-dynamic-none-relu": "training layer, no normalisation, S not a power of 2, d not a multiple of 8",
    "train-coupled-softmax-gelu": "training layer, coupled softmax, padded: dP and dτ together",
    "gemm-tma-enricher": "persistent TMA enricher: RMSNorm fold, bias, GELU, U masking",
    "gemm-cublas-enricher": "the cuBLAS enricher's RMSNorm pass (row statistics), bias + GELU, U masking",
    "gemm-tma-fuser": "persistent TMA fuser on the strided view Z[:, d:]: bias, residual, row statistics",
    "ranker-left-min-padded": "MaxSim + top-k + weights + compression, T not a multiple of S, padded",
    "ranker-both-max-padded": "both directions, max weighting",
    "ranker-left-none-unpadded": "no mask and T a multiple of S (the sync-free unpadded path)",
    "ranker-maxsim": "MaxSim scores (-inf entries included), pointer and TMA kernels: empty splits, both directions",
    "ranker-select-weights": "the select kernel's picks and weights against select_top_splits/split_weights",
    "ranker-grad": "gradients of x and D through the fused ranker's autograd path",
    "loss-cross-entropy": "the masked-LM loss and its gradient: ignored rows, V over two blocks with a tail",
}


def _rel(a, b) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def random_layers(cfg, kind, n, device=None):
    """``n`` AveyBLayers of ``kind`` with random weights scaled so that outputs stay O(1), τ = 0.7
    (shared with the GPU parity tests)."""
    import torch

    from aveyb.model.layers import AveyBLayer

    layers = []
    for _ in range(n):
        layer = AveyBLayer(cfg, kind).to(device)
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn_like(p) * (0.5 / p.shape[-1] ** 0.5 if p.dim() == 2 else 0.3)
                        + (1 if p.dim() < 2 else 0))
            if hasattr(layer, "tau"):
                layer.tau.fill_(0.7)
        layers.append(layer)
    return layers


def _layers(kind, norm, act, n_split, split, width, padded):
    import torch

    from aveyb.config import preset_config
    from aveyb.kernels import layers as fused

    cfg = preset_config("tiny", hidden_size=width, split_size=split, dynamic_norm=norm, hidden_act=act)
    layers = random_layers(cfg, kind, 2)
    with torch.no_grad():
        x = torch.randn(n_split, split, width)
        mask = None
        if padded:
            mask = torch.rand(n_split, split) > 0.3
            mask[-1] = False
        ref, ref64 = x, x.double()
        for layer in layers:
            ref = layer(ref, mask)
            ref64 = copy.deepcopy(layer).double()(ref64, mask)
        out = list(fused.run_layers(layers, x, mask))[-1]
    # Against float64, next to the float32 reference's own error (signed_sum is ill-conditioned).
    return _rel(out, ref64), _rel(ref, ref64)


def _split_major():
    """split_tile's mapping of program ids, against the split-major enumeration (mismatches count as
    error), and the static mix launched with 16-row and 16-column blocks (3 x 3 per split, the
    last ones partial) against the reference."""
    import torch
    import triton
    import triton.language as tl

    from aveyb.kernels import layers as fused

    global _split_tile  # a jitted function resolves the names it calls in its module's globals
    _split_tile = fused.split_tile

    @triton.jit
    def probe(out_ptr, S, D, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
        m, t_block, d_block = _split_tile(S, D, BLOCK_T, BLOCK_D)
        pid = tl.program_id(0)
        tl.store(out_ptr + 3 * pid, m)
        tl.store(out_ptr + 3 * pid + 1, t_block)
        tl.store(out_ptr + 3 * pid + 2, d_block)

    n_split, split, width, block = 4, 40, 44, 16
    n_t, n_d = triton.cdiv(split, block), triton.cdiv(width, block)
    got = torch.full((n_split * n_t * n_d, 3), -1, dtype=torch.int32)
    probe[(got.shape[0],)](got, split, width, BLOCK_T=block, BLOCK_D=block)
    want = torch.tensor([(m, t, c) for m in range(n_split) for t in range(n_t) for c in range(n_d)], dtype=torch.int32)
    mismatches = float((got != want).any(dim=1).sum())

    zw = 4 * width
    z = torch.randn(n_split, split, zw)
    p = torch.randn(split, split) / split ** 0.5
    u, g = z[..., :width].clone(), z[..., width:2 * width].clone()
    fused._static_mix_kernel.fn[(n_split * n_t * n_d,)](z, p, z, split, width, zw, 4, SAVE=False, PREC="tf32x3",
                                                         BLOCK_T=block, BLOCK_D=block, BLOCK_K=16)
    ref = (g * (p @ u)).double()
    ref64 = g.double() * (p.double() @ u.double())
    return max(mismatches, _rel(z[..., width:2 * width], ref64)), _rel(ref, ref64)


def _train(kind, norm, act, n_split, split, width, padded):
    """Output and gradients (x and every parameter) of ``training.layer_train_forward`` against
    float64 autograd through the reference; returns the tensor whose error is largest relative
    to its bound, as (error, the float32 reference's own error)."""
    import torch

    from aveyb.config import preset_config
    from aveyb.kernels.training import layer_train_forward

    cfg = preset_config("tiny", hidden_size=width, split_size=split, dynamic_norm=norm, hidden_act=act)
    (layer,) = random_layers(cfg, kind, 1)
    x = torch.randn(n_split, split, width)
    mask = None
    if padded:
        mask = torch.rand(n_split, split) > 0.3
        mask[-1] = False
    grad_out = torch.randn(n_split, split, width)

    def run(lay, xx, fn):
        xx = xx.detach().requires_grad_(True)
        out = fn(lay, xx)
        grads = torch.autograd.grad((out.double() * grad_out.double()).sum(), [xx, *lay.parameters()])
        return [out.detach(), *grads]

    got = run(layer, x, lambda lay, xx: layer_train_forward(lay, xx, mask, act))
    ref = run(layer, x, lambda lay, xx: lay(xx, mask))
    ref64 = run(copy.deepcopy(layer).double(), x.double(), lambda lay, xx: lay(xx, mask))
    errs = [(_rel(a, c), _rel(b, c)) for a, b, c in zip(got, ref, ref64)]
    return max(errs, key=lambda e: e[0] / max(1e-5, 3 * e[1]))


def _gemm(which, cublas=False):
    import torch
    import triton

    from aveyb.kernels import gemm

    rows, width, expansion = 200, 128, 4
    x = torch.randn(rows, width)
    weight = torch.randn(expansion * width, width) / width ** 0.5
    bias = torch.randn(expansion * width) * 0.1
    mask = torch.rand(rows) > 0.2
    stats = gemm.row_stats(x)
    z = torch.empty(rows, expansion * width)
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    if which == "enricher" and cublas:
        gemm._enrich_cublas(x, stats, weight, bias, mask, 0, 1e-6, z)
        z_ref = torch.nn.functional.gelu(normed @ weight.T + bias)  # on CPU _addmm_activation's GELU is exact
        z_ref[:, :width] *= mask[:, None]
        return _rel(z, z_ref)
    gemm._enricher_tma_kernel[lambda meta: (3,)](
        gemm._desc(x), gemm._desc(weight), gemm._desc(z), bias, stats.parts, mask.view(torch.uint8),
        rows, expansion * width, width, stats.count, stats.parts.shape[1], 256, 1e-6,
        HAS_MASK=True, ACT=0, FAST=1, NUM_SMS=3)
    z_ref = torch.nn.functional.gelu(normed @ weight.T + bias)
    z_ref[:, :width] *= mask[:, None]
    if which == "enricher":
        return _rel(z, z_ref)
    wf = torch.randn(width, (expansion - 1) * width) / (3 * width) ** 0.5
    bf, alpha = torch.randn(width) * 0.1, torch.tensor(0.8)
    out = torch.empty(rows, width)
    parts = gemm.RowStats.buffer(rows, width, x.device)
    f = z[:, width:]
    gemm._fuser_tma_kernel[lambda meta: (3,)](
        gemm._desc(f), gemm._desc(wf), gemm._desc(x), gemm._desc(out), bf, alpha, parts,
        rows, width, (expansion - 1) * width, parts.shape[1], 256, NUM_SMS=3)
    out_ref = f @ wf.T + bf + alpha * x
    count = triton.cdiv(width, gemm._fuser_tma_kernel.best_config.kwargs["BLOCK_N"])
    return max(_rel(out, out_ref), _rel(parts[:, :count].sum(1), out_ref.pow(2).sum(1)))


def _ranker_inputs(batch, length, width, split, k, direction, weighting, padded):
    import torch

    from aveyb.config import preset_config

    cfg = preset_config("tiny", hidden_size=width, split_size=split, top_k=k, ranker_direction=direction,
                        split_weighting=weighting)
    n = -(-length // split)
    # Each split its own topic, so that selections are well separated.
    x = (torch.randn(batch, n, split, width) + 3 * torch.randn(batch, n, 1, width)).reshape(batch, n * split, width)
    x = x[:, :length].contiguous()
    mask = None
    if padded:
        mask = torch.arange(length)[None, :] < torch.tensor([length] + [length // 2] * (batch - 1))[:, None]
    down = torch.randn(split, (k + 1) * split) / split
    return cfg, x, mask, down


def _ranker(case, grad=False):
    import torch

    from aveyb.kernels import ranker as fused
    from aveyb.model import ranker as ref

    cfg, x, mask, down = _ranker_inputs(*case)
    if not grad:
        with torch.no_grad():
            h_ref, m_ref = ref.rank_and_compress(x, mask, down, cfg)
            h, m = fused.rank_and_compress(x, mask, down, cfg)
        if (m is None and not bool(m_ref.all())) or (m is not None and not torch.equal(m, m_ref)):
            return float("inf")
        return _rel(h, h_ref)
    errs = []
    grads = []
    for fn in (ref.rank_and_compress, fused.rank_and_compress):
        xx, dd = x.clone().requires_grad_(True), down.clone().requires_grad_(True)
        h, _ = fn(xx, mask, dd, cfg)
        g = torch.randn(h.shape, generator=torch.Generator().manual_seed(1))
        grads.append(torch.autograd.grad((h * g).sum(), (xx, dd)))
    for a, b in zip(grads[1], grads[0]):
        errs.append(_rel(a, b))
    return max(errs)


def _maxsim():
    import torch

    from aveyb.kernels import ranker as fused
    from aveyb.model import ranker as ref

    worst = 0.0
    # 3 row blocks per split with the fallback tiles (S=80), d not a multiple of BLOCK_D, chunks of candidates.
    for case in [(3, 700, 40, 80, 2, "left", "min", True), (2, 400, 40, 80, 2, "both", "min", True),
                 (2, 480, 40, 80, 2, "left", "min", False)]:
        cfg, x, mask, _ = _ranker_inputs(*case)
        xs, ms = ref.split_sequence(x, mask, cfg.split_size)
        want = ref.maxsim_scores(xs, ms, cfg.eps)
        pairs = ref.candidate_mask(torch.ones_like(ms[..., 0]), cfg.ranker_direction)
        cand = ref.candidate_mask(ms.any(-1), cfg.ranker_direction)  # what the selection reads
        for tma in (False, True):  # pointer loads; TMA blocks running past a split and past the tensor
            got = fused.maxsim_scores(xs, ms if case[-1] else None, cfg.eps, cfg.ranker_direction, tma=tma)
            if bool((got[~pairs] > float("-inf")).any()) or not bool((got[cand] > float("-inf")).all()):
                return float("inf")  # non-candidate pairs must stay -inf, real candidates must be scored
            worst = max(worst, _rel(got[cand], want[cand]))
    return worst


def _select():
    import torch

    from aveyb.kernels import ranker as fused
    from aveyb.model import ranker as ref

    worst = 0.0
    for case in [(2, 200, 32, 32, 2, "left", "min", True), (3, 129, 48, 16, 3, "both", "max", True),
                 (2, 256, 32, 32, 5, "both", "none", False)]:
        cfg, x, mask, _ = _ranker_inputs(*case)
        xs, ms = ref.split_sequence(x, mask, cfg.split_size)
        scores = fused.maxsim_scores(xs, ms, cfg.eps, cfg.ranker_direction)
        cand = ref.candidate_mask(ms.any(-1), cfg.ranker_direction)
        idx, valid, sel = ref.select_top_splits(scores, cand, cfg.top_k)
        w = ref.split_weights(sel, valid, cfg.split_weighting, cfg.eps)
        idx_f, w_f = fused.select_and_weight(scores, cfg.top_k, cfg.split_weighting, cfg.eps)
        real = ms.any(-1)  # an empty split's scores all tie (its output is masked anyway)
        if not torch.equal(idx_f[real], idx[real]):
            return float("inf")
        worst = max(worst, float((w_f[real] - w[real]).abs().max()))
    return worst


def _cross_entropy():
    import torch
    import torch.nn.functional as F

    from aveyb.kernels import loss

    logits = (torch.randn(7, 5000) * 4).requires_grad_(True)  # 5000 = a 4096 block + a masked tail
    labels = torch.tensor([3, -100, 4999, 0, -100, 2048, 4095])
    want = F.cross_entropy(logits, labels, ignore_index=-100)
    (want_grad,) = torch.autograd.grad(want * 1.7, logits)
    got = loss.cross_entropy(logits, labels)
    (grad,) = torch.autograd.grad(got * 1.7, logits)
    return max(_rel(got.detach().reshape(1), want.detach().reshape(1)), _rel(grad, want_grad))


def run(name: str) -> float:
    if name == "layers-split-major":
        return _split_major()
    if name.startswith("layers-"):
        _, kind, norm, act = name.split("-")
        split, padded = (24, False) if kind == "coupled" else ((20, False) if norm == "none" else (32, True))
        return _layers(kind, norm, act, 3, split, 48, padded)
    if name.startswith("train-"):
        _, kind, norm, act = name.split("-")
        split, padded = (16, norm == "softmax") if kind == "coupled" else ((19, True) if norm == "none" else (24, True))
        return _train(kind, norm, act, 3, split, 36 if norm == "none" else 32, padded)  # 36: xn's pad is not 8
    if name.startswith("gemm-"):
        return _gemm(name.rsplit("-", 1)[1], cublas=name.startswith("gemm-cublas-"))
    cases = {
        "ranker-left-min-padded": (2, 200, 32, 32, 2, "left", "min", True),
        "ranker-both-max-padded": (3, 129, 48, 16, 3, "both", "max", True),
        "ranker-left-none-unpadded": (2, 256, 32, 64, 3, "left", "none", False),
    }
    if name in cases:
        return _ranker(cases[name])
    if name == "ranker-maxsim":
        return _maxsim()
    if name == "ranker-select-weights":
        return _select()
    if name == "loss-cross-entropy":
        return _cross_entropy()
    if name == "ranker-grad":
        return _ranker((2, 200, 32, 32, 2, "left", "min", True), grad=True)
    raise KeyError(name)


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("set TRITON_INTERPRET=1 (the kernels must be built for the interpreter)")
    import torch

    for case_name in sys.argv[1:] or list(CASES):
        torch.manual_seed(0)
        try:
            err = run(case_name)
        except Exception as exc:  # noqa: BLE001  reported per case
            print(json.dumps({"case": case_name, "error": f"{type(exc).__name__}: {exc}"[:500]}), flush=True)
            continue
        err, ref_err = err if isinstance(err, tuple) else (err, 0.0)
        print(json.dumps({"case": case_name, "err": err, "reference_err": ref_err}), flush=True)
