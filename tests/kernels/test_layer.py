"""The fused layer (``aveyb.kernels.layer``) against :func:`aveyb.model.layers.layer_forward`:
inference (layers called as modules on the fused backend, row statistics passed on), the training
layer (output and every gradient), the compiled reference, and which of them trains."""

from __future__ import annotations

import copy

import pytest
import torch
from parity import (
    DTYPES,
    chained_layers,
    check,
    check_interpreted,
    fused_layer,
    gpu,
    interpreter,
    layer_inputs,
    layer_output_and_grads,
    random_layers,
    rel,
    run_fused,
)

pytest.importorskip("triton")
from aveyb.config import preset_config  # noqa: E402
from aveyb.kernels import KernelOptions  # noqa: E402
from aveyb.kernels import layer as fused  # noqa: E402
from aveyb.kernels.layer import layer_train_forward  # noqa: E402
from aveyb.model.layers import layer_forward  # noqa: E402


# ---- which path trains ---------------------------------------------------------------------------
def test_auto_train_layer_picks_by_rows(monkeypatch):
    """train_layer="auto": the hand-written layer from AUTO_TRAIN_MIN_ELEMENTS elements, the compiled one
    below; the explicit modes ignore the size; a model under torch.compile traces the reference."""
    limit = fused.AUTO_TRAIN_MIN_ELEMENTS
    assert fused.train_with_kernels(limit) and not fused.train_with_kernels(limit - 1)
    assert fused.train_with_kernels(1, KernelOptions(train_layer="triton"))
    assert not fused.train_with_kernels(10 * limit, KernelOptions(train_layer="compile"))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    # inside torch.compile(model): the reference layer
    assert not fused.train_with_kernels(10 * limit, KernelOptions(train_layer="triton"))


def test_compiled_layer_follows_the_options():
    """The compile training path compiles the model's own layer_forward (with ``compile_dynamic``), or
    runs it as it is with ``compile_layers=False``."""
    assert fused.compiled_layer(KernelOptions(compile_layers=False)) is layer_forward
    compiled = fused.compiled_layer(KernelOptions(compile_dynamic=False))
    assert compiled is not layer_forward and compiled is fused.compiled_layer(KernelOptions(compile_dynamic=False))


def test_layer_forward_compiles_without_graph_breaks():
    """Dynamo traces the model's layer_forward in one graph (what the compile training path relies
    on), for every layer kind; the eager backend keeps this cheap on a CPU."""
    for kind, norm in (("static", "sum"), ("dynamic", "softmax"), ("coupled", "sum")):
        cfg = preset_config("tiny", hidden_size=16, split_size=8, dynamic_norm=norm)
        (lay,) = random_layers(cfg, kind, 1)
        x, mask = torch.randn(3, 8, 16), torch.rand(3, 8) > 0.3
        compiled = torch.compile(layer_forward, backend="eager", fullgraph=True)
        torch.testing.assert_close(compiled(x, mask, lay.weights(), lay.spec), lay(x, mask))


# ---- Triton's interpreter (CPU, float32): against float64, next to the float32 reference ----------
INTERPRETED_CASES = {  # kind-norm-act: (S, padded)
    "static-sum-gelu": (32, True),  # two layers on the fused backend: row statistics passed on
    "dynamic-sum-gelu": (32, True),
    "dynamic-softmax-gelu_tanh": (32, True),  # τ and masked keys
    "coupled-signed_sum-silu": (24, False),  # P ⊙ A; signed_sum is ill-conditioned
    "dynamic-none-relu": (20, False),  # S not a power of 2
}


@interpreter
@pytest.mark.parametrize("name", list(INTERPRETED_CASES))
def test_layers_interpreted(name):
    """Two layers in turn on the fused backend (the second takes its RMSNorm statistics from the first's fuser)."""
    kind, norm, act = name.split("-")
    split, padded = INTERPRETED_CASES[name]
    cfg = preset_config("tiny", hidden_size=48, split_size=split, dynamic_norm=norm, hidden_act=act)
    layers = random_layers(cfg, kind, 2)
    with torch.no_grad():
        x = torch.randn(3, split, 48)
        mask = None
        if padded:
            mask = torch.rand(3, split) > 0.3
            mask[-1] = False
        ref, ref64 = x, x.double()
        for lay in layers:
            ref = lay(ref, mask)
            ref64 = copy.deepcopy(lay).double()(ref64, mask)
        out = run_fused(layers, x, mask)
    check_interpreted(name, rel(out, ref64), rel(ref, ref64))


TRAIN_INTERPRETED_CASES = {  # kind-norm-act: (S, d, padded)
    "static-sum-gelu": (24, 32, True),
    "dynamic-sum-gelu": (24, 32, True),  # N, dC, ρ and the cosines' backward
    "dynamic-softmax-gelu_tanh": (24, 32, True),  # dτ, masked keys
    "coupled-signed_sum-silu": (16, 32, False),  # dP
    "dynamic-none-relu": (19, 36, True),  # S not a power of 2, d not a multiple of 8 (xn's pad)
    "coupled-softmax-gelu": (16, 32, True),  # dP and dτ together
}


@interpreter
@pytest.mark.parametrize("name", list(TRAIN_INTERPRETED_CASES))
def test_layer_training_interpreted(name):
    """The training layer (LayerFunction): output, dx and every parameter's gradient against float64
    autograd through the reference."""
    kind, norm, act = name.split("-")
    split, width, padded = TRAIN_INTERPRETED_CASES[name]
    cfg = preset_config("tiny", hidden_size=width, split_size=split, dynamic_norm=norm, hidden_act=act)
    (lay,) = random_layers(cfg, kind, 1)
    x = torch.randn(3, split, width)
    mask = None
    if padded:
        mask = torch.rand(3, split) > 0.3
        mask[-1] = False
    grad_out = torch.randn(3, split, width)
    got = layer_output_and_grads(lay, x, mask, grad_out, lambda la, xx, m: layer_train_forward(xx, m, la.weights(), la.spec))
    want = layer_output_and_grads(lay, x, mask, grad_out)
    want64 = layer_output_and_grads(copy.deepcopy(lay).double(), x.double(), mask, grad_out)
    names = ["out", "x"] + [n for n, _ in lay.named_parameters()]
    for pname, a, b, c in zip(names, got, want, want64):
        check_interpreted(f"{name} {pname}", rel(a, c), rel(b, c))


# ---- GPU ---------------------------------------------------------------------------------------
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


@gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", LAYER_CASES, ids=lambda c: "-".join(map(str, c)))
def test_layer_forward_parity(case, dtype):
    """Inference path: enricher GEMM (RMSNorm folded, fused epilogue), mix kernel, fuser GEMM
    (residual and next-layer row statistics in the epilogue), for one layer and for three chained
    layers (the second and third take their RMSNorm statistics from the previous fuser)."""


    dev = torch.device("cuda")
    cfg, x, mask = layer_inputs(case, dev)
    layers = random_layers(cfg, case[0], 3, dev)
    with torch.no_grad():
        ld, chainf, chainr, chain64 = chained_layers(layers, x, mask, dtype)
        out64 = copy.deepcopy(layers[0]).double()(x.double(), mask)
        outr = ld[0](x.to(dtype), mask)
        outf = fused_layer()(ld[0], x.to(dtype), mask)
    name = "/".join(case[:3])
    check(f"layer {name} fwd", outf, outr, out64, dtype)
    check(f"3 layers {name} fwd", chainf, chainr, chain64, dtype)


TRAIN_PRECISIONS = {"fp32": (torch.float32, False), "bf16": (torch.bfloat16, False), "autocast": (torch.float32, True)}


@gpu
@pytest.mark.parametrize("precision", list(TRAIN_PRECISIONS))
@pytest.mark.parametrize("case", LAYER_CASES, ids=lambda c: "-".join(map(str, c)))
def test_layer_training_path(case, precision):
    """With autograd on, the hand-written training layer (train_layer="triton"): output and the
    gradients of x and every parameter against float64 autograd through the reference; in fp32,
    bf16, and fp32 weights under bf16 autocast (the pretraining recipe: the reference there runs under
    the same autocast)."""


    dev = torch.device("cuda")
    dtype, autocast = TRAIN_PRECISIONS[precision]
    cfg, x, mask = layer_inputs(case, dev)
    (layer,) = random_layers(cfg, case[0], 1, dev)
    grad_out = torch.randn(x.shape, device=dev)

    out64, *g64 = layer_output_and_grads(copy.deepcopy(layer).double(), x.double(), mask, grad_out)
    ld = copy.deepcopy(layer).to(dtype)
    outr, *gr = layer_output_and_grads(ld, x.to(dtype), mask, grad_out, amp=autocast)
    outf, *gf = layer_output_and_grads(ld, x.to(dtype), mask, grad_out, fused_layer(KernelOptions(train_layer="triton")),
                                       autocast)
    assert outf.dtype == outr.dtype
    tol_dtype = torch.bfloat16 if autocast else dtype
    name = "/".join(map(str, case[:3])) + f" {precision}"
    check(f"train {name} fwd", outf, outr, out64, tol_dtype)
    names = ["x"] + [n for n, _ in layer.named_parameters()]
    for pname, a, b, c in zip(names, gf, gr, g64):
        assert a.dtype == b.dtype, pname
        check(f"train {name} grad {pname}", a, b, c, tol_dtype)


@gpu
@pytest.mark.parametrize("case", [LAYER_CASES[0], LAYER_CASES[3], LAYER_CASES[4]], ids=["static", "dynamic", "softmax"])
def test_layer_training_path_compiled(case):
    """train_layer="compile": the model's layer_forward under torch.compile, same outputs and gradients."""
    dev, dtype = torch.device("cuda"), torch.bfloat16
    cfg, x, mask = layer_inputs(case, dev)
    (layer,) = random_layers(cfg, case[0], 1, dev)
    grad_out = torch.randn(x.shape, device=dev)

    out64, *g64 = layer_output_and_grads(copy.deepcopy(layer).double(), x.double(), mask, grad_out)
    ld = copy.deepcopy(layer).to(dtype)
    outr, *gr = layer_output_and_grads(ld, x.to(dtype), mask, grad_out)
    outf, *gf = layer_output_and_grads(ld, x.to(dtype), mask, grad_out, fused_layer(KernelOptions(train_layer="compile")))
    check(f"layer {case[0]} fwd (compiled)", outf, outr, out64, dtype)
    names = ["x"] + [n for n, _ in layer.named_parameters()]
    for name, a, b, c in zip(names, gf, gr, g64):
        check(f"layer {case[0]} grad {name} (compiled)", a, b, c, dtype)
