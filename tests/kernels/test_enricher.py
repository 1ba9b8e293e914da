"""The enricher (``aveyb.kernels.enricher``, ``enricher_gluon``): Z = act(W_e · RMSNorm(X) + b_e), U
zeroed on padded rows, against ``AveyBLayer.enrich``; which kernel runs; the cached RMSNorm-scaled weight."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from parity import (
    chained_layers,
    check,
    check_inference_gemm_config,
    check_interpreted,
    check_training_layer_config,
    config_cases,
    gpu,
    interpreter,
    layer_inputs,
    random_layers,
    rel,
)

pytest.importorskip("triton")
from aveyb import kernels  # noqa: E402
from aveyb.kernels import (  # noqa: E402
    KernelOptions,  # noqa: E402
    _triton_utils,
    enricher,
    rms_norm,
)
from aveyb.kernels._triton_utils import (  # noqa: E402
    _GEMM_CONFIGS,
    _TMA_CONFIGS,
    ACT_IDS,
    ELEMENTWISE_CONFIGS,
    tensor_descriptor,
)
from aveyb.model import AveyBForMaskedLM  # noqa: E402
from aveyb.model.configuration_aveyb import AveyBConfig, preset_config  # noqa: E402
from aveyb.model.layers import AveyBLayer  # noqa: E402


# ---- which kernel runs -------------------------------------------------------------------------
def test_enricher_mode_defaults_to_the_exact_gelu():
    """By default (the exact GELU) the Triton TMA kernel runs at every length: the Gluon kernel
    computes the tanh form only."""
    limit = enricher.WS_MAX_ROWS
    assert [enricher.enricher_mode(r) for r in (None, 1, limit, 8 * 131072)] == ["tma"] * 4


def test_enricher_auto_mode_by_rows():
    """With the tanh-form GELU, ``auto`` runs the Gluon kernel for short inputs and the Triton TMA
    kernel from WS_MAX_ROWS rows on (bitwise equal outputs); an explicit mode wins at every length."""
    tanh = KernelOptions(gelu="tanh")
    limit = enricher.WS_MAX_ROWS
    assert [enricher.enricher_mode(r, tanh) for r in (None, 1, limit - 1, limit, 8 * 131072)] == \
        ["ws", "ws", "ws", "tma", "tma"]
    for mode in ("ws", "tma"):
        options = tanh.replace(enricher=mode)
        assert enricher.enricher_mode(1, options) == enricher.enricher_mode(8 * 131072, options) == mode


@pytest.mark.parametrize("has_mask", [False, True], ids=["unmasked", "masked"])
def test_gluon_enricher_builds_for_hopper(has_mask):
    """The warp-specialised Gluon enricher compiles for sm_90 on a CPU machine (Triton needs no GPU to
    compile): warp-specialised (register reallocation between partitions), wgmma and the hardware
    tanh. Catches Gluon API drift without a GPU."""
    pytest.importorskip("triton.experimental.gluon")  # Tritons without Gluon fall back
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon._runtime import GluonASTSource

    from aveyb.kernels import enricher_gluon

    def desc(block):
        return f"tensordesc<bf16[{block[0]},{block[1]}],{gl.NVMMASharedLayout.get_default_for(block, gl.bfloat16)!r}>"

    bm, bn, bk = enricher_gluon.BLOCK_M, enricher_gluon.BLOCK_N, enricher_gluon.BLOCK_K
    signature = {"a_desc": desc([bm, bk]), "w_desc": desc([bn, bk]), "z_desc": desc([bm, bn]), "b_ptr": "*bf16",
                 "ss_ptr": "*fp32", "mask_ptr": "*u8", "R": "i32", "N": "i32", "K": "i32", "NT": "i32",
                 "SS_STRIDE": "i32", "eps": "fp32"}
    constants = {"HAS_MASK": has_mask, "NUM_SMS": 132, "NS": enricher_gluon.STAGES, "GROUP": enricher_gluon.GROUP_M}
    signature.update({name: "constexpr" for name in constants})
    try:
        compiled = triton.compile(GluonASTSource(enricher_gluon._gemm_ws_kernel, signature, constants),
                                  target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "maxnreg": 168})
    except RuntimeError as err:  # no ptxas for this Triton build: nothing to check here
        if "ptxas" in str(err).lower() and "not found" in str(err).lower():
            pytest.skip(str(err))
        raise
    ptx = compiled.asm["ptx"]
    assert "setmaxnreg" in ptx and "wgmma.mma_async" in ptx
    assert "tanh.approx.f32" in ptx
    assert compiled.metadata.shared <= 232448  # fits an H100's shared memory per block


def test_gluon_descriptor_layouts_are_cached():
    """The TMA descriptors' shared-memory layouts are built once per (block, dtype) and are the
    layouts Gluon would build for them."""
    pytest.importorskip("triton.experimental.gluon")
    from triton.experimental.gluon import language as gl

    from aveyb.kernels import enricher_gluon

    x = torch.empty(300, 256, dtype=torch.bfloat16)
    a, b = enricher_gluon._desc(x, [128, 64]), enricher_gluon._desc(x[:, 64:], [128, 64])
    assert a.layout is b.layout
    assert a.layout == gl.NVMMASharedLayout.get_default_for([128, 64], gl.bfloat16)
    assert enricher_gluon._desc(x.half(), [128, 64]).layout == gl.NVMMASharedLayout.get_default_for([128, 64], gl.float16)


def test_gluon_fallback_is_quiet_unless_asked(monkeypatch):
    """Where the Gluon kernel cannot be imported, the enricher falls back to the Triton TMA kernel and
    stays there; only an explicit enricher="ws" warns."""
    import warnings

    def broken():
        raise ImportError("no gluon here")

    monkeypatch.setattr(_triton_utils, "BROKEN_BUILDS", set())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert enricher._gluon(broken) is None
    assert "enricher" in _triton_utils.BROKEN_BUILDS
    assert enricher._gluon(lambda: 3) is None  # stays off once broken
    monkeypatch.setattr(_triton_utils, "BROKEN_BUILDS", set())
    assert enricher._gluon(lambda: 3) == 3
    with pytest.warns(RuntimeWarning, match="warp-specialised enricher is unavailable"):
        assert enricher._gluon(broken, warn=True) is None


# ---- the RMSNorm-scaled weight -----------------------------------------------------------------
@pytest.mark.parametrize("inference", [False, True], ids=["parameters", "inference-tensors"])
def test_scaled_enricher_weight_follows_changes(inference):
    """W_e · diag(g) is cached per weight and recomputed after an in-place change, also for a layer
    built under torch.inference_mode (its tensors have no version counter; reading one raised)."""
    with torch.inference_mode(inference):
        layer = AveyBLayer(preset_config("tiny"), "static")
        w, g = layer.enricher.weight, layer.norm.weight
        first = enricher.scaled_enricher_weight(layer.enricher.weight, layer.norm.weight, torch.float32)
        assert torch.equal(first, w * g[None, :])
        with torch.no_grad():
            g.mul_(2.0)
        second = enricher.scaled_enricher_weight(layer.enricher.weight, layer.norm.weight, torch.float32)
    assert torch.equal(second, w * g[None, :]) and not torch.equal(second, first)


@pytest.mark.parametrize("optimizer", ["adamw_fused", "adamw_foreach", "sgd"])
def test_scaled_enricher_weight_follows_optimizer_steps(optimizer):
    """An optimizer step empties the cache. The fused AdamW step does not bump the version counter,
    so an evaluation between training steps read the first evaluation's enricher weight (the
    in-loop validation loss of a CUDA pretraining run rose while the model improved)."""
    layer = AveyBLayer(preset_config("tiny"), "static")
    params = list(layer.parameters())
    opt = {"adamw_fused": lambda: torch.optim.AdamW(params, lr=0.1, fused=True),
           "adamw_foreach": lambda: torch.optim.AdamW(params, lr=0.1, foreach=True),
           "sgd": lambda: torch.optim.SGD(params, lr=0.1)}[optimizer]()
    first = enricher.scaled_enricher_weight(layer.enricher.weight, layer.norm.weight, torch.float32)
    (layer.enricher.weight.sum() + layer.norm.weight.sum()).backward()
    opt.step()
    w, g = layer.enricher.weight, layer.norm.weight
    second = enricher.scaled_enricher_weight(layer.enricher.weight, layer.norm.weight, torch.float32)
    assert not torch.equal(second, first)
    assert torch.allclose(second, (w * g[None, :]).detach())


# ---- Triton's interpreter (CPU, float32) ---------------------------------------------------------
def _enricher_inputs(rows=200, width=128, expansion=4):
    x = torch.randn(rows, width)
    weight = torch.randn(expansion * width, width) / width ** 0.5
    bias = torch.randn(expansion * width) * 0.1
    mask = torch.rand(rows) > 0.2
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    return x, weight, bias, mask, normed


@interpreter
@pytest.mark.parametrize("act", ["silu", "gelu"])
def test_enricher_tma_interpreted(act):
    """The persistent TMA enricher, 3 programs over 200 rows: RMSNorm fold (row statistics), bias,
    activation (the exact GELU by default), U masking. The interpreter cannot run the hardware tanh
    of ``gelu="tanh"`` (the GPU tests check that)."""
    x, weight, bias, mask, normed = _enricher_inputs()
    rows, width = x.shape
    stats = rms_norm.row_stats(x)
    z = torch.empty(rows, weight.shape[0])
    enricher._enricher_tma_kernel[lambda meta: (3,)](
        tensor_descriptor(x), tensor_descriptor(weight), tensor_descriptor(z), bias, stats.parts, mask.view(torch.uint8),
        rows, weight.shape[0], width, stats.count, stats.parts.shape[1], 256, 1e-6,
        HAS_MASK=True, ACT=ACT_IDS[act], NUM_SMS=3)
    z_ref = {"silu": F.silu, "gelu": F.gelu}[act](normed @ weight.T + bias)
    z_ref[:, :width] *= mask[:, None]
    check_interpreted("TMA enricher", rel(z, z_ref))


# ---- GPU ---------------------------------------------------------------------------------------
ENRICHER_CASES = [("static", "sum", "gelu", 3, 256, 128, False), ("dynamic", "sum", "gelu", 3, 64, 256, True)]


@gpu
@pytest.mark.parametrize("mode", ["tma", "tma-tanh", "ws"])
@pytest.mark.parametrize("case", ENRICHER_CASES, ids=["static-d128", "dynamic-d256-padded"])
def test_enricher_modes_parity(case, mode):
    """Every kernel of the 16-bit Hopper enricher (the exact GELU in the TMA kernel; the tanh form in
    the TMA and the Gluon kernel), through three chained bf16 layers."""
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("the enricher modes are Hopper paths")
    options = {"tma": KernelOptions(), "tma-tanh": KernelOptions(gelu="tanh", enricher="tma"),
               "ws": KernelOptions(gelu="tanh", enricher="ws")}[mode]
    assert enricher.enricher_mode(None, options) == mode.removesuffix("-tanh")
    dev, dtype = torch.device("cuda"), torch.bfloat16
    cfg, x, mask = layer_inputs(case, dev)
    layers = random_layers(cfg, case[0], 3, dev)
    with torch.no_grad():
        _, chainf, chainr, chain64 = chained_layers(layers, x, mask, dtype, options)
    check(f"3 layers {case[0]} enricher {mode}", chainf, chainr, chain64, dtype)


@gpu
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("rows", [16383, 129])
def test_gluon_enricher_is_bitwise_the_triton_one(rows, masked, monkeypatch):
    """The two Hopper enrichers compute the same tanh-form GELU: ws (Gluon) and tma (Triton TMA) with
    gelu="tanh" give bitwise equal Z at the base width, with rows not a multiple of the tile: so
    enricher="auto", which picks between them by row count, never changes numerics."""
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("the enricher modes are Hopper paths")
    pytest.importorskip("triton.experimental.gluon")
    width = 768
    x = torch.randn(rows, width, device="cuda").bfloat16()
    weight = (torch.randn(4 * width, width, device="cuda") / width ** 0.5).bfloat16()
    bias = (torch.randn(4 * width, device="cuda") * 0.1).bfloat16()
    mask = torch.rand(rows, device="cuda") > 0.2 if masked else None
    stats = rms_norm.row_stats(x)
    monkeypatch.setattr(_triton_utils, "BROKEN_BUILDS", set())
    out = {}
    for mode in ("ws", "tma"):
        options = KernelOptions(gelu="tanh", enricher=mode)
        out[mode] = enricher.enrich(x, stats, weight, bias, mask, ACT_IDS["gelu"], 1e-6, options)
    assert not _triton_utils.BROKEN_BUILDS, "a kernel fell back, so the comparison would be void"
    assert torch.equal(out["ws"], out["tma"])


@gpu
def test_fused_evaluation_after_optimizer_steps_matches_reference():
    """Evaluate, train with the fused AdamW (it does not bump parameter versions), evaluate again:
    the fused path must see the updated weights (it read a stale cached enricher weight)."""
    torch.manual_seed(0)
    cfg = AveyBConfig(vocab_size=512, hidden_size=128, num_hidden_layers=4, split_size=32, num_retrieved_splits=3)
    model = AveyBForMaskedLM(cfg).cuda()
    assert kernels.supports(cfg, torch.device("cuda")), "the fused path must run for this test to mean anything"
    ids = torch.randint(0, 512, (4, 256), device="cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)

    def evaluate(backend):
        model.set_kernel_backend(backend)
        model.eval()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return float(model(ids, labels=ids).loss)

    evaluate("auto")  # fills the cache, as the first validation of a run does
    model.train()
    for _ in range(5):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    fused, reference = evaluate("auto"), evaluate("reference")
    assert abs(fused - reference) < 0.02 * reference, (fused, reference)


@gpu
@pytest.mark.parametrize("cfg", config_cases("activation", ELEMENTWISE_CONFIGS))
def test_activation_config(cfg):
    """The training path's activation kernel, every config, through the training layer."""
    check_training_layer_config(enricher._act_forward_kernel, cfg)


GEMM_CASES = [  # (name, kernel, configs, dtype, KernelOptions fields)
    ("tma", enricher._enricher_tma_kernel, _TMA_CONFIGS, torch.bfloat16, {"enricher": "tma"}),
    ("tma-tanh", enricher._enricher_tma_kernel, _TMA_CONFIGS, torch.bfloat16, {"enricher": "tma", "gelu": "tanh"}),
    # the pointer kernel: 16-bit data on GPUs before Hopper, and fp32 everywhere
    ("pointer-bf16", enricher._enricher_kernel, _GEMM_CONFIGS, torch.bfloat16, {"gemm_tma": False}),
    ("pointer-fp32", enricher._enricher_kernel, _GEMM_CONFIGS, torch.float32, {}),
]


@gpu
@pytest.mark.parametrize("kernel, dtype, options, cfg",
                         [p for name, k, cs, dt, opt in GEMM_CASES for p in config_cases(name, cs, k, dt, opt)])
def test_enricher_config(kernel, dtype, options, cfg):
    """Every config of the enricher GEMMs (epilogues included): three chained padded dynamic layers."""
    check_inference_gemm_config(kernel, dtype, options, cfg, tma=kernel is enricher._enricher_tma_kernel)
