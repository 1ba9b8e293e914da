"""What the kernel tests share: the parity rule, random layers and inputs, and config pinning.

Errors are measured as in the device's METHOD.md: ‖out − ref64‖ / ‖ref64‖ against the reference
run in float64 on upcast inputs. On the GPU (:func:`check`) the fused result must be within ``TOL``
of it, or within 3× the error of the same-dtype PyTorch reference, whichever is looser: the kernels
must be no worse than the reference in the same precision. In Triton's interpreter
(:func:`check_interpreted`, float32 on CPU) the bound is 1e-5, or 3× the float32 reference's error.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import zlib

import pytest
import torch

from aveyb.config import preset_config

HAS_TRITON = importlib.util.find_spec("triton") is not None
gpu = pytest.mark.gpu
interpreter = pytest.mark.interpreter
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
TOL = {torch.float32: 2e-4, torch.bfloat16: 2e-2}
DTYPES = [torch.float32, torch.bfloat16]


def rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def check(name, fused, ref_same, ref64, dtype):
    """Fused within TOL of float64, or no worse than 3x the same-dtype reference; never NaN."""
    assert torch.isfinite(fused).all(), f"{name}: non-finite values"
    e_fused, e_ref = rel(fused, ref64), rel(ref_same, ref64)
    print(f"{name:40s} {dtype!s:15s} fused {e_fused:.2e}  reference {e_ref:.2e}")
    assert e_fused <= max(TOL[dtype], 3 * e_ref), f"{name}: fused err {e_fused:.3e}, reference {e_ref:.3e}"


def check_interpreted(name, err, reference_err=0.0):
    """An interpreter run's relative error: within 1e-5, or no worse than 3x the float32 reference's."""
    bound = max(1e-5, 3 * reference_err)
    assert err <= bound, f"{name}: relative error {err:.3e} > {bound:.1e} (float32 reference {reference_err:.1e})"


def random_layers(cfg, kind, n, device=None):
    """``n`` AveyBLayers of ``kind`` with random weights scaled so that outputs stay O(1), τ = 0.7."""
    from aveyb.model.layers import AveyBLayer

    layers = []
    for _ in range(n):
        layer = AveyBLayer(cfg, kind).to(device)
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn_like(p) * (0.5 / p.shape[-1] ** 0.5 if p.dim() == 2 else 0.3)
                        + (1 if p.dim() < 2 else 0))
            if hasattr(layer, "tau"):
                layer.tau.fill_(0.7)
        layers.append(layer)
    return layers


def separated_embeddings(batch, length, width, split_size, device, gen):
    """Random embeddings whose MaxSim scores are well apart (each split has its own topic), so the
    top-k selection is the same in every precision; plus per-token noise."""
    n = -(-length // split_size)
    topics = torch.randn(batch, n, 1, width, generator=gen, device=device) * torch.rand(
        batch, n, 1, 1, generator=gen, device=device).mul(3)
    x = torch.randn(batch, n, split_size, width, generator=gen, device=device) + topics
    return x.reshape(batch, n * split_size, width)[:, :length].contiguous()


def layer_inputs(case, dev):
    """(config, x, mask) for a layer case (kind, norm, act, M, S, d, padded): a padded mask has a
    split with no real row (the tail of a padded batch)."""
    kind, norm, act, m, s, width, padded = case
    cfg = preset_config("tiny", hidden_size=width, split_size=s, dynamic_norm=norm, hidden_act=act)
    torch.manual_seed(zlib.crc32(repr(case).encode()))
    x = torch.randn(m, s, width, device=dev)
    mask = None
    if padded:
        mask = torch.rand(m, s, device=dev) > 0.3
        mask[0] = True
        mask[-1] = False
    return cfg, x, mask


def run_fused(layers, x, mask, options=None):
    """``layers`` (AveyBLayer modules) called in turn on one fused backend (``TritonBackend``), as the
    model calls them: each layer after the first takes its RMSNorm statistics from the previous
    fuser. The layers' own backends are put back afterwards."""
    from aveyb.kernels import KernelOptions, TritonBackend

    backend = TritonBackend(options or KernelOptions())
    saved = [lay.backend for lay in layers]
    try:
        for lay in layers:
            lay.backend = backend
        for lay in layers:
            x = lay(x, mask)
    finally:
        for lay, old in zip(layers, saved):
            lay.backend = old
    return x


def fused_layer(options=None):
    """``fn(layer, x, mask)``: one layer's fused op (``kernels.layer.fused_layer_forward``) on its tensors."""
    from aveyb.kernels import KernelOptions
    from aveyb.kernels.layer import fused_layer_forward

    return lambda layer, x, mask: fused_layer_forward(x, mask, layer.weights(), layer.spec, options or KernelOptions())


def chained_layers(layers, x, mask, dtype, options=None):
    """``layers`` applied in turn in ``dtype``: (the ``dtype`` copies, fused output (:func:`run_fused`),
    same-dtype reference output, float64 reference output)."""
    ld = [copy.deepcopy(lay).to(dtype) for lay in layers]
    chain64, chainr = x.double(), x.to(dtype)
    for a, b in zip(layers, ld):
        chain64, chainr = copy.deepcopy(a).double()(chain64, mask), b(chainr, mask)
    return ld, run_fused(ld, x.to(dtype), mask, options), chainr, chain64


def layer_output_and_grads(layer, x, mask, grad_out, fn=None, amp=False):
    """(out, dx, d every parameter) of ``fn(layer, x, mask)`` (default: the layer itself) for the
    loss Σ out · grad_out in float64, under bf16 autocast if ``amp``."""
    x = x.detach().requires_grad_(True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        out = layer(x, mask) if fn is None else fn(layer, x, mask)
    grads = torch.autograd.grad((out.double() * grad_out.double()).sum(), [x] + list(layer.parameters()))
    return (out, *grads)


# ---- every autotuning candidate (GPU) ----------------------------------------------------------
# Each candidate is pinned in turn (the autotuner launches a lone config without timing it) while
# the public function that uses the kernel runs at the base model's width; the result must repeat
# bitwise and be as close to float64 as the parity tests require (``check``). Under Triton 3.6 on
# an H100, software-pipelined configs of the dynamic mix gave wrong and run-to-run different
# values for thousands of elements, which one fixed config per kernel never showed.
BASE_S, BASE_D = 256, 768


def repeat(run):
    """Two runs on one input must give bitwise equal results (a tensor, or a tuple of them);
    returns the first."""
    first, second = run(), run()
    pairs = zip(first, second) if isinstance(first, tuple) else [(first, second)]
    assert all(torch.equal(a, b) for a, b in pairs), "two launches of one config on one input differ"
    return first


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


def pinned_run(kernel, cfg, run):
    """``run()`` twice with ``cfg`` pinned: the kernel must have launched and the two results (a
    tensor or a tuple of them) must be bitwise equal; returns the first. A config that does not fit
    this GPU (which the autotuner would skip too) skips."""
    from triton.runtime.errors import OutOfResources

    from aveyb.kernels._triton_utils import BROKEN_BUILDS

    broken_before = set(BROKEN_BUILDS)
    try:
        with pinned(kernel, cfg) as launches:
            first = repeat(run)
    except OutOfResources as err:
        pytest.skip(f"config does not fit this GPU: {err}")
    finally:  # a build failure must not make later tests fall back too
        new_broken = BROKEN_BUILDS - broken_before
        BROKEN_BUILDS.difference_update(new_broken)
    assert not new_broken, f"{cfg} did not compile, so the caller fell back: {new_broken}"
    assert launches, f"{kernel.fn.__name__} was not launched"
    return first


def config_cases(name, configs, *args):
    """One test case per config: ``(*args, config)``, named ``name[index]``."""
    return [pytest.param(*args, c, id=f"{name}[{i}]") for i, c in enumerate(configs)]


def base_layers(kind, n, padded):
    """``n`` random layers of ``kind`` at the base width (d = 768, S = 256), 4 splits, half the
    second split and all of the last padded when ``padded``."""
    cfg = preset_config("tiny", hidden_size=BASE_D, split_size=BASE_S)
    torch.manual_seed(zlib.crc32(f"{kind}{n}{padded}".encode()))
    x = torch.randn(4, BASE_S, BASE_D, device="cuda")
    mask = None
    if padded:
        mask = torch.ones(4, BASE_S, dtype=torch.bool, device="cuda")
        mask[1, BASE_S // 2:] = False
        mask[3] = False
    return random_layers(cfg, kind, n, torch.device("cuda")), x, mask


def check_training_layer_config(kernel, cfg):
    """One config of a training-path kernel: a padded static layer, forward and every gradient in
    bf16 against float64 autograd through the reference."""
    from aveyb.kernels import KernelOptions

    fn = fused_layer(KernelOptions(train_layer="triton"))
    (layer,), x, mask = base_layers("static", 1, padded=True)
    grad_out = torch.randn(x.shape, device="cuda")
    want64 = layer_output_and_grads(copy.deepcopy(layer).double(), x.double(), mask, grad_out)
    lb = copy.deepcopy(layer).bfloat16()
    want = layer_output_and_grads(lb, x.bfloat16(), mask, grad_out)
    got = pinned_run(kernel, cfg, lambda: layer_output_and_grads(lb, x.bfloat16(), mask, grad_out, fn))
    names = ["out", "x"] + [n for n, _ in layer.named_parameters()]
    for name, a, b, c in zip(names, got, want, want64):
        check(f"{kernel.fn.__name__} {name}", a, b, c, torch.bfloat16)


def check_inference_gemm_config(kernel, dtype, options, cfg, tma):
    """One config of a GEMM kernel (epilogue included): three chained padded dynamic layers,
    inference, against float64; ``options`` (a dict of KernelOptions fields) pick the kernel."""
    from aveyb.kernels import KernelOptions

    options = KernelOptions(**options)
    if tma and torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("TMA kernels need Hopper or newer")
    layers_, x, mask = base_layers("dynamic", 3, padded=True)
    with torch.no_grad():
        ld, _, want, want64 = chained_layers(layers_, x, mask, dtype, options)  # its fused run: one config per kernel
        got = pinned_run(kernel, cfg, lambda: run_fused(ld, x.to(dtype), mask, options))
    check(f"{kernel.fn.__name__} {options}", got, want, want64, dtype)
