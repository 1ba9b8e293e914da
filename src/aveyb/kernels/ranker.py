"""Triton ranker (SPEC.md section 2): tiled MaxSim and fused compression.

Matches :func:`aveyb.model.ranker.rank_and_compress`. Pieces:

* ``_maxsim_kernel`` -- :func:`aveyb.model.ranker.maxsim_scores`. One program per (batch, query
  split i, chunk of its candidate splits j): one flat loop streams the query and key splits through
  shared memory in d-chunks, keeps one (BLOCK_T x S) block of cosines in registers, takes the row
  max over real keys and sums over real queries. No T x T (nor S x T) matrix ever reaches device
  memory. Only candidate pairs are computed (j < i for ``direction="left"``, j != i for "both");
  other entries are -inf, which is what the selection needs (the reference computes them and then
  masks them).
* top-k and weighting run on the small (B, N, N) score matrix with the reference functions
  :func:`~aveyb.model.ranker.select_top_splits` and :func:`~aveyb.model.ranker.split_weights`
  (k <= a few; O(B N^2) bytes, negligible next to MaxSim's O(B N^2 S^2 d) work).
* ``_compress_kernel`` -- :func:`aveyb.model.ranker.compress`. H_i = sum_slot w_slot D_slot X_{j_slot}
  + D_last X_i + X_i as a grouped GEMM whose B operand is fetched by split index: the
  (B, N, (k+1)S, d) window is never built.

Training: MaxSim's gradient reaches the embeddings only through the k selected pairs per split
(the weights), so with autograd on the kernel's scores only drive the selection and
:func:`selected_pair_scores` recomputes those pairs' scores in PyTorch (differentiable, no host
sync); :class:`_Compress`'s backward is :func:`compress_backward`, the gradient written out as
three batched GEMMs and an index_add (no recomputed forward).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from aveyb.kernels._triton_utils import (
    device_properties,
    dot_precision,
    mask_arg,
    product_fp32,
    tensor_descriptor,
    tma_layout_ok,
)
from aveyb.kernels.options import DEFAULT_OPTIONS, KernelOptions
from aveyb.kernels.tuning import size_bucket, tunable
from aveyb.model import ranker as ref

_MAXSIM_CONFIGS = [
    triton.Config({"BLOCK_T": bt, "BLOCK_D": bd, "J_CHUNK": jc}, num_warps=w, num_stages=st)
    # J_CHUNK 1-2 keep short inputs' few pairs spread over the SMs; 8-32 amortise long inputs' pipelines.
    for bt, bd, jc, w, st in ((128, 64, 1, 8, 4), (128, 64, 2, 8, 4), (128, 64, 8, 8, 3), (128, 64, 8, 8, 4),
                              (128, 64, 32, 8, 4), (64, 64, 16, 4, 4), (32, 32, 4, 4, 2))
]


@triton.jit
def _row_block_score(acc, inv_ptr, mask_ptr, base_i, base_j, rows, keys, S, HAS_MASK: tl.constexpr):
    """One finished (query-row block, key split) block of dot products -> the sum over its real
    query rows of the max over real keys of the cosines, and whether split j has a real key."""
    key_ok = keys < S
    row_ok = rows < S
    if HAS_MASK:
        key_ok = key_ok & (tl.load(mask_ptr + base_j + keys, mask=keys < S, other=0) != 0)
        row_ok = row_ok & (tl.load(mask_ptr + base_i + rows, mask=rows < S, other=0) != 0)
    inv_k = tl.load(inv_ptr + base_j + keys, mask=keys < S, other=0.0)
    inv_q = tl.load(inv_ptr + base_i + rows, mask=rows < S, other=1.0)  # 1: no -inf * 0 off the split
    # inv_q > 0 scales a whole row, so it is applied after the row max.
    sim = tl.where(key_ok[None, :], acc * inv_k[None, :], float("-inf"))
    part = tl.sum(tl.where(row_ok, tl.max(sim, axis=1) * inv_q, 0.0), axis=0)
    return part, tl.sum(key_ok.to(tl.int32), axis=0) > 0


@triton.jit
def _pair_step(it, lo, i, n_t, n_d, LEFT: tl.constexpr):
    """Step ``it`` of a program's flat loop -> (d-chunk, query-row block, candidate split j): d-chunks
    innermost, then row blocks, then the program's candidates from ``lo`` ("both" skips j = i)."""
    kd = it % n_d
    tb = (it // n_d) % n_t
    j = lo + it // (n_d * n_t)
    if not LEFT:
        j += (j >= i).to(j.dtype)
    return kd, tb, j


@triton.autotune(configs=tunable(_MAXSIM_CONFIGS), key=["S", "D", "NB"])
@triton.jit(do_not_specialize=["NB"])
def _maxsim_kernel(
    x_ptr, inv_ptr, mask_ptr, out_ptr,
    N, S, D, NB,
    HAS_MASK: tl.constexpr, LEFT: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr, J_CHUNK: tl.constexpr,
    PREC: tl.constexpr,
):
    """score[b, i, j] = sum_{real t in X_i} max_{real u in X_j} cos(x_t, x_u), cos = (x_t . x_u) inv_t inv_u,
    for the J_CHUNK candidates j of query split i that program (c, i, b) owns.

    One flat loop over (candidate, query-row block, d-chunk): the product of a pair is only S x S x d
    (a K loop of a dozen steps), so looping pairs one at a time would drain and refill the software
    pipeline at every pair; flattened, the loads of the next pair overlap the epilogue of this one.
    """
    c = tl.program_id(0)
    i = tl.program_id(1)
    b = tl.program_id(2)
    n_cand = i if LEFT else N - 1  # "both": candidates 0..N-2 map onto j != i
    lo = c * J_CHUNK
    hi = tl.minimum(lo + J_CHUNK, n_cand)
    if lo < hi:
        n_d = tl.cdiv(D, BLOCK_D)
        n_t = tl.cdiv(S, BLOCK_T)
        base_i = (b * N + i).to(tl.int64) * S
        keys = tl.arange(0, BLOCK_S)
        dd = tl.arange(0, BLOCK_D)
        acc = tl.zeros((BLOCK_T, BLOCK_S), dtype=tl.float32)
        total = 0.0
        for it in range(0, (hi - lo) * n_t * n_d):
            kd, tb, j = _pair_step(it, lo, i, n_t, n_d, LEFT)
            base_j = (b * N + j).to(tl.int64) * S
            rows = tb * BLOCK_T + tl.arange(0, BLOCK_T)
            d_ok = (kd * BLOCK_D + dd) < D
            q = tl.load(x_ptr + (base_i + rows)[:, None] * D + (kd * BLOCK_D + dd)[None, :],
                        mask=(rows < S)[:, None] & d_ok[None, :], other=0.0)
            k = tl.load(x_ptr + (base_j + keys)[:, None] * D + (kd * BLOCK_D + dd)[None, :],
                        mask=(keys < S)[:, None] & d_ok[None, :], other=0.0)
            acc = tl.dot(q, tl.trans(k), acc, input_precision=PREC)
            if kd == n_d - 1:  # this (pair, row block) is complete: cosines, row max, row sum
                part, has_key = _row_block_score(acc, inv_ptr, mask_ptr, base_i, base_j, rows, keys, S, HAS_MASK)
                total += part
                acc = tl.zeros((BLOCK_T, BLOCK_S), dtype=tl.float32)
                # A key split with no real token keeps its -inf (the reference's); a query split
                # with no real token scores 0 against the rest, as in the reference.
                tl.store(out_ptr + (b * N + i).to(tl.int64) * N + j, total, mask=(tb == n_t - 1) & has_key)
                total = tl.where(tb == n_t - 1, 0.0, total)


def _maxsim_tma_blocks(nargs):
    nargs["q_desc"].block_shape = [nargs["BLOCK_T"], nargs["BLOCK_D"]]
    nargs["k_desc"].block_shape = [nargs["BLOCK_S"], nargs["BLOCK_D"]]


# GROUP_I query splits share each candidate chunk among the programs running at once, so at long
# inputs their keys come from L2 rather than HBM (a pair does ~256 FLOP per key byte, about what
# HBM feeds an H100's tensor cores).
_MAXSIM_TMA_CONFIGS = [
    triton.Config({"BLOCK_T": bt, "BLOCK_D": bd, "J_CHUNK": jc, "GROUP_I": gi}, num_warps=w, num_stages=st,
                  pre_hook=_maxsim_tma_blocks)
    for bt, bd, jc, gi, w, st in ((128, 64, 1, 1, 8, 4), (128, 64, 2, 1, 8, 4), (128, 64, 8, 1, 8, 4),
                                  (128, 64, 2, 8, 8, 4), (128, 64, 4, 16, 8, 4), (128, 64, 8, 8, 8, 4),
                                  (128, 64, 8, 16, 8, 3), (64, 64, 16, 4, 4, 4), (32, 32, 4, 2, 4, 2))
]


@triton.autotune(configs=tunable(_MAXSIM_TMA_CONFIGS), key=["S", "D", "NB"])
@triton.jit(do_not_specialize=["NB"])
def _maxsim_tma_kernel(
    q_desc, k_desc, inv_ptr, mask_ptr, out_ptr,
    N, S, D, NB,
    HAS_MASK: tl.constexpr, LEFT: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr, J_CHUNK: tl.constexpr,
    GROUP_I: tl.constexpr,
):
    """``_maxsim_kernel`` with its two operands loaded by TMA from the (B·N·S, d) splits (Hopper,
    16-bit data). A block may run past its split into the next one (S not a multiple of the
    block) or past the tensor (zero-filled); the epilogue's row and key masks drop those rows.
    Program (p, g, b) is query split g·GROUP_I + p % GROUP_I, candidate chunk p // GROUP_I."""
    p = tl.program_id(0)
    i = tl.program_id(1) * GROUP_I + p % GROUP_I
    c = p // GROUP_I
    b = tl.program_id(2)
    n_cand = i if LEFT else N - 1
    lo = c * J_CHUNK
    hi = tl.minimum(lo + J_CHUNK, n_cand)
    if (i < N) & (lo < hi):
        n_d = tl.cdiv(D, BLOCK_D)
        n_t = tl.cdiv(S, BLOCK_T)
        row0_i = (b * N + i) * S
        base_i = row0_i.to(tl.int64)
        keys = tl.arange(0, BLOCK_S)
        acc = tl.zeros((BLOCK_T, BLOCK_S), dtype=tl.float32)
        total = 0.0
        for it in range(0, (hi - lo) * n_t * n_d):
            kd, tb, j = _pair_step(it, lo, i, n_t, n_d, LEFT)
            q = q_desc.load([row0_i + tb * BLOCK_T, kd * BLOCK_D])
            k = k_desc.load([(b * N + j) * S, kd * BLOCK_D])
            acc = tl.dot(q, tl.trans(k), acc)
            if kd == n_d - 1:
                base_j = ((b * N + j) * S).to(tl.int64)
                rows = tb * BLOCK_T + tl.arange(0, BLOCK_T)
                part, has_key = _row_block_score(acc, inv_ptr, mask_ptr, base_i, base_j, rows, keys, S, HAS_MASK)
                total += part
                acc = tl.zeros((BLOCK_T, BLOCK_S), dtype=tl.float32)
                tl.store(out_ptr + (b * N + i).to(tl.int64) * N + j, total, mask=(tb == n_t - 1) & has_key)
                total = tl.where(tb == n_t - 1, 0.0, total)


# Below this many splits (batch x N) the pointer kernel runs: timed on an H100, the TMA one takes
# 0.18-0.26 ms against 0.14-0.16 ms at 8 x 2,048 (64 splits), and 0.75-0.77 against 0.95 ms at
# 8 x 8,192 (256 splits).
TMA_MIN_SPLITS = 256


def _maxsim_tma_ok(xs: torch.Tensor, enabled: bool = True) -> bool:
    """TMA loads need Hopper or newer, 16-bit data and 16-byte aligned rows (``enabled``:
    ``KernelOptions.maxsim_tma``), and pay off from TMA_MIN_SPLITS splits."""
    if not enabled or xs.device.type != "cuda":
        return False
    if xs.shape[0] * xs.shape[1] < TMA_MIN_SPLITS or xs.dtype not in (torch.bfloat16, torch.float16):
        return False
    return device_properties(xs.device).major >= 9 and tma_layout_ok(xs)


def maxsim_scores(xs: torch.Tensor, ms: torch.Tensor | None, eps: float, direction: str = "left",
                  tma: bool | None = None, allow_tma: bool = True) -> torch.Tensor:
    """Triton :func:`aveyb.model.ranker.maxsim_scores` over candidate pairs only; others are -inf.

    (B, N, S, d) zero-padded splits, (B, N, S) bool or None (nothing padded) -> (B, N, N) float32.
    The splits are read as they are; cosines are dot products scaled by 1 / (‖x‖ + eps) in fp32.
    ``tma``: load by TMA (``_maxsim_tma_kernel``); None decides from the device and the data, where
    ``allow_tma`` (``KernelOptions.maxsim_tma``) allows it.
    """
    batch, n_splits, split_size, width = xs.shape
    xs = xs.contiguous()
    inv = 1.0 / (torch.linalg.vector_norm(xs, dim=-1, dtype=torch.float32) + eps)
    out = torch.full((batch, n_splits, n_splits), float("-inf"), device=xs.device, dtype=torch.float32)
    if n_splits < 2 or batch == 0:
        return out
    mask_u8 = mask_arg(ms, inv)
    block_s = max(16, triton.next_power_of_2(split_size))
    most = n_splits - 1  # the most candidates a split has, either direction
    grid = lambda meta: (triton.cdiv(most, meta["J_CHUNK"]), n_splits, batch)
    # The autotuning key buckets the amount of work, so short inputs do not pick long inputs' tiles.
    work_bucket = size_bucket(batch * n_splits)
    common = dict(HAS_MASK=ms is not None, LEFT=(direction == "left"), BLOCK_S=block_s)
    if tma if tma is not None else _maxsim_tma_ok(xs, allow_tma):
        flat = xs.view(batch * n_splits * split_size, width)
        q_desc, k_desc = tensor_descriptor(flat), tensor_descriptor(flat)  # two: the config's pre-hook gives each its block
        grid_tma = lambda meta: (triton.cdiv(most, meta["J_CHUNK"]) * meta["GROUP_I"],
                                 triton.cdiv(n_splits, meta["GROUP_I"]), batch)
        _maxsim_tma_kernel[grid_tma](q_desc, k_desc, inv, mask_u8, out, n_splits, split_size, width,
                                     work_bucket, **common)
    else:
        _maxsim_kernel[grid](xs, inv, mask_u8, out, n_splits, split_size, width, work_bucket,
                             PREC=dot_precision(xs.dtype), **common)
    return out


@triton.jit
def _select_kernel(scores_ptr, idx_ptr, w_ptr, N, eps, K: tl.constexpr, WEIGHTING: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """One (batch, split) row of scores -> its k picks and weights, as ``select_top_splits`` then
    ``split_weights`` (inference only): picks in descending order, right-aligned in the k slots,
    weights score / (min or max selected + eps), or 1 (WEIGHTING 0 = min, 1 = max, 2 = none)."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_N)
    s = tl.load(scores_ptr + row * N + cols, mask=cols < N, other=float("-inf"))
    slots = tl.arange(0, BLOCK_K)
    top_s = tl.full((BLOCK_K,), float("-inf"), tl.float32)
    top_i = tl.zeros((BLOCK_K,), tl.int32)
    for r in tl.static_range(K):
        best = tl.max(s, axis=0)
        pick = tl.min(tl.where(s == best, cols, BLOCK_N), axis=0)
        top_s = tl.where(slots == r, best, top_s)
        top_i = tl.where(slots == r, pick, top_i)
        s = tl.where(cols == pick, float("-inf"), s)
    n_valid = tl.sum(((top_s > float("-inf")) & (slots < K)).to(tl.int32), axis=0)
    source = slots - (K - n_valid)  # which pick lands in each slot
    valid = (source >= 0) & (slots < K)
    take = source[:, None] == slots[None, :]
    sel_s = tl.sum(tl.where(take, top_s[None, :], 0.0), axis=1)
    sel_i = tl.sum(tl.where(take, top_i[None, :], 0), axis=1)
    if WEIGHTING == 0:
        ref = tl.min(tl.where(valid, sel_s, float("inf")), axis=0)
    elif WEIGHTING == 1:
        ref = tl.max(tl.where(valid, sel_s, float("-inf")), axis=0)
    else:
        ref = 1.0
    ref = tl.where(n_valid > 0, ref, 1.0)
    if WEIGHTING == 2:
        w = tl.where(valid, 1.0, 0.0)
    else:
        w = tl.where(valid, sel_s / (ref + eps), 0.0)
    tl.store(idx_ptr + row * K + slots, tl.where(valid, sel_i, 0).to(tl.int64), mask=slots < K)
    tl.store(w_ptr + row * K + slots, w, mask=slots < K)


_WEIGHTING_IDS = {"min": 0, "max": 1, "none": 2}


def select_and_weight(scores: torch.Tensor, k: int, weighting: str, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton ``select_top_splits`` + ``split_weights`` on MaxSim scores whose non-candidates are
    -inf (what :func:`maxsim_scores` returns): (B, N, N) -> idx (B, N, k) int64, weights fp32."""
    batch, n_splits, _ = scores.shape
    idx = torch.empty(batch, n_splits, k, device=scores.device, dtype=torch.long)
    weights = torch.empty(batch, n_splits, k, device=scores.device, dtype=torch.float32)
    if batch * n_splits:
        _select_kernel[(batch * n_splits,)](
            scores.contiguous(), idx, weights, n_splits, eps, K=k, WEIGHTING=_WEIGHTING_IDS[weighting],
            BLOCK_N=max(16, triton.next_power_of_2(n_splits)), BLOCK_K=max(2, triton.next_power_of_2(k)), num_warps=1)
    return idx, weights


def selected_pair_scores(xs: torch.Tensor, ms: torch.Tensor | None, idx: torch.Tensor, valid: torch.Tensor,
                         eps: float) -> torch.Tensor:
    """MaxSim of each split with its k picks, differentiably in PyTorch: (B, N, k), 0 where not valid.

    The training path's ranker gradient reaches the embeddings only through these B·N·k scores
    (the weights), so they are recomputed here from the selection the kernel made, instead of
    differentiating the whole (B, N, N) score matrix: no T x T work and no host synchronisation.
    """
    batch, n_splits, split_size, width = xs.shape
    k = idx.shape[-1]
    xn = ref.cosine_normalize(xs.float(), eps)
    keys = ref.gather_splits(xn, idx.reshape(batch, n_splits * k)).view(batch, n_splits, k, split_size, width)
    sim = torch.einsum("bnsd,bnkud->bnksu", xn, keys)  # (B, N, k, S, S)
    if ms is not None:
        key_mask = ref.gather_splits(ms.unsqueeze(-1), idx.reshape(batch, n_splits * k))
        sim = sim.masked_fill(~key_mask.view(batch, n_splits, k, 1, split_size), float("-inf"))
    best = sim.amax(dim=-1)  # (B, N, k, S)
    if ms is not None:
        best = best.masked_fill(~ms.unsqueeze(2), 0.0)
    return best.sum(dim=-1).masked_fill(~valid, 0.0)


_COMPRESS_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=st)
    for bm, bn, bk, w, st in ((64, 128, 32, 4, 3), (64, 128, 64, 4, 3), (128, 128, 64, 8, 3), (128, 64, 64, 4, 3),
                              (64, 256, 64, 8, 3), (128, 256, 64, 8, 3))
]


@triton.autotune(configs=tunable(_COMPRESS_CONFIGS), key=["S", "D", "NB", "K", "PREC"])
@triton.jit(do_not_specialize=["NB"])
def _compress_kernel(
    xs_ptr, res_ptr, idx_ptr, w_ptr, d_ptr, out_ptr,
    N, S, D, NB,
    K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    PREC: tl.constexpr,
):
    """out_i = sum_{s<K} w_s D[:, sS:(s+1)S] X_{idx_s} + D[:, KS:(K+1)S] X_i + X_i; the products read
    ``xs`` (the dot dtype), the residual X_i reads ``res`` (the input's own dtype). NB (the
    batch x splits bucket) only keys the autotuner."""
    bn = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_n = tl.program_id(2)
    b = bn // N
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    kk = tl.arange(0, BLOCK_K)
    row_ok = rows < S
    col_ok = cols < D
    ld = (K + 1) * S
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for slot in tl.static_range(K + 1):
        if slot < K:
            src = b * N + tl.load(idx_ptr + bn * K + slot)
            weight = tl.load(w_ptr + bn * K + slot).to(tl.float32)
        else:
            src = bn
            weight = 1.0
        base = src.to(tl.int64) * S * D
        part = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, S, BLOCK_K):
            k_ok = (k0 + kk) < S
            a = tl.load(d_ptr + rows[:, None] * ld + slot * S + (k0 + kk)[None, :],
                        mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            x = tl.load(xs_ptr + base + (k0 + kk)[:, None] * D + cols[None, :],
                        mask=k_ok[:, None] & col_ok[None, :], other=0.0)
            part = tl.dot(a, x, part, input_precision=PREC)
        acc += weight * part
    own = bn.to(tl.int64) * S * D
    acc += tl.load(res_ptr + own + rows[:, None] * D + cols[None, :],
                   mask=row_ok[:, None] & col_ok[None, :], other=0.0).to(tl.float32)
    tl.store(out_ptr + own + rows[:, None] * D + cols[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=row_ok[:, None] & col_ok[None, :])


def compress(xs: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor, down_proj: torch.Tensor,
             xs_dot: torch.Tensor | None = None) -> torch.Tensor:
    """Triton :func:`aveyb.model.ranker.compress`: (B, N, S, d) -> (B, N, S, d), no window built.

    ``xs_dot``: ``xs`` in the dtype the products run in (autocast's, under autocast), if it differs;
    the residual and the output keep ``xs``'s dtype, as the reference's ``xs + matmul(...)`` does
    under autocast.
    """
    batch, n_splits, split_size, width = xs.shape
    k = idx.shape[-1]
    xs = xs.contiguous()
    xs_dot = xs if xs_dot is None else xs_dot.contiguous()
    dp = down_proj.to(xs_dot.dtype).contiguous()
    out = torch.empty_like(xs)
    grid = lambda meta: (batch * n_splits, triton.cdiv(split_size, meta["BLOCK_M"]),
                         triton.cdiv(width, meta["BLOCK_N"]))
    _compress_kernel[grid](
        xs_dot, xs, idx.contiguous(), weights.float().contiguous(), dp, out, n_splits, split_size, width,
        size_bucket(batch * n_splits), K=k, PREC=dot_precision(xs_dot.dtype),
    )
    return out


def _autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """Autocast's dtype when autocast is on for x's device and x is fp32 (else None): the dtype in
    which the reference's matmuls run, so the fused ranker's products use it too."""
    device = x.device.type
    if x.dtype == torch.float32 and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return None


def compress_backward(grad: torch.Tensor, xs: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor,
                      down_proj: torch.Tensor, dot_dtype: torch.dtype, needs: tuple[bool, bool, bool]):
    """Gradients of :func:`aveyb.model.ranker.compress` for (xs, weights, D), written out instead
    of differentiating a recomputed forward (which gathers every pick twice, transposes the
    splits for D's gradient and scatters each slot separately).

    With G_i = dL/dH_i and P_i = Dᵀ G_i = [D_1ᵀG_i; …; D_kᵀG_i; D_ownᵀG_i] (one batched GEMM):
    dX_i = G_i + D_ownᵀG_i + Σ_{(i', s): j_{i's} = i} w_{i's} D_sᵀG_{i'}  (an index_add over picks),
    dw_{is} = ⟨D_sᵀG_i, X_{j_is}⟩, and dD = Σ_i G_i · [w_{i1}X_{j_i1}; …; w_{ik}X_{j_ik}; X_i]ᵀ. The
    products run in ``dot_dtype`` (the forward's), as the reference's under autocast.
    """
    need_x, need_w, need_d = needs
    batch, n_splits, split_size, width = xs.shape
    k = idx.shape[-1]
    rows = batch * n_splits
    g = grad.reshape(rows, split_size, width)
    g_dot = g.to(dot_dtype)
    x = xs.reshape(rows, split_size, width)
    src = (idx + n_splits * torch.arange(batch, device=idx.device).view(batch, 1, 1)).reshape(-1)
    w = weights.reshape(rows, k)
    gx = gw = gd = None
    if need_x or (need_w and k):
        p = torch.matmul(down_proj.to(dot_dtype).t(), g_dot)  # (rows, (k+1)S, d)
        slots = p[:, :k * split_size].reshape(rows, k, split_size, width)
    picked = x.index_select(0, src).view(rows, k, split_size, width) if k and (need_w or need_d) else None
    if need_x:
        gx = g + p[:, k * split_size:]
        if k:
            spread = slots * w[..., None, None].to(slots.dtype)
            gx = gx.index_add(0, src, spread.reshape(rows * k, split_size, width).to(gx.dtype))
        gx = gx.reshape(xs.shape).to(xs.dtype)
    if need_w:
        acc = torch.promote_types(dot_dtype, torch.float32)  # fp32, or fp64 for fp64 inputs
        gw = (slots.to(acc) * picked.to(acc)).sum(dim=(-1, -2)) if k else torch.zeros_like(w)
        gw = gw.reshape(weights.shape).to(weights.dtype)
    if need_d:
        window = x if not k else torch.cat(
            [(picked * w[..., None, None].to(picked.dtype)).reshape(rows, k * split_size, width), x], dim=1)
        gd = product_fp32(torch.bmm, g_dot, window.to(dot_dtype).transpose(1, 2)).sum(dim=0).to(down_proj.dtype)
    return gx, gw, gd


class _Compress(torch.autograd.Function):
    """Triton forward; the backward is :func:`compress_backward`, in the forward's dot dtype
    (autocast's, under autocast, as the reference's matmuls)."""

    @staticmethod
    def forward(ctx, xs, idx, weights, down_proj, xs_dot):
        ctx.save_for_backward(xs, idx, weights, down_proj)
        ctx.dot_dtype = xs.dtype if xs_dot is None else xs_dot.dtype
        return compress(xs, idx, weights, down_proj, xs_dot)

    @staticmethod
    def backward(ctx, grad):
        xs, idx, weights, down_proj = ctx.saved_tensors
        needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[2], ctx.needs_input_grad[3])
        with torch.autocast(grad.device.type, enabled=False):
            gx, gw, gd = compress_backward(grad, xs, idx, weights, down_proj, ctx.dot_dtype, needs)
        return gx, None, gw, gd, None


def rank_and_compress(x: torch.Tensor, mask: torch.Tensor | None, down_proj: torch.Tensor, config,
                      options: KernelOptions = DEFAULT_OPTIONS):
    """Fused :func:`aveyb.model.ranker.rank_and_compress` (compression on): (B·N, S, d), (B·N, S).

    With no attention mask and T a multiple of S nothing is padded: the splits are a view of x,
    the kernels skip masking and the returned row mask is None (decided on the host, no sync).
    """
    if not config.compression:
        raise ValueError("the fused ranker needs compression=True (kernels.supports says so)")
    batch, length, width = x.shape
    split_size = config.split_size
    if mask is None and length % split_size == 0:
        xs, ms = x.reshape(batch, length // split_size, split_size, width), None
    else:
        xs, ms = ref.split_sequence(x, mask, split_size)
    n_splits = xs.shape[1]
    k = config.num_retrieved_splits
    grad = torch.is_grad_enabled() and (x.requires_grad or down_proj.requires_grad)
    # Under autocast the products (MaxSim, compression) run in its dtype, as the reference's
    # matmuls do: one cast shared by both kernels (None: xs is already in that dtype).
    dot_dtype = _autocast_dtype(x)
    xs_dot = xs.detach().to(dot_dtype) if dot_dtype is not None else None
    xs_scores = xs if xs_dot is None else xs_dot
    if k == 0:
        idx = torch.zeros(batch, n_splits, 0, dtype=torch.long, device=x.device)
        weights = torch.zeros(batch, n_splits, 0, dtype=torch.float32, device=x.device)
    elif not grad:
        scores = maxsim_scores(xs_scores, ms, config.eps, config.ranker_direction, allow_tma=options.maxsim_tma)
        idx, weights = select_and_weight(scores, k, config.split_weighting, config.eps)
    else:  # the weights carry the ranker's gradient: select on the kernel's scores, then recompute
        with torch.no_grad():  # the picked pairs' scores differentiably (selected_pair_scores)
            scores = maxsim_scores(xs_scores, ms, config.eps, config.ranker_direction, allow_tma=options.maxsim_tma)
        split_valid = ms.any(dim=-1) if ms is not None else torch.ones(batch, n_splits, dtype=torch.bool,
                                                                       device=x.device)
        candidates = ref.candidate_mask(split_valid, config.ranker_direction)
        idx, valid, _ = ref.select_top_splits(scores, candidates, k)
        sel_scores = selected_pair_scores(xs, ms, idx, valid, config.eps)
        weights = ref.split_weights(sel_scores, valid, config.split_weighting, config.eps)
    h = _Compress.apply(xs, idx, weights, down_proj, xs_dot)
    hm = ms.reshape(batch * n_splits, split_size) if ms is not None else None
    return h.reshape(batch * n_splits, split_size, width), hm
