"""Every autotuning candidate of the contextualizer kernels, launched directly at the base model's
width (run on the device).

The parity tests run with ``AVEYB_AUTOTUNE=0``, which keeps one config per kernel, so the configs
the autotuner picks in real runs were never checked there. Under Triton 3.6 on an H100,
software-pipelined configs of the dynamic mix gave wrong and run-to-run different values for
thousands of elements (results/bench/dynamic_config_check_*.json). Here each config must repeat
bitwise and match the fp32 reference: forward to 1e-2 of |ref| + 1 (bf16 rounding gives 2e-3,
the broken configs gave 3e-2), backward to 2e-2 in relative norm.
"""

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
layers = pytest.importorskip("aveyb.kernels.layers")
triton = pytest.importorskip("triton")
from aveyb.kernels import backward as kb  # noqa: E402
from aveyb.model import layers as ref  # noqa: E402

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


def _repeat(run, exact=True):
    """Two launches on one input: bitwise equal, or (``exact=False``: kernels that sum by atomics,
    whose order varies) within 1e-3 of each other in relative norm."""
    first, second = run(), run()
    if exact:
        assert torch.equal(first, second), "two launches of one config on one input differ"
    else:
        spread = float((first.float() - second.float()).norm() / first.float().norm())
        assert spread < 1e-3, f"two launches of one config on one input differ by {spread:.2e} in relative norm"
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
        z, z, z, z, z, S, D, ZW, EPS, SAVE=False, HAS_MASK=False, NORM=0, COUPLED=False, BLOCK_S=S, PREC="tf32",
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


def _dynamic_backward(zpre, z, dmix, scores_cfg, mix_cfg):
    n_t, dc, dc_t = (torch.empty(M, S, S, device="cuda", dtype=z.dtype) for _ in range(3))
    inv, rho = torch.empty(M * S, device="cuda"), torch.zeros(M * S, device="cuda")
    zf, dz = z.view(M * S, ZW), torch.zeros(M * S, ZW, device="cuda", dtype=z.dtype)
    kb._dynamic_scores_backward_kernel.fn[_grid(scores_cfg, cols=False)](
        zf, dmix, zf, zf, zf, n_t, dc, dc_t, inv, rho, rho, rho, S, D, ZW, EPS, HAS_MASK=False, NORM=0,
        COUPLED=False, PREC="tf32", BLOCK_S=S, **_launch_args(scores_cfg))
    kb._dynamic_mix_backward_kernel.fn[_grid(mix_cfg)](
        zf, dmix, n_t, dc, dc_t, inv, rho, zpre.view(M * S, ZW), zf, dz, S, D, ZW, EPS, ACT=0, HAS_MASK=False,
        PREC="tf32", **_launch_args(mix_cfg))
    return dz[:, :D].view(M, S, D)


@pytest.mark.parametrize("index", range(len(kb._SCORES_BWD_CONFIGS)))
def test_dynamic_scores_backward_config(index):
    zpre, z, dmix, _ = _inputs()
    got = _repeat(lambda: _dynamic_backward(zpre, z, dmix, kb._SCORES_BWD_CONFIGS[index], kb._DYNAMIC_BWD_CONFIGS[-3]),
                  exact=False)  # ρ is summed by atomics
    _backward_close(got, _reference_du(zpre, dmix, lambda u: ref.dynamic_mix(u, None, "sum", EPS)))


@pytest.mark.parametrize("index", range(len(kb._DYNAMIC_BWD_CONFIGS)))
def test_dynamic_mix_backward_config(index):
    zpre, z, dmix, _ = _inputs()
    got = _repeat(lambda: _dynamic_backward(zpre, z, dmix, kb._SCORES_BWD_CONFIGS[2], kb._DYNAMIC_BWD_CONFIGS[index]),
                  exact=False)
    _backward_close(got, _reference_du(zpre, dmix, lambda u: ref.dynamic_mix(u, None, "sum", EPS)))


@pytest.mark.parametrize("index", range(len(kb._STATIC_BWD_CONFIGS)))
def test_static_mix_backward_config(index):
    cfg = kb._STATIC_BWD_CONFIGS[index]
    zpre, z, dmix, p = _inputs()

    def run():
        dz = torch.zeros(M * S, ZW, device="cuda", dtype=z.dtype)
        kb._static_mix_backward_kernel.fn[_grid(cfg)](dmix, p, zpre.view(M * S, ZW), z, dz, S, D, ZW, ACT=0,
                                                      HAS_MASK=False, PREC="tf32", **_launch_args(cfg))
        return dz[:, :D].view(M, S, D)

    _backward_close(_repeat(run), _reference_du(zpre, dmix, lambda u: ref.static_mix(u, p.float())))
