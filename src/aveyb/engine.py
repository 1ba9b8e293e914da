"""What pretraining (:mod:`aveyb.pretrain.loop`) and fine-tuning (:mod:`aveyb.tasks.training`)
share: seeding, the device, bf16 autocast, AdamW and its parameter groups, the learning-rate
schedules, gradient clipping with the optimizer step, the progress bar, and the one parser of
``--set FIELD=VALUE`` for both commands.

Each stage keeps its own loop around these (pretraining: ranks, a packed stream, exact resume;
fine-tuning: one process, task losses, per-run checkpoints); docs/pretraining.md says why
neither is built on a third-party trainer.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import random
import sys
import types
import typing
from contextlib import nullcontext
from typing import Any

import torch

PRECISIONS = ("auto", "bf16", "fp32")
SCHEDULES = ("cosine", "wsd", "linear", "constant")


class OverrideError(ValueError):
    """A ``--set`` item that names no field or gives a value the field cannot take."""


# ---- set-up ------------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (every device)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: this rank's GPU when there is one, else the CPU; ``cuda`` alone means this rank's GPU."""
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 when asked for, or on CUDA under ``auto``; None means fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def autocast(precision: str, device: torch.device):
    """A fresh autocast context for ``precision`` on ``device`` (a no-op context for fp32)."""
    dtype = amp_dtype(precision, device)
    return torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else nullcontext()


# ---- optimizer and schedule --------------------------------------------------------------

def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on tensors of rank >= 2 (matrices, embeddings, Avey-B's ``P`` and ``D``);
    none on biases, norm scales and one-number parameters (``alpha``, ``tau``)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(model: torch.nn.Module, *, lr: float, betas, eps: float, weight_decay: float,
          fused: bool = False) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups`; ``fused`` only where every parameter is on CUDA."""
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, betas=tuple(betas), eps=eps,
                             fused=fused or None)


def lr_factor(step: int, total: int, schedule: str, warmup_fraction: float = 0.1,
              decay_fraction: float = 0.2, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based) of ``total``.

    Every schedule warms up linearly over ``round(warmup_fraction · total)`` steps, then
    ``cosine``: cosine to ``min_ratio``; ``wsd``: constant, then linear to ``min_ratio`` over the
    last ``decay_fraction`` of the steps; ``linear``: linear to ``min_ratio`` at step ``total``;
    ``constant``: constant. A pure function of the step, so resuming needs only the step.
    """
    warmup = int(round(warmup_fraction * total))
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":
        return min_ratio + (1 - min_ratio) * max(0.0, (total - step) / max(1, total - warmup))
    if schedule == "wsd":
        decay = max(1, int(round(decay_fraction * total)))
        start = total - decay
        if step < start:
            return 1.0
        progress = min(1.0, (step - start) / decay)
        return min_ratio + (1 - min_ratio) * (1 - progress)
    raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {schedule!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


# ---- the optimizer step ------------------------------------------------------------------

def clip_gradients(parameters, max_norm: float | None) -> float:
    """The global gradient norm, after clipping it to ``max_norm`` (when > 0).

    One formula for one process, DDP (gradients already averaged) and FSDP2 (gradients are
    DTensor shards, whose norm ``clip_grad_norm_`` reduces over the ranks).
    """
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return 0.0
    if max_norm is not None and max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    elif hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    else:
        norm = torch.nn.utils.clip_grad_norm_(params, math.inf)
    if hasattr(norm, "full_tensor"):  # a DTensor holds each rank's part of the norm
        norm = norm.full_tensor()
    return float(norm)


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, max_norm: float | None) -> float:
    """Clip, step and clear the gradients; returns the norm before clipping."""
    norm = clip_gradients(model.parameters(), max_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm


# ---- progress ----------------------------------------------------------------------------

def progress_bar(iterable=None, total=None, desc: str = "", enabled: bool = True, initial: int = 0):
    """A tqdm bar on stderr (a silent one when not ``enabled``); a finished bar stays on screen
    with its last numbers (the final loss)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=True,
                initial=initial, file=sys.stderr)


# ---- --set FIELD=VALUE -------------------------------------------------------------------

def parse_overrides(items: list[str] | None, config_cls, what: str) -> dict[str, Any]:
    """``["lr=1e-4", "sources=[{type: bundled}]"]`` -> values for the fields of the dataclass
    ``config_cls``; ``what`` names the options in messages (``pretraining``, ``fine-tuning``).

    A value is read as YAML and then fitted to the field's type: ``1e-4`` is a number for a
    float field (YAML 1.1 reads it as a string), a string field takes the text as typed when YAML
    would read something else (``2020``, ``Query: ``), and an empty value is null for a field
    that may be null, else the empty string; a field typed ``Any`` takes the YAML value, a
    number-like string as a number and an empty value as null. A field that does not exist, or a value of the wrong
    type, is an :class:`OverrideError` naming the field and what it takes; the config's own
    validation then checks ranges and choices.
    """
    hints = typing.get_type_hints(config_cls)
    names = [f.name for f in dataclasses.fields(config_cls)]
    out: dict[str, Any] = {}
    for item in items or []:
        key, raw = split_item(item)
        check_known({key: None}, names, what)
        out[key] = parse_value(key, raw, hints[key])
    return out


def split_item(item: str) -> tuple[str, str]:
    """``"lr=1e-4"`` -> ``("lr", "1e-4")``: the key stripped, the value as typed."""
    if "=" not in item:
        raise OverrideError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    return key.strip(), raw


def check_known(values, names, what: str) -> None:
    """Refuse keys that are not among ``names``, suggesting the nearest one."""
    unknown = sorted(set(values) - set(names))
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise OverrideError(f"unknown {what} option(s) {unknown}{hint}; known: {sorted(names)}")


def parse_value(key: str, raw: str, hint) -> Any:
    """One ``--set`` value for a field of type ``hint`` (see :func:`parse_overrides`)."""
    import yaml

    arms = _arms(hint)
    free = Any in arms  # a value of no declared type (a key inside a free-form mapping): YAML as read
    if not raw.strip():
        if type(None) in arms or free:
            return None
        if str in arms:
            return ""
        raise OverrideError(f"--set {key}=: {key} needs a value ({describe_type(hint)})")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise OverrideError(f"--set {key}={raw}: not valid YAML ({str(err).splitlines()[0]})") from None
    if isinstance(value, str) and (float in arms or free):
        try:
            value = float(value)
        except ValueError:
            pass
    containers = any(_container(a) for a in arms)
    if str in arms and not containers and not isinstance(value, str) and not (value is None and type(None) in arms):
        value = raw  # e.g. a dataset config named 2020, or a prefix "Query: "
    if not accepts(value, hint):
        raise OverrideError(f"--set {key}={raw}: {key} must be {describe_type(hint)}, got {value!r}")
    return value


def accepts(value, hint) -> bool:
    """Whether ``value`` has the type ``hint`` (scalars strictly; containers by kind only, their
    contents are the config's to check)."""
    return any(_accepts_arm(value, arm) for arm in _arms(hint))


def describe_type(hint) -> str:
    names = {bool: "true or false", int: "an int", float: "a number", str: "a string", type(None): "null"}
    parts = [names.get(a) or (f"a {_origin(a).__name__}" if _container(a) else str(a)) for a in _arms(hint)]
    return " or ".join(dict.fromkeys(parts))


def _arms(hint) -> tuple:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _origin(hint):
    return typing.get_origin(hint) or hint


def _container(hint) -> bool:
    return _origin(hint) in (list, tuple, dict)


def _accepts_arm(value, arm) -> bool:
    if arm is Any:
        return True
    if arm is type(None):
        return value is None
    if arm is bool:
        return isinstance(value, bool)
    if arm is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if arm is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if arm is str:
        return isinstance(value, str)
    if _origin(arm) in (list, tuple):
        # a list of strings also takes one string (the config makes it a list of one)
        return isinstance(value, (list, tuple)) or (typing.get_args(arm) == (str,) and isinstance(value, str))
    if _origin(arm) is dict:
        return isinstance(value, dict)
    return True
