"""The pretraining run configuration: one flat, validated dataclass.

A YAML file (or a preset name: ``tiny``, ``mini``, ``base``, shipped in
``aveyb/configs/pretrain``) gives values for these fields; ``--set key=value`` overrides
any of them (read by :func:`aveyb.engine.parse_overrides`, as ``aveyb finetune``'s are: values
are YAML, so ``--set sources='[{type: bundled}]'`` works). Unknown keys and impossible values
are errors before anything is built.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from aveyb.engine import PRECISIONS, accepts, check_known, describe_type, parse_overrides

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs" / "pretrain"
SCHEDULES = ("cosine", "wsd", "constant")
DISTRIBUTED = ("ddp", "fsdp2")


@dataclass
class PretrainConfig:
    # model: built by aveyb.architectures.build_masked_lm(arch, model_preset, vocab, **model_overrides)
    arch: str = "avey-b"
    model_preset: str = "tiny"
    model_overrides: dict = field(default_factory=dict)
    # tokenizer and data
    tokenizer: str = "bundled:bpe-4k"
    sources: list = field(default_factory=lambda: [{"type": "bundled"}])
    seq_len: int = 128
    keep_document_boundaries: bool = False
    holdout_every: int = 100          # every n-th document goes to validation (0: no validation)
    val_sequences: int = 64
    # masking (SPEC 9)
    mask_rate: float = 0.2
    mask_strategy: str = "mask"
    # batch
    global_batch_tokens: int = 4096   # tokens per optimizer step, all ranks and micro-steps together
    micro_batch_size: int = 16        # sequences per forward pass on one rank
    max_steps: int = 100
    # optimiser and schedule (SPEC 9)
    lr: float = 7e-4
    betas: list = field(default_factory=lambda: [0.95, 0.95])
    eps: float = 1e-18
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    schedule: str = "cosine"
    warmup_fraction: float = 0.1
    decay_fraction: float = 0.2       # wsd: share of steps in the final decay
    min_lr_ratio: float = 0.0
    # runtime
    precision: str = "auto"           # auto: bf16 autocast on CUDA, fp32 on CPU
    tf32: bool = True
    compile: bool = False
    # Avey-B's fused kernels: fields of aveyb.kernels.KernelOptions, e.g. {train_layer: triton}
    kernel_options: dict = field(default_factory=dict)
    distributed: str = "ddp"
    seed: int = 0
    device: str = "auto"
    # logging and checkpoints
    log_every: int = 10
    eval_every: int = 100
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    tensorboard: bool = True
    wandb: str = ""                   # a wandb project name turns wandb on
    progress_bar: bool = True
    peak_flops: float = 0.0           # per device, for MFU; 0: look up the GPU, none on CPU

    def __post_init__(self):
        self.validate()

    # ---- validation ----------------------------------------------------------------------
    def validate(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if hints[f.name] is float and isinstance(value, str):  # YAML reads "1e-3" as a string
                try:
                    setattr(self, f.name, float(value))
                except ValueError:
                    pass
            _check_type(f.name, getattr(self, f.name), hints[f.name])
        from aveyb.architectures import architecture_names

        if self.arch not in architecture_names():
            raise ValueError(f"arch={self.arch!r} is not a registered architecture; choose one of "
                             f"{list(architecture_names())} (or add yours with aveyb.architectures.register_architecture)")
        for name in ("seq_len", "global_batch_tokens", "micro_batch_size", "max_steps", "log_every",
                     "eval_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.global_batch_tokens % self.seq_len:
            raise ValueError(f"global_batch_tokens={self.global_batch_tokens} is not a multiple of "
                             f"seq_len={self.seq_len}")
        if not 0 < self.mask_rate < 1:
            raise ValueError(f"mask_rate must be in (0, 1), got {self.mask_rate}")
        if self.mask_strategy not in ("mask", "bert"):
            raise ValueError(f"mask_strategy must be 'mask' or 'bert', got {self.mask_strategy!r}")
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("distributed", self.distributed, DISTRIBUTED)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.lr <= 0 or self.eps <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("lr and eps must be > 0, weight_decay and grad_clip >= 0")
        for name in ("warmup_fraction", "decay_fraction", "min_lr_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.sources:
            raise ValueError("sources must name at least one data source")
        if self.holdout_every < 0 or self.val_sequences < 0:
            raise ValueError("holdout_every and val_sequences must be >= 0")
        if self.kernel_options:
            self.kernel_options_object()

    def kernel_options_object(self):
        """``kernel_options`` as an ``aveyb.kernels.KernelOptions`` (validated: a bad key or value is an
        error naming ``kernel_options.<field>``)."""
        from aveyb.kernels.options import KernelOptions

        if self.kernel_options and self.arch != "avey-b":
            raise ValueError(f"kernel_options set the fused Avey-B kernels; arch={self.arch!r} has none")
        fields = [f.name for f in dataclasses.fields(KernelOptions)]
        for key in self.kernel_options:
            if key not in fields:
                raise ValueError(f"kernel_options.{key} is not a kernel option; choose from {fields}")
        try:
            return KernelOptions(**self.kernel_options)
        except (TypeError, ValueError) as err:
            raise ValueError(f"kernel_options: {err}") from None

    @property
    def global_batch_sequences(self) -> int:
        return self.global_batch_tokens // self.seq_len

    def accumulation_steps(self, world_size: int) -> int:
        per_step = self.micro_batch_size * world_size
        if self.global_batch_sequences % per_step:
            raise ValueError(
                f"global batch of {self.global_batch_sequences} sequences (global_batch_tokens="
                f"{self.global_batch_tokens} / seq_len={self.seq_len}) is not divisible by micro_batch_size × "
                f"ranks = {self.micro_batch_size} × {world_size}")
        return self.global_batch_sequences // per_step

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict) -> PretrainConfig:
        check_known(values, [f.name for f in dataclasses.fields(cls)], "pretraining")
        return cls(**values)

    @classmethod
    def load(cls, config: str | os.PathLike | None, overrides: list[str] | None = None) -> PretrainConfig:
        """Read a YAML file or preset name and apply ``key=value`` overrides."""
        values = read_config_file(config) if config else {}
        values.update(parse_overrides(overrides, cls, "pretraining"))
        return cls.from_dict(values)


def resolve_config_path(config: str | os.PathLike) -> Path:
    """A config path, or a preset name (``tiny``) found in the packaged presets."""
    path = Path(config)
    if path.is_file():
        return path
    preset = PRESET_DIR / f"{config}.yaml"
    if preset.is_file():
        return preset
    available = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    raise FileNotFoundError(f"config {str(config)!r} is neither a file nor a preset; presets: {available}")


def read_config_file(config: str | os.PathLike) -> dict:
    path = resolve_config_path(config)
    with open(path) as fh:
        values = yaml.safe_load(fh) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a pretraining config must be a mapping of keys to values")
    return values


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _check_type(name: str, value, hint) -> None:
    if not accepts(value, hint):
        raise ValueError(f"{name} must be {describe_type(hint)}, got {value!r}")
