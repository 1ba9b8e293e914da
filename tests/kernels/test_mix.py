"""Every autotuning candidate of every autotuned kernel (run on the device).

The parity tests run with ``AVEYB_AUTOTUNE=0``, which keeps one config per kernel, so the configs
the autotuner picks in real runs were never checked there. Under Triton 3.6 on an H100,
software-pipelined configs of the dynamic mix gave wrong and run-to-run different values for
thousands of elements (results/bench/dynamic_config_check_*.json).

* The five mix kernels are launched directly with each config at the base model's width: each
  must repeat bitwise (the scores backward's ρ, summed by atomics, to 1e-5) and match the fp32
  reference, forward to 1e-2 of |ref| + 1 (bf16 rounding gives 2e-3, the broken configs gave
  3e-2), backward to 2e-2 in relative norm and elementwise to 2e-2 of max |ref|.
* Every other autotuned kernel (the GEMMs with their epilogues, MaxSim, compression, the training
  layer's elementwise kernels) has each config pinned in turn while the library's own entry point
  runs; the result must repeat bitwise and meet the parity tests' bound against float64.
"""

import contextlib
import copy
import zlib

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
layers = pytest.importorskip("aveyb.kernels.layers")
triton = pytest.importorskip("triton")
from aveyb.config import preset_config  # noqa: E402
from aveyb.kernels import backward as kb  # noqa: E402
from aveyb.kernels import gemm, ranker  # noqa: E402
from aveyb.model import layers as ref  # noqa: E402
from aveyb.model import ranker as ref_ranker  # noqa: E402
from kernel_interpreter_check import random_layers  # noqa: E402
from test_kernels_parity import _separated_embeddings, _three_layers, check, layer_output_and_grads  # noqa: E402

M, S, D, E, EPS = 64, 256, 768, 4, 1e-12
ZW = E * D


def _inputs():
    torch.manual_seed(0)
    zpre = torch.randn(M, S, ZW, device="cuda").to(torch.bfloat16)
    z = torch.nn.functional.gelu(zpre.float()).to(torch.bfloat16)
    dmix = (torch.randn(M * S, D, device="cuda") * 0.01).to(torch.bfloat16)
    p = (torch.randn(S, S, device="cuda") / 16).to(torch.bfloat16)
    return zpre, z, dmix, p


def _launch_args(cfg):
    return dict(cfg.kwargs, num_warps=cfg.num_warps, num_stages=cfg.num_stages)


def _grid(cfg, cols=True):
    n = M * triton.cdiv(S, cfg.kwargs["BLOCK_T"])
    return (n * triton.cdiv(D, cfg.kwargs["BLOCK_D"]),) if cols else (n,)


def _repeat(run):
    """Two runs on one input must give bitwise equal results (a tensor, or a tuple of them);
    returns the first."""
    first, second = run(), run()
    pairs = zip(first, second) if isinstance(first, tuple) else [(first, second)]
    assert all(torch.equal(a, b) for a, b in pairs), "two launches of one config on one input differ"
    return first


def _check_forward(z0, launch, mix):
    """``launch(z)`` gates G in place on a copy of ``z0``: G must repeat bitwise and match
    G ⊙ mix(U) in fp32 to 1e-2 of |reference| + 1."""
    def run():
        z = z0.clone()
        launch(z)
        return z[..., D:2 * D]

    zf = z0.float()
    want = zf[..., D:2 * D] * mix(zf[..., :D])
    err = float(((_repeat(run).float() - want).abs() / (want.abs() + 1)).max())
    assert err < 1e-2, f"max |fused - fp32 reference| / (|reference| + 1) = {err:.2e}"


@pytest.mark.parametrize("index", range(len(layers._DYNAMIC_CONFIGS)))
def test_dynamic_mix_config(index):
    cfg = layers._DYNAMIC_CONFIGS[index]
    _, z0, _, _ = _inputs()
    _check_forward(z0, lambda z: layers._dynamic_mix_kernel.fn[_grid(cfg, cols=False)](
        z, z, z, z, z, S, D, ZW, EPS, M, SAVE=False, HAS_MASK=False, NORM=0, COUPLED=False, BLOCK_S=S, PREC="tf32",
        **_launch_args(cfg)), lambda u: ref.dynamic_mix(u, None, "sum", EPS))


@pytest.mark.parametrize("index", range(len(layers._STATIC_CONFIGS)))
def test_static_mix_config(index):
    cfg = layers._STATIC_CONFIGS[index]
    _, z0, _, p = _inputs()
    _check_forward(z0, lambda z: layers._static_mix_kernel.fn[_grid(cfg)](
        z, p, z, S, D, ZW, 64, SAVE=False, PREC="tf32", **_launch_args(cfg)), lambda u: ref.static_mix(u, p.float()))


def _reference_du(zpre, dmix, mix):
    """dL/dZpre_U for L = Σ d mix(U) ⊙ mix(U), U = gelu(Zpre_U), in fp32."""
    zu = zpre[..., :D].float().requires_grad_(True)
    out = mix(torch.nn.functional.gelu(zu))
    (grad,) = torch.autograd.grad(out, zu, dmix.float().view(M, S, D))
    return grad


def _backward_close(got, want):
    err = float((got.float() - want).norm() / want.norm())
    assert err < 2e-2, f"relative error of dZpre_U: {err:.2e}"


def _scores_backward(z, dmix, cfg):
    """The scores backward's outputs (Nᵀ, dC, dCᵀ, inv, ρ) for one launch of ``cfg``."""
    n_t, dc, dc_t = (torch.empty(M, S, S, device="cuda", dtype=z.dtype) for _ in range(3))
    inv, rho = torch.empty(M * S, device="cuda"), torch.zeros(M * S, device="cuda")
    zf = z.view(M * S, ZW)
    kb._dynamic_scores_backward_kernel.fn[_grid(cfg, cols=False)](
        zf, dmix, zf, zf, zf, n_t, dc, dc_t, inv, rho, rho, rho, S, D, ZW, EPS, M, HAS_MASK=False, NORM=0,
        COUPLED=False, PREC="tf32", BLOCK_S=S, **_launch_args(cfg))
    return n_t, dc, dc_t, inv, rho


def _mix_backward(zpre, z, dmix, scores, cfg):
    """dZpre_U from the scores backward's outputs, for one launch of ``cfg``."""
    zf, dz = z.view(M * S, ZW), torch.zeros(M * S, ZW, device="cuda", dtype=z.dtype)
    kb._dynamic_mix_backward_kernel.fn[_grid(cfg)](
        zf, dmix, *scores, zpre.view(M * S, ZW), zf, dz, S, D, ZW, EPS, M, ACT=0, HAS_MASK=False,
        PREC="tf32", **_launch_args(cfg))
    return dz[:, :D].view(M, S, D)


def _dynamic_close(got, zpre, dmix):
    """dZpre_U against fp32 autograd: in relative norm, and elementwise within 2e-2 of max |reference|
    (a miscompile that moves a few thousand elements by a few percent, as the forward's did, barely
    moves the norm)."""
    want = _reference_du(zpre, dmix, lambda u: ref.dynamic_mix(u, None, "sum", EPS))
    _backward_close(got, want)
    worst = float((got.float() - want).abs().max() / want.abs().max())
    assert worst < 2e-2, f"max |dZpre_U - reference| / max |reference| = {worst:.2e}"


@pytest.mark.parametrize("index", range(len(kb._SCORES_BWD_CONFIGS)))
def test_dynamic_scores_backward_config(index):
    """Nᵀ, dC, dCᵀ and inv are written without atomics: bitwise equal over two launches; ρ, summed
    by atomics, within 1e-5 in relative norm."""
    zpre, z, dmix, _ = _inputs()
    cfg = kb._SCORES_BWD_CONFIGS[index]
    first, second = _scores_backward(z, dmix, cfg), _scores_backward(z, dmix, cfg)
    for name, a, b in zip(("N^T", "dC", "dC^T", "inv"), first[:4], second[:4]):
        assert torch.equal(a, b), f"{cfg}: two launches on one input differ in {name}"
    spread = float((first[4] - second[4]).norm() / first[4].norm())
    assert spread < 1e-5, f"{cfg}: ρ of two launches differs by {spread:.2e} in relative norm"
    _dynamic_close(_mix_backward(zpre, z, dmix, first, kb._DYNAMIC_BWD_CONFIGS[-3]), zpre, dmix)


@pytest.mark.parametrize("index", range(len(kb._DYNAMIC_BWD_CONFIGS)))
def test_dynamic_mix_backward_config(index):
    """On one set of scores-backward outputs: bitwise equal over two launches, and close to fp32."""
    zpre, z, dmix, _ = _inputs()
    scores = _scores_backward(z, dmix, kb._SCORES_BWD_CONFIGS[2])
    got = _repeat(lambda: _mix_backward(zpre, z, dmix, scores, kb._DYNAMIC_BWD_CONFIGS[index]))
    _dynamic_close(got, zpre, dmix)


@pytest.mark.parametrize("index", range(len(kb._STATIC_BWD_CONFIGS)))
def test_static_mix_backward_config(index):
    cfg = kb._STATIC_BWD_CONFIGS[index]
    zpre, z, dmix, p = _inputs()

    def run():
        dz = torch.zeros(M * S, ZW, device="cuda", dtype=z.dtype)
        kb._static_mix_backward_kernel.fn[_grid(cfg)](dmix, p, zpre.view(M * S, ZW), z, dz, S, D, ZW, M, ACT=0,
                                                      HAS_MASK=False, PREC="tf32", **_launch_args(cfg))
        return dz[:, :D].view(M, S, D)

    _backward_close(_repeat(run), _reference_du(zpre, dmix, lambda u: ref.static_mix(u, p.float())))


# ---- every other autotuned kernel, through the library's own entry points ----------------------
# Each autotuning candidate is pinned in turn (the autotuner launches a lone config without timing
# it) while the public function that uses the kernel runs at the base model's width; the result
# must repeat bitwise and be as close to float64 as the parity tests require (``check``).


@contextlib.contextmanager
def pinned(kernel, cfg):
    """``kernel`` autotunes over ``cfg`` alone while inside; yields the list its launches append to."""
    saved, launches = kernel.configs, []
    original = kernel.run

    def run(*args, **kwargs):
        launches.append(cfg)
        return original(*args, **kwargs)

    kernel.configs, kernel.run = [cfg], run
    try:
        yield launches
    finally:
        kernel.configs = saved
        del kernel.run  # the class's method again


def _pinned_run(kernel, cfg, run):
    """``run()`` twice with ``cfg`` pinned: the kernel must have launched and the two results (a
    tensor or a tuple of them) must be bitwise equal; returns the first. A config that does not fit
    this GPU (which the autotuner would skip too) skips."""
    from triton.runtime.errors import OutOfResources

    broken_before = set(gemm._TMA_BROKEN)
    try:
        with pinned(kernel, cfg) as launches:
            first = _repeat(run)
    except OutOfResources as err:
        pytest.skip(f"config does not fit this GPU: {err}")
    finally:  # a build failure must not make later tests fall back too
        new_broken = gemm._TMA_BROKEN - broken_before
        gemm._TMA_BROKEN.difference_update(new_broken)
    assert not new_broken, f"{cfg} did not compile, so the caller fell back: {new_broken}"
    assert launches, f"{kernel.fn.__name__} was not launched"
    return first


def _cases(name, configs, *args):
    """One test case per config: ``(*args, config)``, named ``name[index]``."""
    return [pytest.param(*args, c, id=f"{name}[{i}]") for i, c in enumerate(configs)]


def _base_layers(kind, n, padded):
    """``n`` random layers of ``kind`` at the base width (d = 768, S = 256), 4 splits, half the
    second split padded when ``padded``."""
    cfg = preset_config("tiny", hidden_size=D, split_size=S)
    torch.manual_seed(zlib.crc32(f"{kind}{n}{padded}".encode()))
    x = torch.randn(4, S, D, device="cuda")
    mask = None
    if padded:
        mask = torch.ones(4, S, dtype=torch.bool, device="cuda")
        mask[1, S // 2:] = False
        mask[3] = False
    return random_layers(cfg, kind, n, torch.device("cuda")), x, mask


TRAIN_KERNELS = [(kb._rms_forward_kernel, kb._ROW_CONFIGS), (kb._rms_backward_kernel, kb._ROW_CONFIGS),
                 (kb._cast_colsum_kernel, kb._COLSUM_CONFIGS), (kb._act_forward_kernel, kb._ELEM_CONFIGS),
                 (kb._gate_backward_kernel, kb._ELEM_CONFIGS)]


@pytest.mark.parametrize("kernel, cfg", [p for k, cs in TRAIN_KERNELS for p in _cases(k.fn.__name__, cs, k)])
def test_training_layer_config(kernel, cfg, monkeypatch):
    """The training layer's elementwise kernels: a padded static layer, forward and every gradient
    in bf16 against float64 autograd through the reference."""
    from aveyb.kernels.layers import layer_forward

    monkeypatch.setenv("AVEYB_TRAIN_LAYER", "triton")
    (layer,), x, mask = _base_layers("static", 1, padded=True)
    grad_out = torch.randn(x.shape, device="cuda")
    want64 = layer_output_and_grads(copy.deepcopy(layer).double(), x.double(), mask, grad_out)
    lb = copy.deepcopy(layer).bfloat16()
    want = layer_output_and_grads(lb, x.bfloat16(), mask, grad_out)
    got = _pinned_run(kernel, cfg, lambda: layer_output_and_grads(lb, x.bfloat16(), mask, grad_out, layer_forward))
    names = ["out", "x"] + [n for n, _ in layer.named_parameters()]
    for name, a, b, c in zip(names, got, want, want64):
        check(f"{kernel.fn.__name__} {name}", a, b, c, torch.bfloat16)


GEMM_CASES = [  # (name, kernel, configs, dtype, environment)
    ("enricher-tma", gemm._enricher_tma_kernel, gemm._TMA_CONFIGS, torch.bfloat16, {"AVEYB_ENRICHER": "tma"}),
    ("enricher-tma-tanh", gemm._enricher_tma_kernel, gemm._TMA_CONFIGS, torch.bfloat16, {"AVEYB_ENRICHER": "tma-tanh"}),
    ("fuser-tma", gemm._fuser_tma_kernel, gemm._TMA_CONFIGS, torch.bfloat16, {"AVEYB_FUSER": "tma"}),
    # the pointer kernels: 16-bit data on GPUs before Hopper, and fp32 everywhere
    ("enricher-bf16", gemm._enricher_kernel, gemm._GEMM_CONFIGS, torch.bfloat16, {"AVEYB_GEMM_TMA": "0"}),
    ("fuser-bf16", gemm._fuser_kernel, gemm._GEMM_CONFIGS, torch.bfloat16, {"AVEYB_GEMM_TMA": "0"}),
    ("enricher-fp32", gemm._enricher_kernel, gemm._GEMM_CONFIGS, torch.float32, {}),
    ("fuser-fp32", gemm._fuser_kernel, gemm._GEMM_CONFIGS, torch.float32, {}),
]


@pytest.mark.parametrize("kernel, dtype, env, cfg",
                         [p for name, k, cs, dt, env in GEMM_CASES for p in _cases(name, cs, k, dt, env)])
def test_inference_gemm_config(kernel, dtype, env, cfg, monkeypatch):
    """The enricher and fuser GEMMs (epilogues included): three chained padded dynamic layers,
    inference, against float64."""
    from aveyb.kernels.layers import run_layers

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if kernel in (gemm._enricher_tma_kernel, gemm._fuser_tma_kernel) and torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("TMA kernels need Hopper or newer")
    layers_, x, mask = _base_layers("dynamic", 3, padded=True)
    with torch.no_grad():
        ld, _, want, want64 = _three_layers(layers_, x, mask, dtype)  # its fused run: the untuned config
        got = _pinned_run(kernel, cfg, lambda: list(run_layers(ld, x.to(dtype), mask))[-1])
    check(f"{kernel.fn.__name__} {env}", got, want, want64, dtype)


@pytest.mark.parametrize("tma, cfg", _cases("pointer", ranker._MAXSIM_CONFIGS, False)
                         + _cases("tma", ranker._MAXSIM_TMA_CONFIGS, True))
def test_maxsim_config(tma, cfg):
    """MaxSim scores of a padded batch (2 × 12 splits of 256 × 768, bf16) on every candidate pair,
    -inf elsewhere, against float64."""
    if tma and torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("TMA kernels need Hopper or newer")
    gen = torch.Generator(device="cuda").manual_seed(3)
    length = 12 * S - 100
    x = _separated_embeddings(2, length, D, S, torch.device("cuda"), gen).bfloat16()
    mask = torch.arange(length, device="cuda")[None, :] < torch.tensor([length, 5 * S + 7], device="cuda")[:, None]
    xs, ms = ref_ranker.split_sequence(x, mask, S)
    cand = ref_ranker.candidate_mask(ms.any(-1), "left")
    pairs = ref_ranker.candidate_mask(torch.ones_like(ms[..., 0]), "left")
    kernel = ranker._maxsim_tma_kernel if tma else ranker._maxsim_kernel
    got = _pinned_run(kernel, cfg, lambda: ranker.maxsim_scores(xs, ms, 1e-6, "left", tma=tma))
    assert bool((got[~pairs] == float("-inf")).all())
    check(f"maxsim {'tma' if tma else 'pointer'}", got[cand], ref_ranker.maxsim_scores(xs, ms, 1e-6)[cand],
          ref_ranker.maxsim_scores(xs.double(), ms, 1e-6)[cand], torch.bfloat16)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("cfg", _cases("compress", ranker._COMPRESS_CONFIGS))
def test_compress_config(cfg, dtype):
    """The compression D · window (k = 3 picks, weighted) over 2 × 6 splits, against float64."""
    torch.manual_seed(5)
    xs = torch.randn(2, 6, S, D, device="cuda")
    idx = torch.randint(0, 6, (2, 6, 3), device="cuda")
    w = torch.rand(2, 6, 3, device="cuda")
    down = torch.randn(S, 4 * S, device="cuda") / S
    got = _pinned_run(ranker._compress_kernel, cfg, lambda: ranker.compress(xs.to(dtype), idx, w, down.to(dtype)))
    want = ref_ranker.compress(xs.to(dtype), idx, w.to(dtype), down.to(dtype))
    want64 = ref_ranker.compress(xs.to(dtype).double(), idx, w.double(), down.to(dtype).double())
    check(f"compress {dtype}", got, want, want64, dtype)
