"""The contextualizer and the gate (``aveyb.kernels.mix``): G ⊙ mix(U), forward and backward,
against :func:`aveyb.model.layers.static_mix` and :func:`~aveyb.model.layers.dynamic_mix`.

The layer tests (test_layer.py) run the mix inside whole layers; here, on the GPU, every
autotuning config of the five mix kernels is launched directly at the base model's width: each
must repeat bitwise (the scores backward's ρ, summed by atomics, to 1e-5) and match the fp32
reference, forward to 1e-2 of |ref| + 1 (bf16 rounding gives 2e-3, the miscompiled configs gave
3e-2), backward to 2e-2 in relative norm and elementwise to 2e-2 of max |ref|.
"""

from __future__ import annotations

import pytest
import torch
from parity import check_interpreted, check_training_layer_config, config_cases, gpu, interpreter, rel, repeat

triton = pytest.importorskip("triton")
import triton.language as tl  # noqa: E402

from aveyb.kernels import mix  # noqa: E402
from aveyb.kernels._triton_utils import ELEMENTWISE_CONFIGS  # noqa: E402
from aveyb.kernels.mix import split_tile  # noqa: E402
from aveyb.model import layers as ref  # noqa: E402


# ---- Triton's interpreter (CPU, float32) ---------------------------------------------------------
@triton.jit
def _split_tile_probe(out_ptr, S, D, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    m, t_block, d_block = split_tile(S, D, BLOCK_T, BLOCK_D)
    pid = tl.program_id(0)
    tl.store(out_ptr + 3 * pid, m)
    tl.store(out_ptr + 3 * pid + 1, t_block)
    tl.store(out_ptr + 3 * pid + 2, d_block)


@interpreter
def test_split_major_order_interpreted():
    """split_tile visits every (split, row block, column block) once, split-major; the static mix
    with 16-row and 16-column blocks (3 x 3 per split, the last ones partial) against float64."""
    n_split, split, width, block = 4, 40, 44, 16
    n_t, n_d = triton.cdiv(split, block), triton.cdiv(width, block)
    got = torch.full((n_split * n_t * n_d, 3), -1, dtype=torch.int32)
    _split_tile_probe[(got.shape[0],)](got, split, width, BLOCK_T=block, BLOCK_D=block)
    want = torch.tensor([(m, t, c) for m in range(n_split) for t in range(n_t) for c in range(n_d)], dtype=torch.int32)
    assert torch.equal(got, want)

    zw = 4 * width
    z = torch.randn(n_split, split, zw)
    p = torch.randn(split, split) / split ** 0.5
    u, g = z[..., :width].clone(), z[..., width:2 * width].clone()
    mix._static_mix_kernel.fn[(n_split * n_t * n_d,)](z, p, z, split, width, zw, 4, SAVE=False, PREC="tf32x3",
                                                      BLOCK_T=block, BLOCK_D=block, BLOCK_K=16)
    ref64 = g.double() * (p.double() @ u.double())
    check_interpreted("static mix", rel(z[..., width:2 * width], ref64), rel(g * (p @ u), ref64))


# ---- every config of the mix kernels (GPU) -------------------------------------------------------
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


def _check_forward(z0, launch, mix):
    """``launch(z)`` gates G in place on a copy of ``z0``: G must repeat bitwise and match
    G ⊙ mix(U) in fp32 to 1e-2 of |reference| + 1."""
    def run():
        z = z0.clone()
        launch(z)
        return z[..., D:2 * D]

    zf = z0.float()
    want = zf[..., D:2 * D] * mix(zf[..., :D])
    err = float(((repeat(run).float() - want).abs() / (want.abs() + 1)).max())
    assert err < 1e-2, f"max |fused - fp32 reference| / (|reference| + 1) = {err:.2e}"


@gpu
@pytest.mark.parametrize("index", range(len(mix._DYNAMIC_CONFIGS)))
def test_dynamic_mix_config(index):
    cfg = mix._DYNAMIC_CONFIGS[index]
    _, z0, _, _ = _inputs()
    _check_forward(z0, lambda z: mix._dynamic_mix_kernel.fn[_grid(cfg, cols=False)](
        z, z, z, z, z, S, D, ZW, EPS, M, SAVE=False, HAS_MASK=False, NORM=0, COUPLED=False, BLOCK_S=S, PREC="tf32",
        **_launch_args(cfg)), lambda u: ref.dynamic_mix(u, None, "sum", EPS))


@gpu
@pytest.mark.parametrize("index", range(len(mix._STATIC_CONFIGS)))
def test_static_mix_config(index):
    cfg = mix._STATIC_CONFIGS[index]
    _, z0, _, p = _inputs()
    _check_forward(z0, lambda z: mix._static_mix_kernel.fn[_grid(cfg)](
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
    mix._dynamic_scores_backward_kernel.fn[_grid(cfg, cols=False)](
        zf, dmix, zf, zf, zf, n_t, dc, dc_t, inv, rho, rho, rho, S, D, ZW, EPS, M, HAS_MASK=False, NORM=0,
        COUPLED=False, PREC="tf32", BLOCK_S=S, **_launch_args(cfg))
    return n_t, dc, dc_t, inv, rho


def _mix_backward(zpre, z, dmix, scores, cfg):
    """dZpre_U from the scores backward's outputs, for one launch of ``cfg``."""
    zf, dz = z.view(M * S, ZW), torch.zeros(M * S, ZW, device="cuda", dtype=z.dtype)
    mix._dynamic_mix_backward_kernel.fn[_grid(cfg)](
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


@gpu
@pytest.mark.parametrize("index", range(len(mix._SCORES_BWD_CONFIGS)))
def test_dynamic_scores_backward_config(index):
    """Nᵀ, dC, dCᵀ and inv are written without atomics: bitwise equal over two launches; ρ, summed
    by atomics, within 1e-5 in relative norm."""
    zpre, z, dmix, _ = _inputs()
    cfg = mix._SCORES_BWD_CONFIGS[index]
    first, second = _scores_backward(z, dmix, cfg), _scores_backward(z, dmix, cfg)
    for name, a, b in zip(("N^T", "dC", "dC^T", "inv"), first[:4], second[:4]):
        assert torch.equal(a, b), f"{cfg}: two launches on one input differ in {name}"
    spread = float((first[4] - second[4]).norm() / first[4].norm())
    assert spread < 1e-5, f"{cfg}: ρ of two launches differs by {spread:.2e} in relative norm"
    _dynamic_close(_mix_backward(zpre, z, dmix, first, mix._DYNAMIC_BWD_CONFIGS[-3]), zpre, dmix)


@gpu
@pytest.mark.parametrize("index", range(len(mix._DYNAMIC_BWD_CONFIGS)))
def test_dynamic_mix_backward_config(index):
    """On one set of scores-backward outputs: bitwise equal over two launches, and close to fp32."""
    zpre, z, dmix, _ = _inputs()
    scores = _scores_backward(z, dmix, mix._SCORES_BWD_CONFIGS[2])
    got = repeat(lambda: _mix_backward(zpre, z, dmix, scores, mix._DYNAMIC_BWD_CONFIGS[index]))
    _dynamic_close(got, zpre, dmix)


@gpu
@pytest.mark.parametrize("index", range(len(mix._STATIC_BWD_CONFIGS)))
def test_static_mix_backward_config(index):
    cfg = mix._STATIC_BWD_CONFIGS[index]
    zpre, z, dmix, p = _inputs()

    def run():
        dz = torch.zeros(M * S, ZW, device="cuda", dtype=z.dtype)
        mix._static_mix_backward_kernel.fn[_grid(cfg)](dmix, p, zpre.view(M * S, ZW), z, dz, S, D, ZW, M, ACT=0,
                                                      HAS_MASK=False, PREC="tf32", **_launch_args(cfg))
        return dz[:, :D].view(M, S, D)

    _backward_close(repeat(run), _reference_du(zpre, dmix, lambda u: ref.static_mix(u, p.float())))


@gpu
@pytest.mark.parametrize("cfg", config_cases("gate_backward", ELEMENTWISE_CONFIGS))
def test_gate_backward_config(cfg):
    """The gate's backward kernel, every config, through the training layer."""
    check_training_layer_config(mix._gate_backward_kernel, cfg)
