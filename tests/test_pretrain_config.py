"""Pretraining config validation, presets, overrides, optimiser groups and schedules."""

import pytest
import torch

from aveyb.engine import lr_factor, parameter_groups, parse_overrides
from aveyb.pretrain.config import PretrainConfig, resolve_config_path


@pytest.mark.parametrize("preset", ["tiny", "mini", "base"])
def test_presets_resolve_and_validate(preset):
    cfg = PretrainConfig.load(preset)
    assert cfg.global_batch_tokens % cfg.seq_len == 0
    assert cfg.accumulation_steps(1) >= 1
    assert resolve_config_path(preset).name == f"{preset}.yaml"


def test_base_is_the_paper_recipe():
    cfg = PretrainConfig.load("base")
    assert (cfg.seq_len, cfg.global_batch_tokens, cfg.max_steps) == (2048, 2**19, 360_000)
    assert (cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay, cfg.grad_clip) == (7e-4, [0.95, 0.95], 1e-18, 0.01, 1.0)
    assert (cfg.mask_rate, cfg.mask_strategy, cfg.schedule, cfg.warmup_fraction) == (0.2, "mask", "cosine", 0.1)


def test_overrides_and_errors():
    cfg = PretrainConfig.load("tiny", ["max_steps=7", "seed=3", "sources=[{type: bundled}]", "lr=1e-3"])
    assert (cfg.max_steps, cfg.seed, cfg.lr) == (7, 3, 1e-3)
    assert parse_overrides(["model_overrides={hidden_size: 32}"], PretrainConfig, "pretraining") == \
        {"model_overrides": {"hidden_size": 32}}
    with pytest.raises(ValueError, match=r"unknown pretraining option\(s\) \['learning_rate'\]"):
        PretrainConfig.load("tiny", ["learning_rate=1"])
    with pytest.raises(ValueError, match="max_steps must be an int"):
        PretrainConfig.load("tiny", ["max_steps=many"])
    with pytest.raises(ValueError, match="key=value"):
        PretrainConfig.load("tiny", ["max_steps"])
    with pytest.raises(FileNotFoundError, match="neither a file nor a preset"):
        PretrainConfig.load("no-such-config")
    with pytest.raises(ValueError, match="not a multiple"):
        PretrainConfig(seq_len=100, global_batch_tokens=1050)
    with pytest.raises(ValueError, match="not divisible"):
        PretrainConfig(seq_len=64, global_batch_tokens=64 * 12, micro_batch_size=5).accumulation_steps(1)
    with pytest.raises(ValueError, match="not divisible"):
        PretrainConfig(seq_len=64, global_batch_tokens=64 * 12, micro_batch_size=4).accumulation_steps(2)
    with pytest.raises(ValueError, match="schedule"):
        PretrainConfig(schedule="linear")


def test_weight_decay_only_on_matrices():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    model.register_parameter("alpha", torch.nn.Parameter(torch.ones(1)))
    decay, no_decay = parameter_groups(model, 0.01)
    assert all(p.dim() >= 2 for p in decay["params"]) and len(decay["params"]) == 2
    assert all(p.dim() < 2 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0


def test_schedules():
    total = 100
    cos = [lr_factor(s, total, "cosine", 0.1) for s in range(total)]
    assert cos[0] == pytest.approx(0.1) and cos[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(cos[9:], cos[10:])) and cos[-1] < 0.01
    wsd = [lr_factor(s, total, "wsd", 0.1, 0.2) for s in range(total)]
    assert wsd[50] == 1.0 and wsd[79] == 1.0 and wsd[90] == pytest.approx(0.5) and wsd[-1] < 0.1
    assert lr_factor(99, total, "constant", 0.1) == 1.0


def test_kernel_options_reach_the_model_and_bad_ones_name_the_field():
    from aveyb.data.tokenizer import load_tokenizer
    from aveyb.kernels import KernelOptions
    from aveyb.pretrain.loop import build_model

    cfg = PretrainConfig(**parse_overrides(["kernel_options={train_layer: triton, gelu: tanh}"], PretrainConfig,
                                           "pretraining"))
    model = build_model(cfg, load_tokenizer(cfg.tokenizer))
    assert model.kernel_options == KernelOptions(train_layer="triton", gelu="tanh")
    assert build_model(PretrainConfig(), load_tokenizer("bundled:bpe-4k")).kernel_options == KernelOptions()
    with pytest.raises(ValueError, match=r"kernel_options\.train_layers is not a kernel option"):
        PretrainConfig(kernel_options={"train_layers": "triton"})
    with pytest.raises(ValueError, match=r"kernel_options: KernelOptions\.train_layer='fast'"):
        PretrainConfig(kernel_options={"train_layer": "fast"})
    with pytest.raises(ValueError, match="arch='bert' has none"):
        PretrainConfig(arch="bert", kernel_options={"gelu": "tanh"})
