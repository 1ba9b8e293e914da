"""A deliberately naive, independent reference of the Avey-B encoder (SPEC.md sections 1-3, 8).

Written straight from SPEC.md, without looking at ``aveyb.model``: one sequence at a time,
Python loops over splits, candidate splits and tokens, float64 throughout. It is slow on
purpose and exists only to check the vectorised model in ``tests/test_model_reference.py``.

Parameters come as a state dict with the official names of SPEC section 7::

    embed.weight (V, d)           ranker.down_proj (S, L)        (compression on only)
    layers.i.norm.weight (d)      layers.i.enricher.{weight (4d, d), bias (4d)}
    layers.i.fuser.{weight (d, 3d), bias (d)}                   layers.i.alpha ()
    layers.i.spatial_proj (M, M)  static and coupled layers, M = S with compression, L without
    layers.i.tau ()               dynamic and coupled layers when dynamic_norm == "softmax"

Padding (SPEC section 8): when T is not a multiple of S, the zero rows that pad the last split
are *padded positions*. They are left out of MaxSim (neither the max over u nor the sum over
t), a split without a real token is never a candidate, they are zeroed in U before every mix
(softmax gives their columns zero weight) and they are dropped from the output. The zero rows
that left-pad an extended window (fewer than k selected splits) are NOT padding: they are part
of the official window and take part in the layers like any row.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch

DTYPE = torch.float64


# ---- small scalar helpers ------------------------------------------------------------------
def _act(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "gelu":  # exact erf GELU: x * Phi(x)
        return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name == "gelu_tanh":
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    if name == "relu":
        return torch.clamp(x, min=0.0)
    if name == "silu":
        return x / (1.0 + torch.exp(-x))
    raise ValueError(f"unknown activation {name!r}")


def _cosines(a: torch.Tensor, b: torch.Tensor, eps: float) -> list[list[float]]:
    """cos(a_t, b_u) = a_t·b_u / ((|a_t|+eps)(|b_u|+eps)) for every row pair (SPEC 2.2)."""
    na = torch.linalg.norm(a, dim=1, keepdim=True) + eps
    nb = torch.linalg.norm(b, dim=1, keepdim=True) + eps
    return ((a @ b.T) / (na * nb.T)).tolist()


def naive_layer_kinds(arrangement: str, n_layers: int) -> list[str]:
    """SPEC 3 'Arrangement', computed independently of ``AveyBConfig.layer_kinds``."""
    kinds = []
    for i in range(n_layers):
        if arrangement == "interleaved_static_first":
            kinds.append("static" if i % 2 == 0 else "dynamic")
        elif arrangement == "interleaved_dynamic_first":
            kinds.append("dynamic" if i % 2 == 0 else "static")
        elif arrangement == "static_only":
            kinds.append("static")
        elif arrangement == "dynamic_only":
            kinds.append("dynamic")
        elif arrangement == "coupled":
            kinds.append("coupled")
        else:
            raise ValueError(f"unknown layer arrangement {arrangement!r}")
    return kinds


def expected_parameter_names(config) -> set[str]:
    """The official parameter names (SPEC 7, plus P for coupled and tau for softmax layers)."""
    names = {"embed.weight"}
    if config.compression:
        names.add("ranker.down_proj")
    for i, kind in enumerate(naive_layer_kinds(config.layer_arrangement, config.num_hidden_layers)):
        p = f"layers.{i}."
        names |= {p + "norm.weight", p + "enricher.weight", p + "enricher.bias",
                  p + "fuser.weight", p + "fuser.bias", p + "alpha"}
        if kind in ("static", "coupled"):
            names.add(p + "spatial_proj")
        if kind in ("dynamic", "coupled") and config.dynamic_norm == "softmax":
            names.add(p + "tau")
    return names


def _plain(config) -> SimpleNamespace:
    """The fields we use, read once (attribute access on a transformers config is slow)."""
    names = ("hidden_size", "num_hidden_layers", "split_size", "num_retrieved_splits", "ranker_direction",
             "split_weighting", "compression", "layer_arrangement", "dynamic_norm", "hidden_act", "eps")
    return SimpleNamespace(**{name: getattr(config, name) for name in names})


# ---- ranker (SPEC 2) ----------------------------------------------------------------------
def naive_scores(splits: list[torch.Tensor], real: list[list[bool]], eps: float) -> list[list[float]]:
    """score[i][j] = sum over real t in X_i of max over real u in X_j of cos(x_t, x_u)."""
    n, S = len(splits), splits[0].shape[0]
    cos = _cosines(torch.cat(splits), torch.cat(splits), eps)  # every token pair, row-major
    score = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            total = 0.0
            for t in range(S):
                if not real[i][t]:
                    continue
                best = -math.inf
                for u in range(S):
                    if real[j][u]:
                        best = max(best, cos[i * S + t][j * S + u])
                total += best  # -inf never kept: callers only use j with a real token
            score[i][j] = total
    return score


def naive_select(i: int, score: list[list[float]], real: list[list[bool]], config) -> list[tuple[int, float]]:
    """SPEC 2.3-2.5: the selected splits (index, weight), in descending score order."""
    n = len(score)
    if config.ranker_direction == "left":
        candidates = [j for j in range(i)]
    elif config.ranker_direction == "both":
        candidates = [j for j in range(n) if j != i]
    else:
        raise ValueError(config.ranker_direction)
    candidates = [j for j in candidates if any(real[j])]  # a split with no real token: never
    m = min(len(candidates), config.num_retrieved_splits)
    # Descending score; ties (not expected with random inputs) go to the lower index first.
    ranked = sorted(candidates, key=lambda j: (-score[i][j], j))[:m]
    if m == 0:
        return []
    eps = config.eps
    chosen = [score[i][j] for j in ranked]
    out = []
    for j in ranked:
        if config.split_weighting == "min":
            w = score[i][j] / (min(chosen) + eps)
        elif config.split_weighting == "max":
            w = score[i][j] / (max(chosen) + eps)
        elif config.split_weighting == "none":
            w = 1.0
        else:
            raise ValueError(config.split_weighting)
        out.append((j, w))
    return out


def naive_window(i, splits, real, selected, config) -> tuple[torch.Tensor, list[bool]]:
    """SPEC 2.6: [0 ... 0 ; w_j1 X_j1 ; ... ; w_jm X_jm ; X_i], L rows, with its padding mask.

    The second value says, for each of the L rows, whether it is a padded position (a zero
    row that pads the last split of the sequence). Left zero rows are not padding.
    """
    S, d, k = config.split_size, config.hidden_size, config.num_retrieved_splits
    blocks, pad = [], []
    for _ in range(k - len(selected)):
        blocks.append(torch.zeros(S, d, dtype=DTYPE))
        pad += [False] * S
    for j, w in selected:
        blocks.append(w * splits[j])
        pad += [not r for r in real[j]]
    blocks.append(splits[i])
    pad += [not r for r in real[i]]
    return torch.cat(blocks, dim=0), pad


# ---- contextualization layers (SPEC 3) ---------------------------------------------------
def naive_rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Row-wise: x * rsqrt(mean(x^2) + eps) * weight."""
    return x / torch.sqrt((x**2).mean(dim=1, keepdim=True) + eps) * weight


def _normalise_rows(A: torch.Tensor, pad: list[bool], norm: str, tau: float, eps: float) -> torch.Tensor:
    """norm(A) of SPEC 3, row-wise. Padded columns of A are already 0 (their U, hence Û, is 0)."""
    if norm == "sum":  # A[t, :] / max(sum_j |A[t, j]|, eps)
        return A / A.abs().sum(dim=1, keepdim=True).clamp_min(eps)
    if norm == "signed_sum":  # A[t, :] / (sum_j A[t, j] + eps)
        return A / (A.sum(dim=1, keepdim=True) + eps)
    if norm == "none":
        return A
    if norm == "softmax":  # softmax of A[t, :] / tau over the non-padded columns only
        is_pad = torch.tensor(pad)
        if bool(is_pad.all()):
            return torch.zeros_like(A)
        logits = (A / tau).masked_fill(is_pad[None, :], -math.inf)
        e = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
        return e / e.sum(dim=1, keepdim=True)
    raise ValueError(f"unknown dynamic norm {norm!r}")


def naive_mix(kind: str, U: torch.Tensor, pad: list[bool], P, tau, config) -> torch.Tensor:
    eps = config.eps
    U = U.clone()
    for t, is_pad in enumerate(pad):  # padded positions are zero in U before every mix
        if is_pad:
            U[t] = 0.0
    if kind == "static":
        return P @ U
    Uhat = U / torch.linalg.norm(U, dim=1, keepdim=True).clamp_min(eps)  # row-wise
    A = Uhat @ Uhat.T
    if kind == "coupled":
        A = P * A
    return _normalise_rows(A, pad, config.dynamic_norm, tau, eps) @ U


def naive_layer(sd, i: int, kind: str, X: torch.Tensor, pad: list[bool], config) -> torch.Tensor:
    p = f"layers.{i}."
    Z = _act(config.hidden_act,
             naive_rmsnorm(X, sd[p + "norm.weight"], config.eps) @ sd[p + "enricher.weight"].T
             + sd[p + "enricher.bias"])
    half = Z.shape[1] // 2
    Zc, Zb = Z[:, :half], Z[:, half:]
    U, G = Zc[:, : half // 2], Zc[:, half // 2:]
    P = sd.get(p + "spatial_proj")
    tau = float(sd[p + "tau"]) if (p + "tau") in sd else 1.0
    C = G * naive_mix(kind, U, pad, P, tau, config)
    Y = torch.cat([C, Zb], dim=1) @ sd[p + "fuser.weight"].T + sd[p + "fuser.bias"]
    return Y + sd[p + "alpha"] * X


# ---- whole encoder --------------------------------------------------------------------------
def naive_hidden_states(sd: dict[str, torch.Tensor], config, ids: torch.Tensor) -> torch.Tensor:
    """Encoder output (T, d) for ONE sequence ``ids`` (T,), in float64."""
    config = _plain(config)
    sd = {name: v.detach().to(DTYPE).cpu() for name, v in sd.items()}
    S, d = config.split_size, config.hidden_size
    T = int(ids.shape[0])
    N = -(-T // S)
    E = sd["embed.weight"]
    rows = [E[int(ids[t])] if t < T else torch.zeros(d, dtype=DTYPE) for t in range(N * S)]
    splits = [torch.stack(rows[n * S:(n + 1) * S]) for n in range(N)]
    real = [[n * S + r < T for r in range(S)] for n in range(N)]

    score = naive_scores(splits, real, config.eps)
    kinds = naive_layer_kinds(config.layer_arrangement, config.num_hidden_layers)
    outputs = []
    for i in range(N):
        selected = naive_select(i, score, real, config)
        window, window_pad = naive_window(i, splits, real, selected, config)
        if config.compression:
            H = sd["ranker.down_proj"] @ window + splits[i]  # SPEC 2.7
            pad = [not r for r in real[i]]
        else:
            H, pad = window, window_pad
        for layer, kind in enumerate(kinds):
            H = naive_layer(sd, layer, kind, H, pad, config)
        outputs.append(H[-S:])
    return torch.cat(outputs, dim=0)[:T]
