"""Triton contextualization layer (SPEC.md section 3). Matches ``aveyb.model.layers.AveyBLayer.forward``.

Inference (no autograd) runs a layer as three launches:

1. ``gemm.enrich``: the enricher GEMM with RMSNorm folded in (gain in the cached weight, row scale
   from row statistics) and bias + activation in the epilogue -> Z = [U | G | Zb], U's padded
   rows zeroed;
2. the mix kernel, in place on Z: G <- G ⊙ mix(U), so Z[:, d:] becomes [G ⊙ mix(U) ; Zb];
   * ``_static_mix_kernel`` -- :func:`aveyb.model.layers.static_mix` then the gate: P · U tiled;
   * ``_dynamic_mix_kernel`` -- :func:`aveyb.model.layers.dynamic_mix` then the gate: per block of
     rows, U_rows U_keysᵀ and the norms in fp32, the cosines ⊙ P (coupled), the normalisation
     (``sum``, ``softmax`` with τ and masked keys, ``none``, ``signed_sum``) in registers, then
     norm(A) · U. Neither U Uᵀ nor A reaches memory;
3. ``gemm.fuse``: the fuser GEMM on the view Z[:, d:] with bias + α·X in the epilogue, which also
   writes the row statistics the next layer's enricher needs.

Neither RMSNorm(X), the pre-activation Z, act(Z), mix(U), the concatenation nor the residual is
a separate pass over memory. Training (autograd on) runs ``training.LayerFunction``: hand-written
forward and backward kernels around cuBLAS GEMMs (``AVEYB_TRAIN_LAYER=compile``: the reference
layer under ``torch.compile`` instead; docs/kernels.md).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from aveyb.kernels import gemm
from aveyb.kernels.tuning import dot_precision, env_choice, mask_arg, size_bucket, tunable
from aveyb.model import layers as ref

ACT_IDS = {"gelu": 0, "gelu_tanh": 1, "relu": 2, "silu": 3}
NORM_IDS = {"sum": 0, "softmax": 1, "none": 2, "signed_sum": 3}


@triton.jit
def split_tile(S, D, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    """(split, row block, column block) of this program in a 1-D grid of
    M · cdiv(S, BLOCK_T) · cdiv(D, BLOCK_D) programs, split-major. The blocks of one split run
    side by side, so the split's U (and, backward, its S × S matrices) is read from memory once and
    then served from L2. With the split as the fastest grid axis, every block re-read it a wave later."""
    pid = tl.program_id(0)
    n_d = tl.cdiv(D, BLOCK_D)
    per_split = tl.cdiv(S, BLOCK_T) * n_d
    m = pid // per_split
    local = pid % per_split
    return m, local // n_d, local % n_d


@triton.jit
def split_rows(S, BLOCK_T: tl.constexpr):
    """:func:`split_tile` for kernels without column blocks: (split, row block)."""
    pid = tl.program_id(0)
    n_t = tl.cdiv(S, BLOCK_T)
    return pid // n_t, pid % n_t


def split_grid(n_split: int, split_size: int, width: int | None = None):
    """The launch grid of kernels that place their programs with :func:`split_tile` (``width`` None:
    no column blocks, BLOCK_D then only tiles the loop over d inside the kernel)."""
    def grid(meta):
        cols = 1 if width is None else triton.cdiv(width, meta["BLOCK_D"])
        return (n_split * triton.cdiv(split_size, meta["BLOCK_T"]) * cols,)
    return grid


@triton.jit
def _gate_store(z_ptr, save_ptr, m, rows, dd, mixed, S, D, ZW, SAVE: tl.constexpr):
    """Z[m, rows, D + dd] = G[m, rows, dd] * mixed, in place (G sits where its product goes);
    SAVE: also mix(U) itself into save (M·S, D), which the training path's backward needs."""
    ok = (rows < S)[:, None] & (dd < D)[None, :]
    r64 = m.to(tl.int64) * S + rows
    offs = r64[:, None] * ZW + D + dd[None, :]
    g = tl.load(z_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    tl.store(z_ptr + offs, (g * mixed).to(z_ptr.dtype.element_ty), mask=ok)
    if SAVE:
        tl.store(save_ptr + r64[:, None] * D + dd[None, :], mixed.to(save_ptr.dtype.element_ty), mask=ok)


@triton.jit
def spatial_product(p_ptr, v_ptr, V_STRIDE, m, rows, dd, S, D, TRANS_P: tl.constexpr, BLOCK_T: tl.constexpr,
                    BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr, PREC: tl.constexpr):
    """(P · V)[rows, dd] of split m in fp32, or (Pᵀ · V) with TRANS_P, for P (S, S) and V the split's
    (S, D) rows ``V_STRIDE`` apart: the static mix P · U and its backward Pᵀ · d mix(U). Pᵀ is
    loaded as P's (k, rows) block and transposed in registers, so both read P row-major."""
    kk = tl.arange(0, BLOCK_K)
    base = m.to(tl.int64) * S
    acc = tl.zeros((BLOCK_T, BLOCK_D), dtype=tl.float32)
    for k0 in range(0, S, BLOCK_K):
        k_ok = (k0 + kk) < S
        if TRANS_P:
            p = tl.trans(tl.load(p_ptr + (k0 + kk)[:, None] * S + rows[None, :],
                                 mask=k_ok[:, None] & (rows < S)[None, :], other=0.0))
        else:
            p = tl.load(p_ptr + rows[:, None] * S + (k0 + kk)[None, :], mask=(rows < S)[:, None] & k_ok[None, :],
                        other=0.0)
        v = tl.load(v_ptr + (base + k0 + kk)[:, None] * V_STRIDE + dd[None, :], mask=k_ok[:, None] & (dd < D)[None, :],
                    other=0.0)
        acc = tl.dot(p, v, acc, input_precision=PREC)
    return acc


_STATIC_CONFIGS = [
    triton.Config({"BLOCK_T": bt, "BLOCK_D": bd, "BLOCK_K": bk}, num_warps=w, num_stages=st)
    for bt, bd, bk, w, st in ((64, 128, 64, 4, 3), (128, 128, 64, 8, 3), (64, 64, 64, 4, 3),
                              (128, 64, 64, 4, 3), (64, 128, 32, 4, 4), (32, 128, 32, 4, 3), (256, 128, 64, 8, 3))
]
# The config lab picks 64-row tiles with 4 warps at 8 x 2,048 (37.8 us) and whole-split 256-row tiles
# at 8 x 32,768 (542 against 591 us for the next best): few splits want
# small programs spread over the SMs, many want fewer re-reads of U. NB, the autotuning key's
# split-count bucket, lets each length keep its own.


@triton.autotune(configs=tunable(_STATIC_CONFIGS), key=["S", "D", "ZW", "NB"], restore_value=["z_ptr"])
@triton.jit(do_not_specialize=["NB"])
def _static_mix_kernel(
    z_ptr, p_ptr, save_ptr, S, D, ZW, NB, SAVE: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr, PREC: tl.constexpr,
):
    """G[m, rows, dd] <- G * (P @ U)[rows, dd], U = Z[..., :d]   (aveyb.model.layers.static_mix, then the gate)."""
    m, t_block, d_block = split_tile(S, D, BLOCK_T, BLOCK_D)
    rows = t_block * BLOCK_T + tl.arange(0, BLOCK_T)
    dd = d_block * BLOCK_D + tl.arange(0, BLOCK_D)
    acc = spatial_product(p_ptr, z_ptr, ZW, m, rows, dd, S, D, False, BLOCK_T, BLOCK_D, BLOCK_K, PREC)
    _gate_store(z_ptr, save_ptr, m, rows, dd, acc, S, D, ZW, SAVE)


# Software-pipelined, this kernel gave wrong and run-to-run different results for thousands of
# elements under Triton 3.6 on an H100 (wgmma) while the squared norms were summed from the tiles
# loaded for the U_rows · U_keysᵀ product inside that product's loop (docs/kernels.md, the
# correctness fix). With the norms summed in a loop of
# their own that stays unpipelined, every pipelined config repeats bitwise and matches the fp32
# reference to bf16 rounding, and the fastest (128 x 64 tiles, 3 stages) beats the best one-stage
# config of the earlier form by 15-16% (57.8 against 68.2 us at 16,384 rows, 108.8 against 129.8 at
# 32,768). tests/test_kernel_configs_gpu.py checks
# every config here.
_DYNAMIC_CONFIGS = [
    triton.Config({"BLOCK_T": bt, "BLOCK_D": bd}, num_warps=w, num_stages=st)
    for bt, bd, w, st in ((128, 64, 8, 3), (128, 128, 8, 2), (128, 64, 8, 2), (64, 64, 4, 2), (128, 64, 8, 1),
                          (64, 128, 8, 1), (32, 64, 4, 3), (64, 32, 4, 1), (16, 32, 4, 1))
]


@triton.autotune(configs=tunable(_DYNAMIC_CONFIGS), key=["S", "D", "ZW", "NB", "NORM", "COUPLED"],
                 restore_value=["z_ptr"])
@triton.jit(do_not_specialize=["NB"])
def _dynamic_mix_kernel(
    z_ptr, p_ptr, tau_ptr, mask_ptr, save_ptr, S, D, ZW, eps, NB, SAVE: tl.constexpr,
    HAS_MASK: tl.constexpr, NORM: tl.constexpr, COUPLED: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr, PREC: tl.constexpr,
):
    """G[m, rows] <- G * (norm(Â [⊙ P]) @ U)[rows]   (aveyb.model.layers.dynamic_mix + gate).

    One program per (split, BLOCK_T rows), placed split-major, sweeps over d. The first two sum the
    squared norms and accumulate U_rows · U_keysᵀ in fp32, giving the cosines
    Â = inv_t · (U Uᵀ)_tk · inv_k with inv = 1 / max(‖U‖, eps) as the reference normalises; the
    normalisation happens in registers. The last multiplies the normalised rows of A by U chunk
    by chunk and gates G in place. Neither U Uᵀ nor A ever reaches memory. NB, the split-count
    bucket, only keys the autotuner: short and long inputs want different tiles.
    """
    m, t_block = split_rows(S, BLOCK_T)
    rows = t_block * BLOCK_T + tl.arange(0, BLOCK_T)
    keys = tl.arange(0, BLOCK_S)
    key_in = keys < S
    row_in = rows < S
    base = m.to(tl.int64) * S
    row_offs = (base + rows)[:, None] * ZW
    key_offs = (base + keys)[:, None] * ZW
    a = tl.zeros((BLOCK_T, BLOCK_S), dtype=tl.float32)
    sq_r = tl.zeros((BLOCK_T,), dtype=tl.float32)
    sq_k = tl.zeros((BLOCK_S,), dtype=tl.float32)
    for d0 in tl.range(0, D, BLOCK_D, num_stages=1):  # unpipelined: see _DYNAMIC_CONFIGS
        dd = d0 + tl.arange(0, BLOCK_D)
        u_r = tl.load(z_ptr + row_offs + dd[None, :], mask=row_in[:, None] & (dd < D)[None, :], other=0.0)
        u_k = tl.load(z_ptr + key_offs + dd[None, :], mask=key_in[:, None] & (dd < D)[None, :], other=0.0)
        sq_r += tl.sum(u_r.to(tl.float32) * u_r.to(tl.float32), axis=1)
        sq_k += tl.sum(u_k.to(tl.float32) * u_k.to(tl.float32), axis=1)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + tl.arange(0, BLOCK_D)
        u_r = tl.load(z_ptr + row_offs + dd[None, :], mask=row_in[:, None] & (dd < D)[None, :], other=0.0)
        u_k = tl.load(z_ptr + key_offs + dd[None, :], mask=key_in[:, None] & (dd < D)[None, :], other=0.0)
        a = tl.dot(u_r, tl.trans(u_k), a, input_precision=PREC)
    inv_r = 1.0 / tl.maximum(tl.sqrt(sq_r), eps)
    inv_k = 1.0 / tl.maximum(tl.sqrt(sq_k), eps)
    a = a * inv_r[:, None] * inv_k[None, :]
    if COUPLED:
        a = a * tl.load(p_ptr + rows[:, None] * S + keys[None, :], mask=row_in[:, None] & key_in[None, :],
                        other=0.0).to(tl.float32)
    if NORM == 0:
        a = a / tl.maximum(tl.sum(tl.abs(a), axis=1), eps)[:, None]
    elif NORM == 1:
        key_real = key_in
        if HAS_MASK:
            key_real = key_in & (tl.load(mask_ptr + base + keys, mask=key_in, other=0) != 0)
        logits = a / tl.load(tau_ptr).to(tl.float32)
        logits = tl.where(key_real[None, :], logits, -3.0e38)
        logits = tl.where(key_in[None, :], logits, float("-inf"))
        e = tl.exp(logits - tl.max(logits, axis=1)[:, None])
        a = e / tl.sum(e, axis=1)[:, None]
    elif NORM == 3:
        a = a / (tl.sum(a, axis=1) + eps)[:, None]
    a = a.to(z_ptr.dtype.element_ty)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + tl.arange(0, BLOCK_D)
        u = tl.load(z_ptr + key_offs + dd[None, :], mask=key_in[:, None] & (dd < D)[None, :], other=0.0)
        _gate_store(z_ptr, save_ptr, m, rows, dd, tl.dot(a, u, input_precision=PREC), S, D, ZW, SAVE)


def mix_and_gate(z: torch.Tensor, mask: torch.Tensor | None, kind: str, width: int, norm: str = "sum",
                 eps: float = 1e-12, spatial_proj: torch.Tensor | None = None, tau: torch.Tensor | None = None,
                 save: torch.Tensor | None = None) -> None:
    """In place on the activated Z = [U | G | Zb] (M, S, E·d): G <- G ⊙ mix(U).

    Matches the gate-times-mix part of :func:`reference_mix_and_gate`. U's padded rows are
    already zero (the enricher did it). ``save`` (M·S, d), if given, receives mix(U) (training).
    """
    n_split, split_size, zw = z.shape
    if n_split == 0:
        return
    prec = dot_precision(z.dtype)
    if kind == "static":
        p = spatial_proj.to(z.dtype).contiguous()
        _static_mix_kernel[split_grid(n_split, split_size, width)](
            z, p, z if save is None else save, split_size, width, zw, size_bucket(n_split), SAVE=save is not None,
            PREC=prec)
        return
    coupled = kind == "coupled"
    p = spatial_proj.to(torch.float32).contiguous() if coupled else z
    tau_t = tau.detach().float().contiguous() if (norm == "softmax" and tau is not None) else z
    mask_u8 = mask_arg(mask, z)
    _dynamic_mix_kernel[split_grid(n_split, split_size)](
        z, p, tau_t, mask_u8, z if save is None else save, split_size, width, zw, eps, size_bucket(n_split),
        SAVE=save is not None,
        HAS_MASK=mask is not None, NORM=NORM_IDS[norm], COUPLED=coupled,
        BLOCK_S=max(16, triton.next_power_of_2(split_size)), PREC=prec,
    )


def reference_mix_and_gate(z, mask, kind, width, act, norm="sum", eps=1e-12, spatial_proj=None, tau=None):
    """The lines of ``AveyBLayer.forward`` between the two GEMMs, from the pre-activation Z."""
    z = ref.ACT_FNS[act](z)
    u, gate, bypass = z[..., :width], z[..., width:2 * width], z[..., 2 * width:]
    if mask is not None:
        u = u * mask.unsqueeze(-1).to(u.dtype)
    if kind == "static":
        mixed = ref.static_mix(u, spatial_proj)
    else:
        mixed = ref.dynamic_mix(u, mask, norm, eps, tau, spatial_proj if kind == "coupled" else None)
    return torch.cat([gate * mixed, bypass], dim=-1)


def _reference_layer(x, mask, norm_w, norm_eps, we, be, wf, bf, alpha, proj, tau, kind, width, act, norm, eps):
    """``AveyBLayer.forward`` as one function of its tensors (what the training path compiles)."""
    z = F.linear(ref.rms_norm(x, norm_w, norm_eps), we, be)
    mixed = reference_mix_and_gate(z, mask, kind, width, act, norm, eps, proj, tau)
    return F.linear(mixed, wf, bf) + alpha * x


_COMPILED: dict = {}


_DYNAMIC = {"auto": None, "1": True, "0": False}


def _compiled(fn):
    """``fn`` under ``torch.compile`` (AVEYB_COMPILE_LAYERS=0 runs it eagerly, e.g. to debug).

    AVEYB_COMPILE_DYNAMIC: ``auto`` (default: specialise on the first shapes, go dynamic if they
    change), ``1`` (dynamic from the start), ``0`` (recompile per shape)."""
    if os.environ.get("AVEYB_COMPILE_LAYERS", "1") == "0":
        return fn
    choice = env_choice("AVEYB_COMPILE_DYNAMIC", _DYNAMIC, "auto")
    key = (fn, choice)
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(fn, dynamic=_DYNAMIC[choice])
    return _COMPILED[key]


# Below this many elements per layer input (rows x width) a training step is bound by the host:
# the hand-written path launches about 25 kernels per layer, the compiled one fewer. Measured
# on an H100: at d = 768 the hand-written
# layer was faster from 16 x 1,024 rows, at 16 x 512 not; at d = 384 with 16,384 rows (`mini`) it
# was slower than even the eager reference.
AUTO_TRAIN_MIN_ELEMENTS = 16384 * 768


def train_layer_mode() -> str:
    """AVEYB_TRAIN_LAYER: how a layer trains (autograd on). ``triton``: the hand-written forward
    and backward kernels of ``training.py`` around cuBLAS GEMMs; ``compile``: the reference layer
    under ``torch.compile`` (Inductor's kernels); ``auto`` (default): ``triton`` from
    AUTO_TRAIN_MIN_ELEMENTS elements (rows x width) per layer input, ``compile`` below."""
    return env_choice("AVEYB_TRAIN_LAYER", ("auto", "triton", "compile"), "auto")


def _train_with_kernels(elements: int) -> bool:
    if torch.compiler.is_compiling():  # a compiled model: Dynamo traces the reference layer itself
        return False
    mode = train_layer_mode()
    return mode == "triton" or (mode == "auto" and elements >= AUTO_TRAIN_MIN_ELEMENTS)


def _activation_name(layer) -> str:
    for name, fn in ref.ACT_FNS.items():
        if fn is layer.act:
            return name
    raise ValueError("layer activation is not one of aveyb.model.layers.ACT_FNS")


def layer_step(layer, x: torch.Tensor, mask: torch.Tensor | None, stats: gemm.RowStats | None = None):
    """Fused ``AveyBLayer.forward(x, mask)`` -> (out, row statistics of out or None).

    ``stats`` are x's row statistics when the previous fused layer made x (else computed here).
    With autograd on, the training path runs (``train_layer_mode``) and no statistics are returned.
    """
    n_split, split_size, width = x.shape
    kind = layer.kind
    proj = getattr(layer, "spatial_proj", None) if kind in ("static", "coupled") else None
    tau = getattr(layer, "tau", None) if layer.dynamic_norm == "softmax" and kind != "static" else None
    act = _activation_name(layer)
    grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in layer.parameters()))
    if grad and _train_with_kernels(x.numel()):
        from aveyb.kernels.training import layer_train_forward

        return layer_train_forward(layer, x.contiguous(), mask, act), None
    if grad:
        out = _compiled(_reference_layer)(
            x, mask, layer.norm.weight, layer.norm.eps, layer.enricher.weight, layer.enricher.bias,
            layer.fuser.weight, layer.fuser.bias, layer.alpha, proj, tau, kind, width, act, layer.dynamic_norm,
            layer.eps)
        return out, None
    x2 = x.contiguous().view(-1, width)
    if stats is None:
        stats = gemm.row_stats(x2)
    weight = gemm.scaled_enricher_weight(layer, x.dtype)
    bias_e = layer.enricher.bias.to(x.dtype)
    z = gemm.enrich(x2, stats, weight, bias_e, mask, ACT_IDS[act], layer.norm.eps)
    mix_and_gate(z.view(n_split, split_size, -1), mask, kind, width, layer.dynamic_norm, layer.eps, proj, tau)
    out, stats = gemm.fuse(z[:, width:], layer.fuser.weight.to(x.dtype), layer.fuser.bias.to(x.dtype), x2,
                           layer.alpha)
    return out.view(n_split, split_size, width), stats


def layer_forward(layer, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Fused ``AveyBLayer.forward(x, mask)``: (M, S, d), (M, S) bool or None -> (M, S, d)."""
    return layer_step(layer, x, mask)[0]


def run_layers(layers, h: torch.Tensor, mask: torch.Tensor | None):
    """Yield each layer's output in turn, passing row statistics from one fused layer to the next."""
    stats = None
    for layer in layers:
        h, stats = layer_step(layer, h, mask, stats)
        yield h
