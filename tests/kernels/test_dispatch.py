"""Which backend the model's modules run (``resolve_kernel_backend``, ``set_kernel_backend``,
``aveyb.kernels.supports``) and that the modules are always called, whichever it is.

* ``supports`` / ``unsupported_reason``: no Triton and the options the kernels do not cover resolve
  "auto" to the reference, and make "triton" an error naming the reason;
* the backend is chosen once, for every module, and switched with ``set_kernel_backend``;
* every layer is called as a module on every backend: forward hooks fire, gradient checkpointing
  recomputes through the layer's backend, FSDP2's per-block hooks gather the parameters the
  backend's op then reads; a hook that replaces a layer's output is honoured by the fused path (the
  next layer's RMSNorm statistics are not reused for another tensor);
* the whole encoder through the fused backend against the reference (interpreter and GPU).
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch
from parity import DTYPES, TOL, check, check_interpreted, gpu, interpreter, needs_triton, rel

from aveyb import kernels
from aveyb.config import preset_config
from aveyb.model.layers import REFERENCE
from aveyb.model.modeling_aveyb import AveyBForMaskedLM, AveyBModel, resolve_kernel_backend


def tiny(**overrides):
    return preset_config("tiny", **{"vocab_size": 120, **overrides})


def layer_backends(model):
    return {type(m.backend).__name__ for m in [model.model.ranker, *model.model.layers]}


# ---- CPU: which backend ------------------------------------------------------------------------
def test_supports_is_false_on_cpu():
    assert not kernels.supports(tiny(), torch.device("cpu"))
    assert "CUDA" in kernels.unsupported_reason(tiny(), torch.device("cpu"))


def test_unsupported_options_are_named(monkeypatch):
    monkeypatch.setattr(kernels, "available", lambda: True)
    cuda = torch.device("cuda")
    assert kernels.supports(preset_config("base"), cuda) and kernels.supports(preset_config("base"))
    assert "compression" in kernels.unsupported_reason(tiny(compression=False), cuda)
    assert "split_size" in kernels.unsupported_reason(tiny(split_size=1024))


def test_import_without_triton(monkeypatch):
    """``aveyb.kernels`` never imports triton at import time; supports() is False without it, and
    "auto" resolves to the reference."""
    import importlib

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    assert not kernels.available()
    assert not kernels.supports(tiny(), torch.device("cuda"))
    assert resolve_kernel_backend("auto", tiny()) is REFERENCE
    with pytest.raises(ValueError, match="kernel_backend='triton'.*triton is not installed"):
        resolve_kernel_backend("triton", tiny())


@needs_triton
def test_backend_is_resolved_once_for_every_module():
    """"auto" resolves to the fused backend where the kernels cover the configuration, shared by the
    ranker, every layer and the loss; "reference" (and its older name "torch") to the reference;
    set_kernel_backend switches all of them and keeps the config's run-time setting in step."""
    model = AveyBForMaskedLM(tiny())
    assert layer_backends(model) == {"TritonBackend"} and model.backend is model.model.layers[0].backend
    assert model.kernel_options == kernels.KernelOptions()
    for name in ("reference", "torch"):
        model.set_kernel_backend(name)
        assert layer_backends(model) == {"ReferenceBackend"} and model.backend is REFERENCE
        assert model.config.kernel_backend == name
    options = kernels.KernelOptions(gelu="tanh")
    model.set_kernel_backend("triton", options)
    assert model.backend.strict and model.backend.options is options and model.model.kernel_options is options
    assert model.model.ranker.backend is model.backend
    assert AveyBForMaskedLM(tiny(compression=False)).backend is REFERENCE  # auto: not fused
    with pytest.raises(ValueError, match="kernel_backend='triton'.*compression=False"):
        AveyBForMaskedLM(tiny(compression=False, kernel_backend="triton"))
    with pytest.raises(ValueError, match="kernel_backend='cuda' is not allowed"):
        model.set_kernel_backend("cuda")
    with pytest.raises(TypeError, match="KernelOptions"):
        model.set_kernel_backend("auto", {"gelu": "tanh"})


@needs_triton
def test_strict_triton_refuses_cpu_inputs():
    model = AveyBModel(tiny(kernel_backend="triton"))
    with pytest.raises(RuntimeError, match="kernel_backend='triton' needs CUDA inputs"):
        model(torch.randint(0, 120, (1, 20)))


@needs_triton
def test_copies_forget_the_last_row_statistics():
    """A model's fused backend survives deepcopy and pickling (what transformers and the trainers do)
    without the statistics it keeps for the next layer."""
    model = AveyBModel(tiny())
    model.backend._last = ("not picklable", lambda: None)
    twin = copy.deepcopy(model)
    assert twin.layers[0].backend is twin.backend and twin.backend is not model.backend
    assert twin.backend._last is None and twin.backend.options == model.backend.options
    assert pickle.loads(pickle.dumps(model.backend))._last is None


@needs_triton
def test_row_statistics_are_reused_only_for_the_same_tensor():
    """The fused backend hands the statistics of a layer's output to the next layer only when that
    layer's input is the very same, unchanged tensor."""
    backend = kernels.TritonBackend()
    out, stats = torch.randn(4, 3), object()
    backend._remember(out, stats)
    assert backend._stats_of(out) is stats
    assert backend._stats_of(out.clone()) is None  # a hook returned another tensor
    out.mul_(2)  # a hook changed it in place
    assert backend._stats_of(out) is None
    backend._remember(out, None)  # a training step returns none
    assert backend._stats_of(out) is None


# ---- CPU: the modules are always called ----------------------------------------------------------
BACKENDS = ["reference", pytest.param("auto", marks=needs_triton)]


def counting(module):
    """Count the calls of ``module``'s backend op (``layer`` for a layer), on this module only."""
    calls, backend = [], module.backend

    class Counting:
        name = backend.name

        def layer(self, *args):
            calls.append(1)
            return backend.layer(*args)

    module.backend = Counting()
    return calls


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_hooks_fire_under_every_backend(backend):
    """A forward hook on a layer fires under each backend, and one that replaces the output changes
    the model's output the same way under each."""
    torch.manual_seed(0)
    model = AveyBModel(tiny(kernel_backend=backend)).eval()
    ids = torch.randint(5, 100, (2, 40))
    with torch.no_grad():
        plain = model(ids).last_hidden_state
        fired = []
        handle = model.layers[1].register_forward_hook(lambda module, args, out: fired.append(module) or 1.5 * out)
        hooked = model(ids).last_hidden_state
    assert fired == [model.layers[1]]
    assert not torch.allclose(hooked, plain)
    handle.remove()
    reference = copy.deepcopy(model)
    reference.set_kernel_backend("reference")
    reference.layers[1].register_forward_hook(lambda module, args, out: 1.5 * out)
    with torch.no_grad():
        torch.testing.assert_close(hooked, reference(ids).last_hidden_state)


@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_checkpointing_keeps_the_backend(backend, reentrant):
    """With gradient checkpointing the layers still run their backend's op, in the forward and again
    in the backward's recomputation, and the gradients equal those without checkpointing."""
    torch.manual_seed(0)
    model = AveyBForMaskedLM(tiny(kernel_backend=backend)).train()
    kind = type(model.backend).__name__
    ids = torch.randint(5, 100, (2, 40))
    model(input_ids=ids, labels=ids).loss.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    assert layer_backends(model) == {kind}
    calls = counting(model.model.layers[2])
    model(input_ids=ids, labels=ids).loss.backward()
    assert len(calls) == 2, "the layer's backend must run in the forward and in the recomputation"
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, want[name], msg=name)


@pytest.mark.slow
@needs_triton
def test_fsdp2_blocks_run_their_backend():
    """fully_shard on every block, as ``wrap_model`` does (one gloo rank, in a subprocess): the blocks
    keep the model's backend, their op runs with the gathered parameters, and the output is the
    unsharded model's."""
    code = textwrap.dedent("""
        import copy, os, torch, torch.distributed as dist
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29563")
        dist.init_process_group("gloo", rank=0, world_size=1)
        from torch.distributed.fsdp import fully_shard
        from aveyb.config import preset_config
        from aveyb.model.modeling_aveyb import AveyBModel
        torch.manual_seed(0)
        model = AveyBModel(preset_config("tiny", vocab_size=120)).eval()
        ids = torch.randint(5, 100, (2, 40))
        with torch.no_grad():
            want = model(ids).last_hidden_state
        backend, seen = model.backend, []
        original = backend.layer
        backend.layer = lambda x, mask, w, spec: seen.append(type(w.enricher_weight).__name__) or original(x, mask, w, spec)
        for block in model.layers:
            fully_shard(block)
        with torch.no_grad():
            got = model(ids).last_hidden_state
        print("backend", type(backend).__name__, all(block.backend is backend for block in model.layers))
        print("calls", len(seen), sorted(set(seen)))
        print("equal", torch.allclose(got, want, atol=1e-6))
        dist.destroy_process_group()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=False)
    assert "backend TritonBackend True" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert "calls 4 ['Parameter']" in proc.stdout or "calls 4 ['Tensor']" in proc.stdout, proc.stdout
    assert "equal True" in proc.stdout, proc.stdout


# ---- Triton's interpreter (CPU, float32): the whole encoder through the fused backend --------------
def _interpreted_pair(**overrides):
    torch.manual_seed(1)
    cfg = tiny(hidden_size=32, split_size=16, num_hidden_layers=3, **overrides)
    fused_model = AveyBForMaskedLM(cfg)
    assert type(fused_model.backend).__name__ == "TritonBackend"
    ref_model = copy.deepcopy(fused_model)
    ref_model.set_kernel_backend("reference")
    ids = torch.randint(5, 100, (2, 37))
    mask = torch.ones(2, 37, dtype=torch.long)
    mask[1, 21:] = 0
    return fused_model, ref_model, ids, mask


@interpreter
def test_model_interpreted_with_a_hook():
    """Inference through the fused backend in the interpreter, a forward hook replacing one layer's
    output: the hook fires, the next layer computes its RMSNorm statistics afresh for the new tensor,
    and the output matches the reference model with the same hook (float64 as the judge)."""
    fused_model, ref_model, ids, mask = _interpreted_pair()
    ref64 = copy.deepcopy(ref_model).double()
    fired = []
    for model in (fused_model, ref_model, ref64):
        model.model.layers[1].register_forward_hook(lambda module, args, out: fired.append(1) or out * 0.5 + 0.25)
    with torch.no_grad():
        got, want, want64 = (m.model(input_ids=ids, attention_mask=mask).last_hidden_state
                             for m in (fused_model, ref_model, ref64))
    assert len(fired) == 3
    check_interpreted("model with a hook", rel(got, want64), rel(want, want64))


@interpreter
def test_model_training_interpreted_with_checkpointing():
    """A training step through the fused backend's training layer (train_layer="triton") with
    gradient checkpointing, in the interpreter: loss and every gradient match the reference's."""
    fused_model, ref_model, ids, mask = _interpreted_pair()
    fused_model.set_kernel_backend("auto", kernels.KernelOptions(train_layer="triton"))
    fused_model.train().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    calls = counting(fused_model.model.layers[0])
    labels = torch.where(torch.rand(ids.shape) < 0.4, ids, torch.full_like(ids, -100))
    grads = []
    for model in (fused_model, ref_model.train()):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert len(calls) == 2
    for name, want in grads[1].items():
        check_interpreted(f"grad {name}", rel(grads[0][name], want), 1e-6)


@gpu
@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
def test_model_fused_matches_reference_with_padding(dtype):
    """The whole encoder through the dispatch: a padded batch with T not divisible by S."""
    from aveyb.architectures import build_masked_lm

    torch.manual_seed(3)
    dev = torch.device("cuda")
    ref_model = build_masked_lm("avey-b", "tiny", 211, hidden_size=64, split_size=32, num_retrieved_splits=2,
                                kernel_backend="reference").to(dev)
    fused_model = build_masked_lm("avey-b", "tiny", 211, hidden_size=64, split_size=32, num_retrieved_splits=2,
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
        ref_model = build_masked_lm("avey-b", "tiny", 211, hidden_size=128, split_size=32, num_retrieved_splits=2,
                                    kernel_backend="reference").to(dev)
        fused_model = build_masked_lm("avey-b", "tiny", 211, hidden_size=128, split_size=32, num_retrieved_splits=2,
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
def test_forward_hook_on_a_fused_layer(dtype):
    """On CUDA, a forward hook on a fused layer fires and its replaced output is what the next fused
    layer reads (its RMSNorm statistics computed afresh), as on the reference path."""
    from aveyb.architectures import build_masked_lm

    torch.manual_seed(6)
    dev = torch.device("cuda")
    fused_model = build_masked_lm("avey-b", "tiny", 211, hidden_size=128, split_size=32, num_retrieved_splits=2,
                                  kernel_backend="triton").to(dev)
    ref_model = copy.deepcopy(fused_model)
    ref_model.set_kernel_backend("reference")
    ref64 = copy.deepcopy(ref_model).double()
    fired = []
    for model in (fused_model, ref_model, ref64):
        model.model.layers[1].register_forward_hook(lambda module, args, out: fired.append(1) or out * 0.5 + 0.25)
    ids = torch.randint(0, 211, (2, 150), device=dev)
    with torch.no_grad():
        out64 = ref64.model(input_ids=ids).last_hidden_state
        outr = ref_model.to(dtype).model(input_ids=ids).last_hidden_state
        outf = fused_model.to(dtype).model(input_ids=ids).last_hidden_state
    assert len(fired) == 3
    check("model fwd (hooked fused layer)", outf, outr, out64, dtype)


@gpu
@needs_triton
@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_gradient_checkpointing_on_fused_layers(reentrant):
    """On CUDA, gradient checkpointing runs each layer's fused op in the forward and again in the
    recomputation (the hand-written training layer), with the gradients of the unchecked model."""
    from aveyb.architectures import build_masked_lm

    torch.manual_seed(7)
    dev = torch.device("cuda")
    model = build_masked_lm("avey-b", "tiny", 211, hidden_size=64, split_size=32, num_retrieved_splits=2,
                            kernel_backend="triton").to(dev).train()
    model.set_kernel_backend(options=kernels.KernelOptions(train_layer="triton"))
    ids = torch.randint(0, 211, (2, 150), device=dev)
    model(input_ids=ids, labels=ids).loss.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    calls = counting(model.model.layers[1])
    model(input_ids=ids, labels=ids).loss.backward()
    assert len(calls) == 2 and layer_backends(model) == {"TritonBackend", "Counting"}
    for name, param in model.named_parameters():
        assert rel(param.grad, want[name]) < 1e-4, name


def test_kernel_modules_import_without_cycles():
    """The modules of aveyb.kernels import each other one way (layer -> the operations ->
    _triton_utils, tuning), at module level: no circle, and none dodged by an import in a function
    (the package's entry points and optional dependencies such as Gluon are the only imports there)."""
    import ast
    import pathlib

    import aveyb.kernels

    package = pathlib.Path(aveyb.kernels.__file__).parent
    graph = {}
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        graph[path.stem] = {node.module.rpartition(".")[2] for node in tree.body
                            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aveyb.kernels.")}
        graph[path.stem] |= {alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                             and node.module == "aveyb.kernels" for alias in node.names}
    done, path = set(), []

    def visit(module):
        assert module not in path, f"import cycle: {' -> '.join(path + [module])}"
        if module in done:
            return
        path.append(module)
        for dep in graph.get(module, ()):
            visit(dep)
        path.pop()
        done.add(module)

    for module in graph:
        visit(module)
    assert graph["layer"] >= {"enricher", "mix", "fuser", "rms_norm"}
    assert not any("layer" in deps for name, deps in graph.items() if name != "layer")
