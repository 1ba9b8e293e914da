"""The model runs its layers through the fused path only when nothing works through the layers'
module calls (that path calls no module): FSDP2's per-block hooks and gradient checkpointing
send the layers through the modules instead."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from aveyb.config import preset_config
from aveyb.model.modeling_aveyb import AveyBModel, _layers_intercepted


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
