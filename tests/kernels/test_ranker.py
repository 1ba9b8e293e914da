"""The fused ranker (``aveyb.kernels.ranker``) against :mod:`aveyb.model.ranker`: MaxSim (pointer and
TMA kernels), selection and weights, compression and its written-out backward."""

from __future__ import annotations

import zlib

import pytest
import torch
from parity import (
    BASE_D,
    BASE_S,
    DTYPES,
    check,
    check_interpreted,
    config_cases,
    gpu,
    interpreter,
    pinned_run,
    rel,
    separated_embeddings,
)

pytest.importorskip("triton")
from aveyb.config import preset_config  # noqa: E402
from aveyb.kernels import ranker as fused  # noqa: E402
from aveyb.model import ranker as ref  # noqa: E402


# ---- CPU ---------------------------------------------------------------------------------------
def test_maxsim_tma_switch():
    """The TMA MaxSim kernel is off on CPU, below TMA_MIN_SPLITS, and with maxsim_tma=False."""
    xs = torch.zeros(2, 4, 16, 32, dtype=torch.bfloat16)
    assert not fused._maxsim_tma_ok(xs)  # CPU
    assert not fused._maxsim_tma_ok(xs, enabled=False)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_compress_backward_matches_autograd(k):
    """The written-out compression gradient (x, weights, D) equals autograd through the reference
    ``compress``, in fp32 and in float64; picks repeat a split and one slot is empty (weight 0)."""
    gen = torch.Generator().manual_seed(k)
    batch, n, s, d = 2, 5, 12, 20
    for dtype in (torch.float64, torch.float32):
        xs = torch.randn(batch, n, s, d, generator=gen, dtype=dtype).requires_grad_(True)
        idx = torch.randint(0, n, (batch, n, k), generator=gen)
        weights = torch.rand(batch, n, k, generator=gen, dtype=dtype) + 1
        if k:
            idx[0, 1, 0], weights[0, 1, 0] = 0, 0.0  # an empty slot, as select_top_splits leaves it
            idx[1, :, -1] = 3  # every split picks split 3: the index_add must sum them
        weights.requires_grad_(True)
        down = (torch.randn(s, (k + 1) * s, generator=gen, dtype=dtype) / s).requires_grad_(True)
        grad = torch.randn(batch, n, s, d, generator=gen, dtype=dtype)
        out = ref.compress(xs, idx, weights, down)
        want = torch.autograd.grad(out, (xs, weights, down), grad, allow_unused=True)
        got = fused.compress_backward(grad, xs.detach(), idx, weights.detach(), down.detach(), dtype,
                                      (True, True, True))
        only_w = fused.compress_backward(grad, xs.detach(), idx, weights.detach(), down.detach(), dtype,
                                         (False, True, False))
        assert only_w[0] is None and only_w[2] is None and torch.equal(only_w[1], got[1])
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        for name, a, b in zip(("x", "weights", "D"), got, want):
            if b is None:  # k = 0: weights is empty
                assert a.numel() == 0
                continue
            assert a.shape == b.shape and a.dtype == b.dtype, name
            assert rel(a, b) < tol, (name, dtype, rel(a, b))


def test_ranker_autocast_plumbing(monkeypatch):
    """Under autocast the fused ranker hands MaxSim and the compression one copy of the embeddings
    in autocast's dtype, keeps the output fp32, and its gradients follow the reference's. On CPU,
    with the two Triton kernels replaced by their references (the GPU test below runs the kernels)."""
    seen = {}

    def maxsim(xs, ms, eps, direction, allow_tma=True):
        seen["maxsim"] = xs
        return ref.maxsim_scores(xs.float(), ms, eps)

    def compress(xs, idx, weights, down_proj, xs_dot=None):
        seen["compress"] = xs_dot
        return ref.compress(xs, idx, weights, down_proj)  # autocast is on here, as in the reference

    monkeypatch.setattr(fused, "maxsim_scores", maxsim)
    monkeypatch.setattr(fused, "compress", compress)
    cfg = preset_config("tiny", hidden_size=32, split_size=16, num_retrieved_splits=2)
    x = separated_embeddings(2, 80, 32, 16, torch.device("cpu"), torch.Generator().manual_seed(0))
    mask = torch.arange(80)[None, :] < torch.tensor([80, 50])[:, None]
    down = torch.randn(16, 48, generator=torch.Generator().manual_seed(1)) / 16
    results = []
    for fn, dtype, autocast in ((ref.rank_and_compress, torch.float64, False),
                                (ref.rank_and_compress, torch.float32, True),
                                (fused.rank_and_compress, torch.float32, True)):
        xx, dd = x.to(dtype).requires_grad_(True), down.to(dtype).requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            h, _ = fn(xx, mask, dd, cfg)
        assert h.dtype == dtype
        results.append((h, *torch.autograd.grad(h.sum(), (xx, dd))))
    assert seen["maxsim"].dtype == torch.bfloat16 and seen["compress"] is seen["maxsim"]
    for name, want64, want, got in zip(("fwd", "grad x", "grad D"), *results):
        check(f"ranker under autocast (CPU) {name}", got, want, want64, torch.bfloat16)


# ---- Triton's interpreter (CPU, float32) ---------------------------------------------------------
def _ranker_inputs(batch, length, width, split, k, direction, weighting, padded):
    cfg = preset_config("tiny", hidden_size=width, split_size=split, num_retrieved_splits=k, ranker_direction=direction,
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


INTERPRETED_CASES = {  # (batch, length, d, S, k, direction, weighting, padded)
    "left-min-padded": (2, 200, 32, 32, 2, "left", "min", True),  # T not a multiple of S
    "both-max-padded": (3, 129, 48, 16, 3, "both", "max", True),
    "left-none-unpadded": (2, 256, 32, 64, 3, "left", "none", False),  # no mask, T a multiple of S: no sync
}


@interpreter
@pytest.mark.parametrize("case", list(INTERPRETED_CASES.values()), ids=list(INTERPRETED_CASES))
def test_rank_and_compress_interpreted(case):
    """MaxSim, top-k, weights and compression; the returned row mask is the reference's (None only
    where nothing is padded)."""
    cfg, x, mask, down = _ranker_inputs(*case)
    with torch.no_grad():
        h_ref, m_ref = ref.rank_and_compress(x, mask, down, cfg)
        h, m = fused.rank_and_compress(x, mask, down, cfg)
    assert bool(m_ref.all()) if m is None else torch.equal(m, m_ref)
    check_interpreted("rank_and_compress", rel(h, h_ref))


@interpreter
def test_rank_and_compress_grad_interpreted():
    """Gradients of x and D through the fused ranker's autograd path."""
    cfg, x, mask, down = _ranker_inputs(*INTERPRETED_CASES["left-min-padded"])
    grads = []
    for fn in (ref.rank_and_compress, fused.rank_and_compress):
        xx, dd = x.clone().requires_grad_(True), down.clone().requires_grad_(True)
        h, _ = fn(xx, mask, dd, cfg)
        g = torch.randn(h.shape, generator=torch.Generator().manual_seed(1))
        grads.append(torch.autograd.grad((h * g).sum(), (xx, dd)))
    for name, a, b in zip(("x", "D"), grads[1], grads[0]):
        check_interpreted(f"grad {name}", rel(a, b))


@interpreter
@pytest.mark.parametrize("tma", [False, True], ids=["pointer", "tma"])
@pytest.mark.parametrize("case", [(3, 700, 40, 80, 2, "left", "min", True), (2, 400, 40, 80, 2, "both", "min", True),
                                  (2, 480, 40, 80, 2, "left", "min", False)], ids=["left", "both", "unpadded"])
def test_maxsim_interpreted(case, tma):
    """MaxSim scores with 3 row blocks per split under the fallback tiles (S=80), d not a multiple of
    BLOCK_D, chunks of candidates, empty splits; TMA blocks running past a split and past the tensor.
    Non-candidate pairs stay -inf, every real candidate is scored."""
    cfg, x, mask, _ = _ranker_inputs(*case)
    xs, ms = ref.split_sequence(x, mask, cfg.split_size)
    want = ref.maxsim_scores(xs, ms, cfg.eps)
    pairs = ref.candidate_mask(torch.ones_like(ms[..., 0]), cfg.ranker_direction)
    cand = ref.candidate_mask(ms.any(-1), cfg.ranker_direction)  # what the selection reads
    got = fused.maxsim_scores(xs, ms if case[-1] else None, cfg.eps, cfg.ranker_direction, tma=tma)
    assert bool((got[~pairs] == float("-inf")).all())
    assert bool((got[cand] > float("-inf")).all())
    check_interpreted("maxsim", rel(got[cand], want[cand]))


@interpreter
@pytest.mark.parametrize("case", [(2, 200, 32, 32, 2, "left", "min", True), (3, 129, 48, 16, 3, "both", "max", True),
                                  (2, 256, 32, 32, 5, "both", "none", False)], ids=["left-min", "both-max", "both-none"])
def test_select_and_weight_interpreted(case):
    """The select kernel's picks and weights against select_top_splits and split_weights."""
    cfg, x, mask, _ = _ranker_inputs(*case)
    xs, ms = ref.split_sequence(x, mask, cfg.split_size)
    scores = fused.maxsim_scores(xs, ms, cfg.eps, cfg.ranker_direction)
    cand = ref.candidate_mask(ms.any(-1), cfg.ranker_direction)
    idx, valid, sel = ref.select_top_splits(scores, cand, cfg.num_retrieved_splits)
    w = ref.split_weights(sel, valid, cfg.split_weighting, cfg.eps)
    idx_f, w_f = fused.select_and_weight(scores, cfg.num_retrieved_splits, cfg.split_weighting, cfg.eps)
    real = ms.any(-1)  # an empty split's scores all tie (its output is masked anyway)
    assert torch.equal(idx_f[real], idx[real])
    check_interpreted("weights", float((w_f[real] - w[real]).abs().max()))


# ---- GPU ---------------------------------------------------------------------------------------
RANKER_CASES = [  # (batch, length, d, S, k, direction, weighting, padded)
    (2, 200, 64, 32, 2, "left", "min", True),
    (3, 129, 96, 16, 3, "both", "max", True),
    (2, 256, 128, 64, 3, "left", "none", False),
    (1, 1000, 64, 256, 3, "left", "min", True),
]


@gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", RANKER_CASES, ids=lambda c: f"B{c[0]}T{c[1]}d{c[2]}S{c[3]}k{c[4]}{c[5]}{c[6]}")
def test_rank_and_compress_parity(case, dtype):
    batch, length, width, s, k, direction, weighting, padded = case
    cfg = preset_config("tiny", hidden_size=width, split_size=s, num_retrieved_splits=k, ranker_direction=direction,
                        split_weighting=weighting)
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(zlib.crc32(repr(case).encode()))
    x = separated_embeddings(batch, length, width, s, dev, gen)
    mask = None
    if padded:
        lengths = torch.randint(length // 3, length + 1, (batch,), generator=gen, device=dev)
        lengths[0] = length
        mask = torch.arange(length, device=dev)[None, :] < lengths[:, None]
    down = torch.randn(s, (k + 1) * s, generator=gen, device=dev) / s
    x_d, down_d = x.to(dtype), down.to(dtype)

    # MaxSim scores on candidate pairs (fp32 output in every case).
    xs, ms = ref.split_sequence(x_d, mask, s)
    cand = ref.candidate_mask(ms.any(-1), direction)
    s64 = ref.maxsim_scores(ref.split_sequence(x_d.double(), mask, s)[0], ms, cfg.eps)
    check("maxsim", fused.maxsim_scores(xs, ms, cfg.eps, direction)[cand],
          ref.maxsim_scores(xs, ms, cfg.eps)[cand], s64[cand], dtype)

    def run(fn, xx, dd):
        xx = xx.detach().requires_grad_(True)
        dd = dd.detach().requires_grad_(True)
        h, hm = fn(xx, mask, dd, cfg)
        grad_out = torch.randn(h.shape, generator=torch.Generator(device=dev).manual_seed(7), device=dev)
        gx, gd = torch.autograd.grad((h.double() * grad_out.double()).sum(), (xx, dd))
        return h, hm, gx, gd

    # Selection and weighting (the inference kernel) on the same scores: equal picks for every
    # split with a real token (an empty split's scores all tie; its output is masked anyway).
    scores = fused.maxsim_scores(xs, ms, cfg.eps, direction)
    idx_r, valid_r, sel_r = ref.select_top_splits(scores, cand, k)
    w_r = ref.split_weights(sel_r, valid_r, weighting, cfg.eps)
    idx_f, w_f = fused.select_and_weight(scores, k, weighting, cfg.eps)
    real = ms.any(-1)
    assert torch.equal(idx_f[real], idx_r[real])
    torch.testing.assert_close(w_f[real], w_r[real], rtol=1e-6, atol=1e-6)

    h64, hm64, gx64, gd64 = run(ref.rank_and_compress, x_d.double(), down_d.double())
    hr, _, gxr, gdr = run(ref.rank_and_compress, x_d, down_d)
    hf, hmf, gxf, gdf = run(fused.rank_and_compress, x_d, down_d)
    with torch.no_grad():
        h_inf, hm_inf = fused.rank_and_compress(x_d, mask, down_d, cfg)
    for got in (hmf, hm_inf):  # None means "nothing padded", which must then be true
        assert torch.equal(got, hm64) if got is not None else bool(hm64.all())
    check("rank_and_compress fwd (inference)", h_inf, hr, h64, dtype)
    check("rank_and_compress fwd", hf, hr, h64, dtype)
    check("rank_and_compress grad x", gxf, gxr, gx64, dtype)
    check("rank_and_compress grad D", gdf, gdr, gd64, dtype)


@gpu
@pytest.mark.parametrize("case", RANKER_CASES, ids=lambda c: f"B{c[0]}T{c[1]}d{c[2]}S{c[3]}{c[5]}")
def test_maxsim_tma_kernel_parity(case):
    """The TMA MaxSim kernel (bf16; the model uses it from TMA_MIN_SPLITS splits, so these small
    cases force it) against float64, next to the pointer kernel; -inf exactly off the candidates."""
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("TMA needs Hopper or newer")
    batch, length, width, s, k, direction, weighting, padded = case
    cfg = preset_config("tiny", hidden_size=width, split_size=s, num_retrieved_splits=k, ranker_direction=direction)
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(zlib.crc32(repr(case).encode()) + 1)
    x = separated_embeddings(batch, length, width, s, dev, gen)
    mask = None
    if padded:
        mask = torch.arange(length, device=dev)[None, :] < torch.tensor([length] + [length // 2] * (batch - 1),
                                                                      device=dev)[:, None]
    xs, ms = ref.split_sequence(x.bfloat16(), mask, s)
    cand = ref.candidate_mask(ms.any(-1), direction)
    pairs = ref.candidate_mask(torch.ones_like(ms[..., 0]), direction)
    s64 = ref.maxsim_scores(xs.double(), ms, cfg.eps)
    pointer = fused.maxsim_scores(xs, ms if padded else None, cfg.eps, direction, tma=False)
    tma = fused.maxsim_scores(xs, ms if padded else None, cfg.eps, direction, tma=True)
    assert bool((tma[~pairs] == float("-inf")).all())
    check("maxsim (TMA)", tma[cand], pointer[cand], s64[cand], torch.bfloat16)


@gpu
@pytest.mark.parametrize("case", [RANKER_CASES[0], RANKER_CASES[3]], ids=["padded-S32", "S256"])
def test_rank_and_compress_under_autocast(case):
    """fp32 embeddings under bf16 autocast (the training step): the fused ranker's products run in
    bf16 as the reference's matmuls do, its output stays fp32, and its backward (custom_bwd)
    matches the reference's under the same autocast."""
    batch, length, width, s, k, direction, weighting, padded = case
    cfg = preset_config("tiny", hidden_size=width, split_size=s, num_retrieved_splits=k, ranker_direction=direction,
                        split_weighting=weighting)
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(11)
    x = separated_embeddings(batch, length, width, s, dev, gen)
    mask = None
    if padded:
        mask = torch.arange(length, device=dev)[None, :] < torch.tensor([length, length // 2][:batch], device=dev)[:, None]
    down = torch.randn(s, (k + 1) * s, generator=gen, device=dev) / s
    grad_out = None

    def run(fn, xx, dd, autocast):
        nonlocal grad_out
        xx, dd = xx.detach().requires_grad_(True), dd.detach().requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            h, _ = fn(xx, mask, dd, cfg)
        if grad_out is None:
            grad_out = torch.randn(h.shape, generator=torch.Generator(device=dev).manual_seed(7), device=dev)
        gx, gd = torch.autograd.grad((h.double() * grad_out.double()).sum(), (xx, dd))
        return h, gx, gd

    h64, gx64, gd64 = run(ref.rank_and_compress, x.double(), down.double(), False)
    hr, gxr, gdr = run(ref.rank_and_compress, x, down, True)
    hf, gxf, gdf = run(fused.rank_and_compress, x, down, True)
    assert hf.dtype == hr.dtype == torch.float32
    for name, a, b, c in (("fwd", hf, hr, h64), ("grad x", gxf, gxr, gx64), ("grad D", gdf, gdr, gd64)):
        check(f"rank_and_compress under autocast {name}", a, b, c, torch.bfloat16)


@gpu
@pytest.mark.parametrize("tma, cfg", config_cases("pointer", fused._MAXSIM_CONFIGS, False)
                         + config_cases("tma", fused._MAXSIM_TMA_CONFIGS, True))
def test_maxsim_config(tma, cfg):
    """MaxSim scores of a padded batch (2 × 12 splits of 256 × 768, bf16) on every candidate pair,
    -inf elsewhere, against float64."""
    if tma and torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("TMA kernels need Hopper or newer")
    gen = torch.Generator(device="cuda").manual_seed(3)
    length = 12 * BASE_S - 100
    x = separated_embeddings(2, length, BASE_D, BASE_S, torch.device("cuda"), gen).bfloat16()
    mask = torch.arange(length, device="cuda")[None, :] < torch.tensor([length, 5 * BASE_S + 7], device="cuda")[:, None]
    xs, ms = ref.split_sequence(x, mask, BASE_S)
    cand = ref.candidate_mask(ms.any(-1), "left")
    pairs = ref.candidate_mask(torch.ones_like(ms[..., 0]), "left")
    kernel = fused._maxsim_tma_kernel if tma else fused._maxsim_kernel
    got = pinned_run(kernel, cfg, lambda: fused.maxsim_scores(xs, ms, 1e-6, "left", tma=tma))
    assert bool((got[~pairs] == float("-inf")).all())
    check(f"maxsim {'tma' if tma else 'pointer'}", got[cand], ref.maxsim_scores(xs, ms, 1e-6)[cand],
          ref.maxsim_scores(xs.double(), ms, 1e-6)[cand], torch.bfloat16)


@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("cfg", config_cases("compress", fused._COMPRESS_CONFIGS))
def test_compress_config(cfg, dtype):
    """The compression D · window (k = 3 picks, weighted) over 2 × 6 splits, against float64."""
    torch.manual_seed(5)
    xs = torch.randn(2, 6, BASE_S, BASE_D, device="cuda")
    idx = torch.randint(0, 6, (2, 6, 3), device="cuda")
    w = torch.rand(2, 6, 3, device="cuda")
    down = torch.randn(BASE_S, 4 * BASE_S, device="cuda") / BASE_S
    got = pinned_run(fused._compress_kernel, cfg, lambda: fused.compress(xs.to(dtype), idx, w, down.to(dtype)))
    want = ref.compress(xs.to(dtype), idx, w.to(dtype), down.to(dtype))
    want64 = ref.compress(xs.to(dtype).double(), idx, w.double(), down.to(dtype).double())
    check(f"compress {dtype}", got, want, want64, dtype)
