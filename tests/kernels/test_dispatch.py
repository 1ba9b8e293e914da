"""When the model takes the fused path (``aveyb.kernels.supports``, ``modeling_aveyb``) and what it
then computes.

* ``supports`` / ``unsupported_reason``: CPU, no Triton and the options the kernels do not cover
  send the model to the reference;
* the layers run through the fused path only when nothing works through the layers' module calls
  (that path calls no module): FSDP2's per-block hooks and gradient checkpointing send the layers
  through the modules instead;
* the whole encoder through the dispatch against the reference (GPU).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from parity import DTYPES, TOL, check, gpu, needs_triton, rel

from aveyb import kernels
from aveyb.config import preset_config
from aveyb.model.modeling_aveyb import AveyBModel, _layers_intercepted


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


def test_plain_layers_are_not_intercepted():
    model = AveyBModel(preset_config("tiny"))
    assert not _layers_intercepted(model.layers, training=True)


def test_hooks_and_checkpointing_intercept():
    model = AveyBModel(preset_config("tiny"))
    handle = model.layers[1].register_forward_pre_hook(lambda module, args: None)
    assert _layers_intercepted(model.layers, training=False)
    handle.remove()
    model.gradient_checkpointing_enable()
    assert _layers_intercepted(model.layers, training=True)
    assert not _layers_intercepted(model.layers, training=False)  # no checkpointing in eval


def test_fsdp2_blocks_are_intercepted():
    """fully_shard on every block, as ``wrap_model`` does (one gloo rank, in a subprocess)."""
    code = textwrap.dedent("""
        import os, torch, torch.distributed as dist
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29563")
        dist.init_process_group("gloo", rank=0, world_size=1)
        from torch.distributed.fsdp import fully_shard
        from aveyb.config import preset_config
        from aveyb.model.modeling_aveyb import AveyBModel, _layers_intercepted
        model = AveyBModel(preset_config("tiny"))
        scalars = {p for p in model.parameters() if p.dim() == 0}
        for block in model.layers:
            fully_shard(block, ignored_params=scalars & set(block.parameters()))
        print("intercepted", _layers_intercepted(model.layers, training=True))
        dist.destroy_process_group()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert "intercepted True" in proc.stdout, proc.stderr[-2000:]


def test_model_output_is_unchanged_by_the_check():
    """The dispatch change keeps the CPU reference path: same output with and without a hook."""
    torch.manual_seed(0)
    model = AveyBModel(preset_config("tiny")).eval()
    ids = torch.randint(5, 100, (2, 40))
    out = model(ids).last_hidden_state
    model.layers[0].register_forward_hook(lambda module, args, output: None)
    torch.testing.assert_close(model(ids).last_hidden_state, out)


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
