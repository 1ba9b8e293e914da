"""The training core shared by pretraining and fine-tuning (aveyb.engine): schedules, parameter
groups, clipping, device and precision, and the one --set parser of both commands."""

import math
from dataclasses import dataclass, field

import pytest
import torch

from aveyb import engine
from aveyb.engine import OverrideError, lr_factor, parse_overrides
from aveyb.pretrain.config import PretrainConfig
from aveyb.tasks.config import FinetuneConfig, parse_set_items

# ---- schedules ---------------------------------------------------------------------------

def _old_finetune_factor(step, total, warmup_ratio, schedule):
    """The fine-tuning schedule as it was written before it moved to the engine."""
    warmup = round(warmup_ratio * total)
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return max(0.0, (total - step) / max(1, total - warmup))


@pytest.mark.parametrize("total,warmup_ratio", [(1, 0.1), (7, 0.0), (10, 0.1), (100, 0.1), (333, 0.25)])
@pytest.mark.parametrize("schedule", ["linear", "constant"])
def test_fine_tuning_schedules_are_unchanged(total, warmup_ratio, schedule):
    for step in range(total + 1):
        assert lr_factor(step, total, schedule, warmup_ratio) == _old_finetune_factor(step, total, warmup_ratio,
                                                                                       schedule)


def test_warmup_then_each_shape():
    total = 100
    for schedule in engine.SCHEDULES:
        assert [lr_factor(s, total, schedule, 0.1) for s in range(10)] == pytest.approx([(s + 1) / 10
                                                                                           for s in range(10)])
    cos = [lr_factor(s, total, "cosine", 0.1, min_ratio=0.1) for s in range(total)]
    assert cos[10] == 1.0 and all(a >= b for a, b in zip(cos[10:], cos[11:])) and cos[-1] >= 0.1
    lin = [lr_factor(s, total, "linear", 0.1) for s in range(total + 1)]
    assert lin[10] == 1.0 and lin[55] == pytest.approx(0.5) and lin[total] == 0.0
    assert lr_factor(total, total, "linear", 0.1, min_ratio=0.2) == pytest.approx(0.2)
    wsd = [lr_factor(s, total, "wsd", 0.1, 0.2) for s in range(total)]
    assert set(wsd[10:80]) == {1.0} and wsd[90] == pytest.approx(0.5)
    assert lr_factor(0, 10, "cosine", 0.0) == 1.0  # no warm-up
    with pytest.raises(ValueError, match=r"schedule must be one of \['cosine', 'wsd', 'linear', 'constant'\]"):
        lr_factor(50, total, "step", 0.1)


def test_the_fine_tuning_scheduler_follows_the_engine():
    from aveyb.tasks.training import make_optimizer, make_scheduler

    cfg = FinetuneConfig(lr=1e-3, warmup_ratio=0.2)
    model = torch.nn.Linear(2, 2)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, 10, cfg)
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([1e-3 * lr_factor(s, 10, "linear", 0.2) for s in range(10)])


# ---- optimizer ---------------------------------------------------------------------------

def test_parameter_groups_decay_only_matrices():
    from aveyb.config import preset_config
    from aveyb.model.modeling_aveyb import AveyBForMaskedLM

    model = AveyBForMaskedLM(preset_config("tiny", vocab_size=128, dynamic_norm="softmax"))
    model.model.layers[0].enricher.bias.requires_grad_(False)
    decay, no_decay = engine.parameter_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    undecayed = {names[id(p)].rpartition(".")[2] for p in no_decay["params"]}
    assert {"alpha", "tau", "bias", "weight"} <= undecayed  # one-number parameters, biases, norm scales
    assert all(names[id(p)].endswith(("norm.weight", "bias", "alpha", "tau")) for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == sum(p.requires_grad for p in model.parameters())
    optimizer = engine.adamw(model, lr=1e-3, betas=[0.9, 0.95], eps=1e-8, weight_decay=0.01)
    assert optimizer.defaults["betas"] == (0.9, 0.95) and not optimizer.defaults.get("fused")


def test_clipping_and_the_step():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 1))
    model(torch.randn(5, 4)).pow(2).sum().mul(100).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
    assert norm > 1
    assert engine.clip_gradients(model.parameters(), None) == pytest.approx(norm, rel=1e-6)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))  # measured, not clipped
    assert engine.clip_gradients(model.parameters(), 1.0) == pytest.approx(norm, rel=1e-6)
    clipped = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))
    assert clipped == pytest.approx(1.0, rel=1e-5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    engine.optimizer_step(model, optimizer, 1.0)
    assert all(p.grad is None for p in model.parameters())
    assert all(not torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert engine.clip_gradients(model.parameters(), 1.0) == 0.0  # no gradients


# ---- set-up ------------------------------------------------------------------------------

def test_device_precision_and_seed():
    cpu = torch.device("cpu")
    assert engine.pick_device("cpu") == cpu
    assert engine.pick_device("cuda", local_rank=3) == torch.device("cuda", 3)
    assert engine.pick_device("cuda:1", local_rank=3) == torch.device("cuda", 1)
    assert engine.amp_dtype("auto", cpu) is None and engine.amp_dtype("fp32", torch.device("cuda", 0)) is None
    assert engine.amp_dtype("auto", torch.device("cuda", 0)) is torch.bfloat16
    assert engine.amp_dtype("bf16", cpu) is torch.bfloat16
    with engine.autocast("bf16", cpu):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with engine.autocast("fp32", cpu):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(ValueError, match=r"precision must be one of \['auto', 'bf16', 'fp32'\]"):
        engine.amp_dtype("fp16", cpu)
    engine.seed_everything(5)
    a = torch.rand(3)
    engine.seed_everything(5)
    assert torch.equal(a, torch.rand(3))


# ---- --set -------------------------------------------------------------------------------

@dataclass
class _Options:
    lr: float = 1e-3
    steps: int = 10
    clip: float | None = 1.0
    name: str = "x"
    prefix: str | None = None
    flag: bool = False
    columns: list[str] | None = None
    pair: tuple[float, float] = (0.9, 0.95)
    table: dict = field(default_factory=dict)


def test_values_fit_the_field_types():
    parsed = parse_overrides(["lr=1e-4", "steps=3", "clip=", "name=2020", "prefix=Query: ", "flag=true",
                              "columns=text", "pair=[0.8, 0.9]", "table={a: 1}"], _Options, "test")
    assert parsed == {"lr": 1e-4, "steps": 3, "clip": None, "name": "2020", "prefix": "Query: ", "flag": True,
                      "columns": "text", "pair": [0.8, 0.9], "table": {"a": 1}}
    assert parse_overrides(["name=", "prefix=null", "name = spaced"], _Options, "test") == \
        {"name": "spaced", "prefix": None}
    assert parse_overrides(['name="quoted: yes"', "lr=2", "clip=0.5"], _Options, "test") == \
        {"name": "quoted: yes", "lr": 2, "clip": 0.5}


@pytest.mark.parametrize("item,message", [
    ("steps", r"--set expects key=value, got 'steps'"),
    ("stpes=3", r"unknown test option\(s\) \['stpes'\] \(did you mean 'steps'\?\); known: \['clip', "),
    ("size=red", r"unknown test option\(s\) \['size'\]; known: "),
    ("steps=many", r"--set steps=many: steps must be an int, got 'many'"),
    ("steps=2.5", r"--set steps=2.5: steps must be an int, got 2.5"),
    ("lr=fast", r"--set lr=fast: lr must be a number, got 'fast'"),
    ("clip=high", r"--set clip=high: clip must be a number or null, got 'high'"),
    ("flag=maybe", r"--set flag=maybe: flag must be true or false, got 'maybe'"),
    ("flag=", r"--set flag=: flag needs a value \(true or false\)"),
    ("pair=0.9", r"--set pair=0.9: pair must be a tuple, got 0.9"),
    ("table=[1]", r"--set table=\[1\]: table must be a dict, got \[1\]"),
    ("table={a: [1}", r"--set table={a: \[1}: not valid YAML"),
])
def test_errors_name_the_field_and_what_it_takes(item, message):
    with pytest.raises(OverrideError, match=message):
        parse_overrides([item], _Options, "test")


def test_both_commands_read_set_the_same_way():
    items = ["lr=2e-4", "seed=3", "precision=bf16"]
    assert PretrainConfig.load("tiny", items).lr == parse_set_items(items)["lr"] == 2e-4
    assert PretrainConfig.load("tiny", ["wandb="]).wandb == ""
    assert parse_set_items(["max_length="]) == {"max_length": None}
    assert parse_set_items(["query_prefix=Query: "]) == {"query_prefix": "Query: "}
    for load in (lambda items: PretrainConfig.load("tiny", items), parse_set_items):
        with pytest.raises(ValueError, match=r"--set seed=one: seed must be an int, got 'one'"):
            load(["seed=one"])
        with pytest.raises(ValueError, match=r"\(did you mean 'seed'\?\)"):
            load(["sed=1"])
    # choices are the config's to check, and its message lists them
    with pytest.raises(ValueError, match=r"schedule must be one of \['cosine', 'wsd', 'constant'\], got 'step'"):
        PretrainConfig.load("tiny", ["schedule=step"])
    with pytest.raises(ValueError, match=r"FinetuneConfig.qa_head='x'; choose one of \['start_end', 'in_span'\]"):
        FinetuneConfig(**parse_set_items(["qa_head=x"]))
