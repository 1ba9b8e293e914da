"""Fused Triton kernels against the PyTorch reference: forward and gradients, fp32 and bf16.

Errors are measured as in the device's METHOD.md: ‖out − ref64‖ / ‖ref64‖ against the reference
run in float64 on upcast inputs. The fused result must be within ``TOL`` of it, or within 3× the
error of the same-dtype PyTorch reference (whichever is looser): the kernels must be no worse
than the reference in the same precision. Inputs are fresh random draws for every case, with
lengths not divisible by S and padded batches. GPU tests are skipped without CUDA or Triton.
"""

from __future__ import annotations

import importlib.util
import os
import zlib

import pytest
import torch

from aveyb import kernels
from aveyb.config import preset_config
from kernel_interpreter_check import random_layers

# One tile configuration per kernel (the first autotuning candidate) keeps compilation short; the
# autotuned configurations are checked by `aveyb bench` itself (fused_vs_reference) on the model it times.
os.environ.setdefault("AVEYB_AUTOTUNE", "0")
HAS_TRITON = importlib.util.find_spec("triton") is not None
gpu = pytest.mark.gpu
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
TOL = {torch.float32: 2e-4, torch.bfloat16: 2e-2}
DTYPES = [torch.float32, torch.bfloat16]


def rel(a, b) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def check(name, fused, ref_same, ref64, dtype):
    """Fused within TOL of float64, or no worse than 3x the same-dtype reference; never NaN."""
    assert torch.isfinite(fused).all(), f"{name}: non-finite values"
    e_fused, e_ref = rel(fused, ref64), rel(ref_same, ref64)
    print(f"{name:40s} {dtype!s:15s} fused {e_fused:.2e}  reference {e_ref:.2e}")
    assert e_fused <= max(TOL[dtype], 3 * e_ref), f"{name}: fused err {e_fused:.3e}, reference {e_ref:.3e}"


# ---- CPU: the dispatch contract ----------------------------------------------------------------
def test_supports_is_false_on_cpu():
    assert not kernels.supports(preset_config("tiny"), torch.device("cpu"))
    assert "CUDA" in kernels.unsupported_reason(preset_config("tiny"), torch.device("cpu"))


def test_unsupported_options_are_named(monkeypatch):
    monkeypatch.setattr(kernels, "available", lambda: True)
    cuda = torch.device("cuda")
    assert kernels.supports(preset_config("base"), cuda)
    assert "compression" in kernels.unsupported_reason(preset_config("tiny", compression=False), cuda)
    assert "split_size" in kernels.unsupported_reason(preset_config("tiny", split_size=1024), cuda)


def test_import_without_triton(monkeypatch):
    """``aveyb.kernels`` never imports triton at import time; supports() is False without it."""
    import importlib

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    assert not kernels.available()
    assert not kernels.supports(preset_config("tiny"), torch.device("cuda"))


@needs_triton
def test_tma_layout_rule():
    """TMA takes the fuser's strided view Z[:, d:], not a misaligned or transposed one."""
    from aveyb.kernels.gemm import _tma_layout_ok

    z = torch.empty(10, 4 * 128, dtype=torch.bfloat16)
    assert _tma_layout_ok(z) and _tma_layout_ok(z[:, 128:])
    assert not _tma_layout_ok(z[:, 1:])  # base not 16-byte aligned
    assert not _tma_layout_ok(z.t())  # last stride not 1
    assert not _tma_layout_ok(torch.empty(10, 12, dtype=torch.bfloat16)[:, :4])  # row stride 24 bytes


@needs_triton
def test_untuned_fallback_ignores_switches(monkeypatch):
    """Under AVEYB_AUTOTUNE=0 the single config is the smallest footprint; a False switch (FLAT)
    must not make a config count as size zero."""
    import triton

    from aveyb.kernels import gemm
    from aveyb.kernels.tuning import tunable

    monkeypatch.setenv("AVEYB_AUTOTUNE", "0")
    big_nested = triton.Config({"BLOCK_M": 128, "BLOCK_N": 256, "FLAT": False}, num_stages=4)
    small = triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "FLAT": True}, num_stages=2)
    assert tunable([big_nested, small]) == [small]
    (chosen,) = tunable(gemm._TMA_CONFIGS)
    assert chosen.kwargs["BLOCK_N"] == 128 and chosen.kwargs["FLAT"]  # not the nested 128x256 one


@needs_triton
@pytest.mark.parametrize("var, getter, default, bad, choices", [
    ("AVEYB_ENRICHER", "enricher_mode", "ws", "cutlass", "auto, ws, tma-tanh, tma, cublas"),
    ("AVEYB_FUSER", "fuser_mode", "tma", "cublas", "tma, ws"),
    ("AVEYB_TRAIN_LAYER", "train_layer_mode", "auto", "inductor", "auto, triton, compile"),
])
def test_gemm_mode_is_validated(var, getter, default, bad, choices, monkeypatch):
    """AVEYB_ENRICHER defaults to auto (ws for short inputs), AVEYB_FUSER to tma, AVEYB_TRAIN_LAYER
    to auto; an unknown value is an error naming the variable and the choices."""
    from aveyb.kernels import gemm, layers

    module = layers if getter == "train_layer_mode" else gemm
    monkeypatch.delenv(var, raising=False)
    assert getattr(module, getter)() == default
    monkeypatch.setenv(var, bad)
    with pytest.raises(ValueError, match=f"{var}='{bad}'.*{choices}"):
        getattr(module, getter)()


@needs_triton
def test_enricher_auto_mode_by_rows(monkeypatch):
    """``auto`` runs the Gluon kernel for short inputs and the Triton TMA kernel from WS_MAX_ROWS
    rows on; an explicit AVEYB_ENRICHER wins at every length."""
    from aveyb.kernels import gemm

    monkeypatch.delenv("AVEYB_ENRICHER", raising=False)
    limit = gemm.WS_MAX_ROWS
    assert [gemm.enricher_mode(r) for r in (None, 1, limit - 1, limit, 8 * 131072)] == \
        ["ws", "ws", "ws", "tma-tanh", "tma-tanh"]
    for mode in ("ws", "tma-tanh", "tma", "cublas"):
        monkeypatch.setenv("AVEYB_ENRICHER", mode)
        assert gemm.enricher_mode(1) == gemm.enricher_mode(8 * 131072) == mode


@needs_triton
@pytest.mark.parametrize("inference", [False, True], ids=["parameters", "inference-tensors"])
def test_scaled_enricher_weight_follows_changes(inference):
    """W_e · diag(g) is cached per layer and recomputed after an in-place change, also for a layer
    built under torch.inference_mode (its tensors have no version counter; reading one raised)."""
    from aveyb.kernels import gemm
    from aveyb.model.configuration_aveyb import preset_config
    from aveyb.model.layers import AveyBLayer

    with torch.inference_mode(inference):
        layer = AveyBLayer(preset_config("tiny"), "static")
        w, g = layer.enricher.weight, layer.norm.weight
        first = gemm.scaled_enricher_weight(layer, torch.float32)
        assert torch.equal(first, w * g[None, :])
        with torch.no_grad():
            g.mul_(2.0)
        second = gemm.scaled_enricher_weight(layer, torch.float32)
    assert torch.equal(second, w * g[None, :]) and not torch.equal(second, first)


@needs_triton
@pytest.mark.parametrize("optimizer", ["adamw_fused", "adamw_foreach", "sgd"])
def test_scaled_enricher_weight_follows_optimizer_steps(optimizer):
    """An optimizer step empties the cache. The fused AdamW step does not bump the version counter,
    so an evaluation between training steps read the first evaluation's enricher weight (the
    in-loop validation loss of a CUDA pretraining run rose while the model improved)."""
    from aveyb.kernels import gemm
    from aveyb.model.configuration_aveyb import preset_config
    from aveyb.model.layers import AveyBLayer

    layer = AveyBLayer(preset_config("tiny"), "static")
    params = list(layer.parameters())
    opt = {"adamw_fused": lambda: torch.optim.AdamW(params, lr=0.1, fused=True),
           "adamw_foreach": lambda: torch.optim.AdamW(params, lr=0.1, foreach=True),
           "sgd": lambda: torch.optim.SGD(params, lr=0.1)}[optimizer]()
    first = gemm.scaled_enricher_weight(layer, torch.float32)
    (layer.enricher.weight.sum() + layer.norm.weight.sum()).backward()
    opt.step()
    w, g = layer.enricher.weight, layer.norm.weight
    second = gemm.scaled_enricher_weight(layer, torch.float32)
    assert not torch.equal(second, first)
    assert torch.allclose(second, (w * g[None, :]).detach())


@pytest.mark.parametrize("op", [torch.mm, torch.bmm], ids=["mm", "bmm"])
def test_product_fp32_result_dtype(op):
    """The weight-gradient products: 16-bit inputs give an fp32 result (on CPU the upcast product),
    fp64 stays fp64, and the values are the plain product's."""
    from aveyb.kernels.tuning import product_fp32

    gen = torch.Generator().manual_seed(0)
    shape_a, shape_b = ((5, 7), (7, 3)) if op is torch.mm else ((2, 5, 7), (2, 7, 3))
    a, b = torch.randn(shape_a, generator=gen), torch.randn(shape_b, generator=gen)
    got = product_fp32(op, a.bfloat16(), b.bfloat16())
    assert got.dtype == torch.float32
    assert torch.equal(got, op(a.bfloat16(), b.bfloat16()).float())
    assert product_fp32(op, a.double(), b.double()).dtype == torch.float64


@needs_triton
def test_maxsim_tma_switch(monkeypatch):
    """The TMA MaxSim kernel is off on CPU and below TMA_MIN_SPLITS; AVEYB_MAXSIM_TMA takes 0 or 1 only."""
    from aveyb.kernels import ranker

    xs = torch.zeros(2, 4, 16, 32, dtype=torch.bfloat16)
    monkeypatch.delenv("AVEYB_MAXSIM_TMA", raising=False)
    assert not ranker._maxsim_tma_ok(xs)  # CPU
    monkeypatch.setenv("AVEYB_MAXSIM_TMA", "yes")
    with pytest.raises(ValueError, match="AVEYB_MAXSIM_TMA='yes'.*0, 1"):
        ranker._maxsim_tma_ok(xs)


@needs_triton
@pytest.mark.parametrize("kind, has_mask", [(0, False), (0, True), (1, False)], ids=["enrich", "enrich-mask", "fuse"])
def test_gluon_gemm_builds_for_hopper(kind, has_mask):
    """The warp-specialised Gluon GEMM compiles for sm_90 on a CPU machine (Triton needs no GPU to
    compile): warp-specialised (register reallocation between partitions), wgmma, and for the
    enricher the hardware tanh. Catches Gluon API drift without a GPU."""
    pytest.importorskip("triton.experimental.gluon")  # Tritons without Gluon fall back
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon._runtime import GluonASTSource

    from aveyb.kernels import gluon_gemm

    def desc(block):
        return f"tensordesc<bf16[{block[0]},{block[1]}],{gl.NVMMASharedLayout.get_default_for(block, gl.bfloat16)!r}>"

    bm, bn, bk = gluon_gemm.BLOCK_M, gluon_gemm.BLOCK_N, gluon_gemm.BLOCK_K
    signature = {"a_desc": desc([bm, bk]), "w_desc": desc([bn, bk]), "z_desc": desc([bm, bn]), "b_ptr": "*bf16",
                 "ss_ptr": "*fp32", "mask_ptr": "*u8", "x_ptr": "*bf16", "alpha_ptr": "*bf16", "R": "i32",
                 "N": "i32", "K": "i32", "NT": "i32", "SS_STRIDE": "i32", "eps": "fp32"}
    constants = {"KIND": kind, "HAS_MASK": has_mask, "NUM_SMS": 132, "NS": gluon_gemm.STAGES, "GROUP": gluon_gemm.GROUP_M}
    signature.update({name: "constexpr" for name in constants})
    try:
        compiled = triton.compile(GluonASTSource(gluon_gemm._gemm_ws_kernel, signature, constants),
                                  target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "maxnreg": 168})
    except RuntimeError as err:  # no ptxas for this Triton build: nothing to check here
        if "ptxas" in str(err).lower() and "not found" in str(err).lower():
            pytest.skip(str(err))
        raise
    ptx = compiled.asm["ptx"]
    assert "setmaxnreg" in ptx and "wgmma.mma_async" in ptx
    assert ("tanh.approx.f32" in ptx) == (kind == 0)
    assert compiled.metadata.shared <= 232448  # fits an H100's shared memory per block


@needs_triton
def test_gluon_descriptor_layouts_are_cached():
    """The TMA descriptors' shared-memory layouts are built once per (block, dtype) and are the
    layouts Gluon would build for them."""
    pytest.importorskip("triton.experimental.gluon")
    from triton.experimental.gluon import language as gl

    from aveyb.kernels import gluon_gemm

    x = torch.empty(300, 256, dtype=torch.bfloat16)
    a, b = gluon_gemm._desc(x, [128, 64]), gluon_gemm._desc(x[:, 64:], [128, 64])
    assert a.layout is b.layout
    assert a.layout == gl.NVMMASharedLayout.get_default_for([128, 64], gl.bfloat16)
    assert gluon_gemm._desc(x.half(), [128, 64]).layout == gl.NVMMASharedLayout.get_default_for([128, 64], gl.float16)


@needs_triton
def test_gluon_fallback_is_quiet_unless_asked(monkeypatch):
    """Where a Gluon kernel cannot be imported, the caller falls back; only an explicit request warns."""
    import warnings

    from aveyb.kernels import gemm

    def broken():
        raise ImportError("no gluon here")

    monkeypatch.setattr(gemm, "_TMA_BROKEN", set())
    monkeypatch.delenv("AVEYB_FUSER", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gemm._gluon("fuser", "AVEYB_FUSER", broken) is None
    assert "fuser" in gemm._TMA_BROKEN
    assert gemm._gluon("fuser", "AVEYB_FUSER", lambda: 3) is None  # stays off once broken
    monkeypatch.setenv("AVEYB_ENRICHER", "ws")
    with pytest.warns(RuntimeWarning, match="warp-specialised enricher is unavailable"):
        assert gemm._gluon("enricher", "AVEYB_ENRICHER", broken) is None
    assert gemm._gluon("other", "AVEYB_ENRICHER", lambda: 3) == 3


@needs_triton
def test_auto_train_layer_picks_by_rows(monkeypatch):
    """AVEYB_TRAIN_LAYER=auto: the hand-written layer from AUTO_TRAIN_MIN_ELEMENTS elements, the compiled one
    below; the explicit modes ignore the size; a model under torch.compile traces the reference."""
    from aveyb.kernels import layers

    monkeypatch.delenv("AVEYB_TRAIN_LAYER", raising=False)
    limit = layers.AUTO_TRAIN_MIN_ELEMENTS
    assert layers._train_with_kernels(limit) and not layers._train_with_kernels(limit - 1)
    monkeypatch.setenv("AVEYB_TRAIN_LAYER", "triton")
    assert layers._train_with_kernels(1)
    monkeypatch.setenv("AVEYB_TRAIN_LAYER", "compile")
    assert not layers._train_with_kernels(10 * limit)
    monkeypatch.setenv("AVEYB_TRAIN_LAYER", "triton")
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not layers._train_with_kernels(10 * limit)  # inside torch.compile(model): the reference layer


def test_compile_dynamic_is_validated(monkeypatch):
    """AVEYB_COMPILE_DYNAMIC accepts auto, 1, 0 and names itself otherwise."""
    from aveyb.kernels import layers

    monkeypatch.setenv("AVEYB_COMPILE_DYNAMIC", "yes")
    with pytest.raises(ValueError, match="AVEYB_COMPILE_DYNAMIC='yes'.*auto, 1, 0"):
        layers._compiled(layers._reference_layer)
    monkeypatch.setenv("AVEYB_COMPILE_DYNAMIC", "0")
    assert layers._compiled(layers._reference_layer) is not layers._reference_layer


@needs_triton
@needs_triton
@pytest.mark.parametrize("k", [0, 1, 3])
def test_compress_backward_matches_autograd(k):
    """The written-out compression gradient (x, weights, D) equals autograd through the reference
    ``compress``, in fp32 and in float64; picks repeat a split and one slot is empty (weight 0)."""
    from aveyb.kernels import ranker as fused
    from aveyb.model import ranker as ref

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
    from aveyb.kernels import ranker as fused
    from aveyb.model import ranker as ref

    seen = {}

    def maxsim(xs, ms, eps, direction):
        seen["maxsim"] = xs
        return ref.maxsim_scores(xs.float(), ms, eps)

    def compress(xs, idx, weights, down_proj, xs_dot=None):
        seen["compress"] = xs_dot
        return ref.compress(xs, idx, weights, down_proj)  # autocast is on here, as in the reference

    monkeypatch.setattr(fused, "maxsim_scores", maxsim)
    monkeypatch.setattr(fused, "compress", compress)
    cfg = preset_config("tiny", hidden_size=32, split_size=16, top_k=2)
    x = _separated_embeddings(2, 80, 32, 16, torch.device("cpu"), torch.Generator().manual_seed(0))
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


# ---- GPU parity ----------------------------------------------------------------------------------
def _separated_embeddings(batch, length, width, split_size, device, gen):
    """Random embeddings whose MaxSim scores are well apart (each split has its own topic), so the
    top-k selection is the same in every precision; plus per-token noise."""
    n = -(-length // split_size)
    topics = torch.randn(batch, n, 1, width, generator=gen, device=device) * torch.rand(
        batch, n, 1, 1, generator=gen, device=device).mul(3)
    x = torch.randn(batch, n, split_size, width, generator=gen, device=device) + topics
    return x.reshape(batch, n * split_size, width)[:, :length].contiguous()


RANKER_CASES = [  # (batch, length, d, S, k, direction, weighting, padded)
    (2, 200, 64, 32, 2, "left", "min", True),
    (3, 129, 96, 16, 3, "both", "max", True),
    (2, 256, 128, 64, 3, "left", "none", False),
    (1, 1000, 64, 256, 3, "left", "min", True),
]


@gpu
@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", RANKER_CASES, ids=lambda c: f"B{c[0]}T{c[1]}d{c[2]}S{c[3]}k{c[4]}{c[5]}{c[6]}")
def test_rank_and_compress_parity(case, dtype):
    from aveyb.kernels import ranker as fused
    from aveyb.model import ranker as ref

    batch, length, width, s, k, direction, weighting, padded = case
    cfg = preset_config("tiny", hidden_size=width, split_size=s, top_k=k, ranker_direction=direction,
                        split_weighting=weighting)
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(zlib.crc32(repr(case).encode()))
    x = _separated_embeddings(batch, length, width, s, dev, gen)
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
@needs_triton
@pytest.mark.parametrize("case", RANKER_CASES, ids=lambda c: f"B{c[0]}T{c[1]}d{c[2]}S{c[3]}{c[5]}")
def test_maxsim_tma_kernel_parity(case):
    """The TMA MaxSim kernel (bf16; the model uses it from TMA_MIN_SPLITS splits, so these small
    cases force it) against float64, next to the pointer kernel; -inf exactly off the candidates."""
    from aveyb.kernels import ranker as fused
    from aveyb.model import ranker as ref

    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("TMA needs Hopper or newer")
    batch, length, width, s, k, direction, weighting, padded = case
    cfg = preset_config("tiny", hidden_size=width, split_size=s, top_k=k, ranker_direction=direction)
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(zlib.crc32(repr(case).encode()) + 1)
    x = _separated_embeddings(batch, length, width, s, dev, gen)
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
@needs_triton
@pytest.mark.parametrize("case", [RANKER_CASES[0], RANKER_CASES[3]], ids=["padded-S32", "S256"])
def test_rank_and_compress_under_autocast(case):
    """fp32 embeddings under bf16 autocast (the training step): the fused ranker's products run in
    bf16 as the reference's matmuls do, its output stays fp32, and its backward (custom_bwd)
    matches the reference's under the same autocast."""
    from aveyb.kernels import ranker as fused
    from aveyb.model import ranker as ref

    batch, length, width, s, k, direction, weighting, padded = case
    cfg = preset_config("tiny", hidden_size=width, split_size=s, top_k=k, ranker_direction=direction,
                        split_weighting=weighting)
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(11)
    x = _separated_embeddings(batch, length, width, s, dev, gen)
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


LAYER_CASES = [  # (kind, norm, act, M, S, d, padded)
    ("static", "sum", "gelu", 5, 64, 64, True),
    ("static", "sum", "gelu", 3, 256, 128, False),
    ("dynamic", "sum", "gelu", 5, 64, 64, True),
    ("dynamic", "sum", "gelu", 3, 256, 96, True),
    ("dynamic", "softmax", "gelu_tanh", 4, 48, 64, True),
    ("dynamic", "none", "relu", 4, 32, 64, False),
    ("dynamic", "signed_sum", "silu", 4, 32, 64, True),
    ("coupled", "sum", "gelu", 4, 64, 64, True),
    ("coupled", "softmax", "gelu", 3, 40, 32, False),
    ("dynamic", "sum", "gelu", 3, 64, 256, True),  # d a multiple of 128: the TMA GEMMs in bf16
]


def _layer_inputs(case, dev):
    kind, norm, act, m, s, width, padded = case
    cfg = preset_config("tiny", hidden_size=width, split_size=s, dynamic_norm=norm, hidden_act=act)
    torch.manual_seed(zlib.crc32(repr(case).encode()))
    x = torch.randn(m, s, width, device=dev)
    mask = None
    if padded:
        mask = torch.rand(m, s, device=dev) > 0.3
        mask[0] = True
        mask[-1] = False  # a split with no real row (the tail of a padded batch)
    return cfg, x, mask


def _three_layers(layers, x, mask, dtype):
    """``layers`` applied in turn in ``dtype``: (the ``dtype`` copies, fused ``run_layers`` output, same-dtype
    reference output, float64 reference output). The second and third fused layers take their RMSNorm
    statistics from the previous fuser."""
    import copy

    from aveyb.kernels.layers import run_layers

    ld = [copy.deepcopy(lay).to(dtype) for lay in layers]
    chain64, chainr = x.double(), x.to(dtype)
    for a, b in zip(layers, ld):
        chain64, chainr = copy.deepcopy(a).double()(chain64, mask), b(chainr, mask)
    return ld, list(run_layers(ld, x.to(dtype), mask))[-1], chainr, chain64


def layer_output_and_grads(layer, x, mask, grad_out, fn=None, amp=False):
    """(out, dx, d every parameter) of ``fn(layer, x, mask)`` (default: the layer itself) for the
    loss Σ out · grad_out in float64, under bf16 autocast if ``amp``."""
    x = x.detach().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        out = layer(x, mask) if fn is None else fn(layer, x, mask)
    grads = torch.autograd.grad((out.double() * grad_out.double()).sum(), [x] + list(layer.parameters()))
    return (out, *grads)


@gpu
@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", LAYER_CASES, ids=lambda c: "-".join(map(str, c)))
def test_layer_forward_parity(case, dtype):
    """Inference path: enricher GEMM (RMSNorm folded, fused epilogue), mix kernel, fuser GEMM
    (residual and next-layer row statistics in the epilogue), for one layer and for three chained
    layers (the second and third take their RMSNorm statistics from the previous fuser)."""
    import copy

    from aveyb.kernels.layers import layer_forward

    dev = torch.device("cuda")
    cfg, x, mask = _layer_inputs(case, dev)
    layers = random_layers(cfg, case[0], 3, dev)
    with torch.no_grad():
        ld, chainf, chainr, chain64 = _three_layers(layers, x, mask, dtype)
        out64 = copy.deepcopy(layers[0]).double()(x.double(), mask)
        outr = ld[0](x.to(dtype), mask)
        outf = layer_forward(ld[0], x.to(dtype), mask)
    name = "/".join(case[:3])
    check(f"layer {name} fwd", outf, outr, out64, dtype)
    check(f"3 layers {name} fwd", chainf, chainr, chain64, dtype)


@gpu
@needs_triton
@pytest.mark.parametrize("env, mode", [("AVEYB_ENRICHER", m) for m in ("tma", "tma-tanh", "cublas", "ws")]
                         + [("AVEYB_FUSER", m) for m in ("ws", "tma")])
@pytest.mark.parametrize("case", [LAYER_CASES[1], LAYER_CASES[-1]], ids=["static-d128", "dynamic-d256-padded"])
def test_enricher_modes_parity(case, env, mode, monkeypatch):
    """Every AVEYB_ENRICHER mode of the 16-bit Hopper enricher and every AVEYB_FUSER mode of the
    fuser, through three chained bf16 layers."""
    from aveyb.kernels import gemm

    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("the enricher modes are Hopper paths")
    monkeypatch.setenv(env, mode)
    assert (gemm.enricher_mode() if env == "AVEYB_ENRICHER" else gemm.fuser_mode()) == mode
    dev, dtype = torch.device("cuda"), torch.bfloat16
    cfg, x, mask = _layer_inputs(case, dev)
    layers = random_layers(cfg, case[0], 3, dev)
    with torch.no_grad():
        _, chainf, chainr, chain64 = _three_layers(layers, x, mask, dtype)
    check(f"3 layers {case[0]} {env}={mode}", chainf, chainr, chain64, dtype)


TRAIN_PRECISIONS = {"fp32": (torch.float32, False), "bf16": (torch.bfloat16, False), "autocast": (torch.float32, True)}


@gpu
@needs_triton
@pytest.mark.parametrize("precision", list(TRAIN_PRECISIONS))
@pytest.mark.parametrize("case", LAYER_CASES, ids=lambda c: "-".join(map(str, c)))
def test_layer_training_path(case, precision, monkeypatch):
    """With autograd on, the hand-written training layer (AVEYB_TRAIN_LAYER=triton): output and the
    gradients of x and every parameter against float64 autograd through the reference; in fp32,
    bf16, and fp32 weights under bf16 autocast (the pretraining recipe: the reference there runs under
    the same autocast)."""
    import copy

    from aveyb.kernels.layers import layer_forward

    monkeypatch.setenv("AVEYB_TRAIN_LAYER", "triton")
    dev = torch.device("cuda")
    dtype, autocast = TRAIN_PRECISIONS[precision]
    cfg, x, mask = _layer_inputs(case, dev)
    (layer,) = random_layers(cfg, case[0], 1, dev)
    grad_out = torch.randn(x.shape, device=dev)

    out64, *g64 = layer_output_and_grads(copy.deepcopy(layer).double(), x.double(), mask, grad_out)
    ld = copy.deepcopy(layer).to(dtype)
    outr, *gr = layer_output_and_grads(ld, x.to(dtype), mask, grad_out, amp=autocast)
    outf, *gf = layer_output_and_grads(ld, x.to(dtype), mask, grad_out, layer_forward, autocast)
    assert outf.dtype == outr.dtype
    tol_dtype = torch.bfloat16 if autocast else dtype
    name = "/".join(map(str, case[:3])) + f" {precision}"
    check(f"train {name} fwd", outf, outr, out64, tol_dtype)
    names = ["x"] + [n for n, _ in layer.named_parameters()]
    for pname, a, b, c in zip(names, gf, gr, g64):
        assert a.dtype == b.dtype, pname
        check(f"train {name} grad {pname}", a, b, c, tol_dtype)


@gpu
@needs_triton
@pytest.mark.parametrize("case", [LAYER_CASES[0], LAYER_CASES[3], LAYER_CASES[4]], ids=["static", "dynamic", "softmax"])
def test_layer_training_path_compiled(case, monkeypatch):
    """AVEYB_TRAIN_LAYER=compile: the reference layer under torch.compile, same outputs and gradients."""
    import copy

    from aveyb.kernels.layers import layer_forward

    monkeypatch.setenv("AVEYB_TRAIN_LAYER", "compile")
    dev, dtype = torch.device("cuda"), torch.bfloat16
    cfg, x, mask = _layer_inputs(case, dev)
    (layer,) = random_layers(cfg, case[0], 1, dev)
    grad_out = torch.randn(x.shape, device=dev)

    out64, *g64 = layer_output_and_grads(copy.deepcopy(layer).double(), x.double(), mask, grad_out)
    ld = copy.deepcopy(layer).to(dtype)
    outr, *gr = layer_output_and_grads(ld, x.to(dtype), mask, grad_out)
    outf, *gf = layer_output_and_grads(ld, x.to(dtype), mask, grad_out, layer_forward)
    check(f"layer {case[0]} fwd (compiled)", outf, outr, out64, dtype)
    names = ["x"] + [n for n, _ in layer.named_parameters()]
    for name, a, b, c in zip(names, gf, gr, g64):
        check(f"layer {case[0]} grad {name} (compiled)", a, b, c, dtype)


@gpu
@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
def test_model_fused_matches_reference_with_padding(dtype):
    """The whole encoder through the dispatch: a padded batch with T not divisible by S."""
    from aveyb.architectures import build_masked_lm

    torch.manual_seed(3)
    dev = torch.device("cuda")
    ref_model = build_masked_lm("avey-b", "tiny", 211, hidden_size=64, split_size=32, top_k=2,
                                kernel_backend="torch").to(dev)
    fused_model = build_masked_lm("avey-b", "tiny", 211, hidden_size=64, split_size=32, top_k=2,
                                  kernel_backend="triton").to(dev)
    fused_model.load_state_dict(ref_model.state_dict())
    ids = torch.randint(0, 211, (3, 150), device=dev)
    mask = torch.ones(3, 150, dtype=torch.long, device=dev)
    mask[1, 100:] = 0
    mask[2, 37:] = 0
    with torch.no_grad():
        out64 = ref_model.double().model(input_ids=ids, attention_mask=mask).last_hidden_state
        outr = ref_model.to(dtype).model(input_ids=ids, attention_mask=mask).last_hidden_state
        outf = fused_model.to(dtype).model(input_ids=ids, attention_mask=mask).last_hidden_state
        # A sequence alone equals itself inside the padded batch (SPEC 8).
        alone = fused_model.model(input_ids=ids[2:3, :37]).last_hidden_state
    check("model fwd (padded batch)", outf, outr, out64, dtype)
    assert rel(alone, outf[2:3, :37]) < TOL[dtype]


@gpu
@needs_triton
def test_model_built_under_inference_mode_runs_fused():
    """A model created and run under torch.inference_mode (its parameters inference tensors, with no
    version counter) takes the fused path (d = 128: the TMA / Gluon GEMMs on Hopper) and matches the
    reference path with the same weights."""
    from aveyb.architectures import build_masked_lm

    torch.manual_seed(4)
    dev, dtype = torch.device("cuda"), torch.bfloat16
    ids = torch.randint(0, 211, (2, 300), device=dev)
    with torch.inference_mode():
        ref_model = build_masked_lm("avey-b", "tiny", 211, hidden_size=128, split_size=32, top_k=2,
                                    kernel_backend="torch").to(dev)
        fused_model = build_masked_lm("avey-b", "tiny", 211, hidden_size=128, split_size=32, top_k=2,
                                      kernel_backend="triton").to(dev)
        fused_model.load_state_dict(ref_model.state_dict())
        out64 = ref_model.double().model(input_ids=ids).last_hidden_state
        outr = ref_model.to(dtype).model(input_ids=ids).last_hidden_state
        outf = fused_model.to(dtype).model(input_ids=ids).last_hidden_state
    assert next(fused_model.parameters()).is_inference()
    check("model fwd (built under inference_mode)", outf, outr, out64, dtype)


@gpu
@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("rows,vocab", [(333, 50368), (64, 1000)], ids=["V50368", "V1000"])
def test_cross_entropy_parity(rows, vocab, dtype):
    """The masked-LM loss kernel: loss and logits gradient, about a third of the rows ignored."""
    from aveyb.kernels import loss

    gen = torch.Generator(device="cuda").manual_seed(rows + vocab)
    logits = torch.randn(rows, vocab, generator=gen, device="cuda") * 3
    labels = torch.randint(0, vocab, (rows,), generator=gen, device="cuda")
    labels[torch.rand(rows, generator=gen, device="cuda") < 0.3] = -100
    labels[0], labels[1] = vocab - 1, 0  # both ends of the vocabulary
    results = []
    for x, fn in ((logits.double(), None), (logits.to(dtype), None), (logits.to(dtype), loss.cross_entropy)):
        x = x.detach().requires_grad_(True)
        out = (fn or (lambda lg, lb: torch.nn.functional.cross_entropy(lg.float() if lg.dtype != torch.float64 else lg,
                                                                        lb, ignore_index=-100)))(x, labels)
        (grad,) = torch.autograd.grad(out * 2.5, x)
        results.append((out.detach().reshape(1), grad))
    (want64, g64), (want, g), (got, g_got) = results
    assert g_got.dtype == dtype
    assert bool((g_got[labels == -100] == 0).all())
    check("cross-entropy loss", got, want, want64, dtype)
    check("cross-entropy grad", g_got, g, g64, dtype)


@gpu
@needs_triton
def test_masked_lm_loss_uses_kernel_and_matches():
    """AveyBForMaskedLM's loss through the kernel equals the reference's, sparse and dense prediction."""
    from aveyb.architectures import build_masked_lm

    torch.manual_seed(4)
    dev = torch.device("cuda")
    ids = torch.randint(0, 211, (2, 90), device=dev)
    labels = torch.where(torch.rand(2, 90, device=dev) < 0.3, ids, torch.full_like(ids, -100))
    for sparse in (False, True):
        losses = []
        for backend in ("torch", "triton"):
            torch.manual_seed(5)
            model = build_masked_lm("avey-b", "tiny", 211, hidden_size=64, split_size=32, top_k=2,
                                    kernel_backend=backend, sparse_prediction=sparse).to(dev)
            out = model(input_ids=ids, labels=labels)
            out.loss.backward()
            losses.append((out.loss.detach(), model.model.embed.weight.grad))
        (l_ref, g_ref), (l_f, g_f) = losses
        assert rel(l_f, l_ref) < 1e-4 and rel(g_f, g_ref) < 1e-3, (sparse, float(l_f), float(l_ref))


def test_graphed_encoder_needs_cuda():
    from aveyb.architectures import build_masked_lm
    from aveyb.kernels.graphs import GraphedEncoder

    model = build_masked_lm("avey-b", "tiny", 97)
    with pytest.raises(ValueError, match="CUDA"):
        GraphedEncoder(model)


@gpu
@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
def test_graphed_encoder_matches_eager(dtype):
    """CUDA-graph replay equals the eager fused forward, for new inputs of a captured shape, padded
    or not, and for a second shape; bad ids are still rejected before any replay."""
    from aveyb.architectures import build_masked_lm
    from aveyb.kernels.graphs import GraphedEncoder

    torch.manual_seed(5)
    dev = torch.device("cuda")
    model = build_masked_lm("avey-b", "tiny", 211, hidden_size=128, split_size=32, top_k=2,
                            kernel_backend="triton").to(dev, dtype).eval()
    encoder = GraphedEncoder(model)
    for batch, length, padded in ((2, 96, False), (3, 150, True), (2, 96, False)):
        for _ in range(2):  # the second call replays with new inputs copied into the captured buffers
            ids = torch.randint(0, 211, (batch, length), device=dev)
            mask = None
            if padded:
                mask = torch.ones(batch, length, dtype=torch.long, device=dev)
                mask[1, 100:] = 0
            with torch.no_grad():
                eager = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
            graphed = encoder(ids, mask)
            assert rel(graphed, eager) < 1e-6, (batch, length, padded)
    assert len(encoder._graphs) == 2
    with pytest.raises(ValueError, match="input_ids must lie in"):
        encoder(torch.full((2, 96), 500, device=dev))
