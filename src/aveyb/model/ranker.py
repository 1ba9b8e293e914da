"""The ranker (SPEC.md section 2): split, score, select, weight, compress. Runs once per forward.

Every function is vectorised over batch and splits; the only loops are over the ``k`` window
slots and over query chunks of the MaxSim (to bound memory; no T×T matrix is kept whole).
Padded positions (``mask == False``, including the rows that pad the last split) take no part:
they are excluded from MaxSim, a split with no real token is never retrieved, and their rows
are zero, so they add nothing to a compressed split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Bound on query-rows × key-rows in one MaxSim chunk (about 256 MB in fp32).
_MAXSIM_CHUNK_ELEMENTS = 1 << 26


def _exporting() -> bool:
    """True inside ``torch.export`` (the ONNX exporter, aveyb.export): shape-dependent Python
    branches then take a form valid for every length, with the same result."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(is_exporting and is_exporting())


def split_sequence(x: Tensor, mask: Tensor | None, split_size: int) -> tuple[Tensor, Tensor]:
    """Right-pad (B, T, d) to a multiple of S with zero rows and cut into (B, N, S, d) splits.

    Returns the splits and their (B, N, S) boolean mask; padded rows are zeroed so that a
    padded token's embedding cannot leak into any computation.
    """
    batch, length, width = x.shape
    if mask is None:
        mask = torch.ones(batch, length, dtype=torch.bool, device=x.device)
    n_splits = (length + split_size - 1) // split_size  # not -(-T // S): exported as truncating division
    pad = n_splits * split_size - length
    x = x * mask.unsqueeze(-1).to(x.dtype)
    if _exporting() or pad:  # exported graphs always pad (by 0 rows when T is a multiple of S)
        x = torch.nn.functional.pad(x, (0, 0, 0, pad))
        mask = torch.nn.functional.pad(mask, (0, pad), value=False)
    return x.view(batch, n_splits, split_size, width), mask.view(batch, n_splits, split_size)


def cosine_normalize(x: Tensor, eps: float) -> Tensor:
    """x / (‖x‖ + ε): the cosine of two rows is then their dot product (SPEC 2.2)."""
    return x / (x.norm(dim=-1, keepdim=True) + eps)


def maxsim_scores(xs: Tensor, ms: Tensor, eps: float, left_only: bool = False) -> Tensor:
    """score[b, i, j] = Σ_{t ∈ X_i} max_{u ∈ X_j} cos(x_t, x_u) over real tokens only.

    (B, N, S, d), (B, N, S) -> (B, N, N) in float32 or wider; -inf where split j has no real
    token. Computed over chunks of query splits so memory stays O(chunk · T); with
    ``left_only`` a chunk is scored only against the splits before it ends (the rest is -inf).
    """
    batch, n_splits, split_size, width = xs.shape
    compute_dtype = torch.promote_types(xs.dtype, torch.float32)
    xn = cosine_normalize(xs.to(compute_dtype), eps)
    # Skipping the masking work when nothing is padded needs a host sync; compiled graphs always mask.
    padded = torch.compiler.is_compiling() or not bool(ms.all())
    if _exporting():  # one chunk: a loop over a symbolic number of splits would fix the length
        bounds = [(0, n_splits)]
    else:
        chunk = max(1, _MAXSIM_CHUNK_ELEMENTS // max(1, batch * split_size * n_splits * split_size))
        bounds = [(start, min(start + chunk, n_splits)) for start in range(0, n_splits, chunk)]
    scores = []
    for start, stop in bounds:
        n_keys = stop if left_only else n_splits
        queries = xn[:, start:stop]  # (B, c, S, d)
        keys = xn[:, :n_keys].reshape(batch, n_keys * split_size, width)
        sim = torch.einsum("bcsd,bud->bcsu", queries, keys).view(batch, stop - start, split_size, n_keys, split_size)
        if padded:
            sim = sim.masked_fill(~ms[:, :n_keys].reshape(batch, 1, 1, n_keys, split_size), float("-inf"))
        best = sim.amax(dim=-1)  # (B, c, S, n_keys)
        if padded:
            best = best.masked_fill(~ms[:, start:stop].unsqueeze(-1), 0.0)
        chunk_scores = best.sum(dim=2)  # (B, c, n_keys)
        scores.append(F.pad(chunk_scores, (0, n_splits - n_keys), value=float("-inf")))
    return torch.cat(scores, dim=1)


def candidate_mask(split_valid: Tensor, direction: str) -> Tensor:
    """Which splits j may be retrieved for split i: j < i ("left") or j ≠ i ("both"), real only."""
    n_splits = split_valid.shape[1]
    idx = torch.arange(n_splits, device=split_valid.device)
    if direction == "left":
        allowed = idx[None, :] < idx[:, None]
    elif direction == "both":
        allowed = idx[None, :] != idx[:, None]
    else:
        raise ValueError(f"ranker_direction={direction!r}; allowed: 'left', 'both'")
    return allowed.unsqueeze(0) & split_valid.unsqueeze(1)


def select_top_splits(scores: Tensor, candidates: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Top-m (m = min(#candidates, k)) splits per query, in descending score order.

    The m picks are right-aligned in k slots (the window is left-padded with zeros, SPEC 2.6):
    slot s holds the (s - (k - m))-th best pick. Returns (idx, valid, sel_scores), each (B, N, k).
    """
    batch, n_splits, _ = scores.shape
    masked = scores.masked_fill(~candidates, float("-inf"))
    if _exporting():  # the same picks for any number of splits: k impossible candidates more
        masked = torch.nn.functional.pad(masked, (0, k), value=float("-inf"))
    elif n_splits < k:  # fewer splits than slots: pad with impossible candidates
        masked = torch.nn.functional.pad(masked, (0, k - n_splits), value=float("-inf"))
    top_scores, top_idx = masked.topk(k, dim=-1)  # descending; invalid picks sort last
    top_valid = torch.isfinite(top_scores)
    n_valid = top_valid.sum(dim=-1, keepdim=True)
    slots = torch.arange(k, device=scores.device)
    source = slots - (k - n_valid)  # which pick lands in each slot
    valid = source >= 0
    source = source.clamp(min=0)
    idx = top_idx.gather(-1, source).clamp(max=max(n_splits - 1, 0))
    sel_scores = top_scores.gather(-1, source).masked_fill(~valid, 0.0)
    return idx.masked_fill(~valid, 0), valid, sel_scores


def split_weights(sel_scores: Tensor, valid: Tensor, weighting: str, eps: float) -> Tensor:
    """w_j = score_j / (min selected + ε) ("min"), / (max selected + ε) ("max"), or 1 ("none")."""
    if weighting == "none":
        weights = torch.ones_like(sel_scores)
    elif weighting in ("min", "max"):
        fill = float("inf") if weighting == "min" else float("-inf")
        pool = sel_scores.masked_fill(~valid, fill)
        ref = pool.amin(dim=-1, keepdim=True) if weighting == "min" else pool.amax(dim=-1, keepdim=True)
        ref = torch.where(torch.isfinite(ref), ref, torch.ones_like(ref))  # no picks: unused
        weights = sel_scores / (ref + eps)
    else:
        raise ValueError(f"split_weighting={weighting!r}; allowed: 'min', 'max', 'none'")
    return weights * valid.to(weights.dtype)


def gather_splits(xs: Tensor, idx: Tensor) -> Tensor:
    """(B, N, S, d) gathered by (B, N) split indices -> (B, N, S, d)."""
    batch, n_splits, split_size, width = xs.shape
    flat = idx.reshape(batch, -1, 1, 1).expand(-1, -1, split_size, width)
    return xs.gather(1, flat).view(batch, idx.shape[1], split_size, width)


def compress(xs: Tensor, idx: Tensor, weights: Tensor, down_proj: Tensor) -> Tensor:
    """H_i = D · [w_1 X_{j1}; …; w_k X_{jk}; X_i] + X_i  (SPEC 2.7), slot by slot.

    D is (S, (k+1)S); each slot's S×S block multiplies one gathered split, so the
    (B, N, (k+1)S, d) window is never built.
    """
    split_size = xs.shape[2]
    k = idx.shape[-1]
    out = xs + torch.matmul(down_proj[:, k * split_size:], xs)
    for slot in range(k):
        picked = gather_splits(xs, idx[..., slot]) * weights[..., slot, None, None].to(xs.dtype)
        out = out + torch.matmul(down_proj[:, slot * split_size:(slot + 1) * split_size], picked)
    return out


def extended_windows(xs: Tensor, ms: Tensor, idx: Tensor, weights: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """[w_1 X_{j1}; …; w_k X_{jk}; X_i] and its row mask, (B, N, L, d) and (B, N, L).

    Only for ``compression=False``, where the layers run on the whole window by design. The
    zero rows of empty slots take part in the layers as in the official model; only rows that
    stand for padded tokens are masked.
    """
    k = idx.shape[-1]
    rows, masks = [], []
    for s in range(k):
        rows.append(gather_splits(xs, idx[..., s]) * weights[..., s, None, None].to(xs.dtype))
        picked_mask = gather_splits(ms.unsqueeze(-1), idx[..., s]).squeeze(-1)
        masks.append(picked_mask | ~valid[..., s, None])
    return torch.cat(rows + [xs], dim=2), torch.cat(masks + [ms], dim=2)


def rank_and_compress(x: Tensor, mask: Tensor | None, down_proj: Tensor | None, config) -> tuple[Tensor, Tensor]:
    """The whole ranker: (B, T, d) embeddings -> (B·N, R, d) layer inputs and (B·N, R) mask.

    R = S with compression, L = (k+1)·S without.
    """
    xs, ms = split_sequence(x, mask, config.split_size)
    batch, n_splits, split_size, width = xs.shape
    k = config.num_retrieved_splits
    if k == 0:
        idx = torch.zeros(batch, n_splits, 0, dtype=torch.long, device=x.device)
        weights = torch.zeros(batch, n_splits, 0, dtype=x.dtype, device=x.device)
        valid = torch.zeros(batch, n_splits, 0, dtype=torch.bool, device=x.device)
    else:
        scores = maxsim_scores(xs, ms, config.eps, left_only=config.ranker_direction == "left")
        candidates = candidate_mask(ms.any(dim=-1), config.ranker_direction)
        idx, valid, sel_scores = select_top_splits(scores, candidates, k)
        weights = split_weights(sel_scores, valid, config.split_weighting, config.eps)
    if config.compression:
        h, hm = compress(xs, idx, weights, down_proj), ms
    else:
        h, hm = extended_windows(xs, ms, idx, weights, valid)
    return h.reshape(batch * n_splits, -1, width), hm.reshape(batch * n_splits, -1)
