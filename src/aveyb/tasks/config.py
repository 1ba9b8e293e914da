"""Fine-tuning configuration: the paper's protocol (PROTOCOL.md) as a validated dataclass.

Every field can be overridden from YAML presets (``aveyb/configs/finetune/*.yaml``) and from
the command line (``--set key=value``). ``None`` for a per-family field means "the
protocol's value for this task family" (``Family.defaults`` in :mod:`aveyb.tasks.families`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any

import yaml

from aveyb.tasks.families import FAMILIES, get_family

PRECISIONS = ("auto", "bf16", "fp32")
QA_HEADS = ("start_end", "in_span")
TC_DECODINGS = ("majority", "first")
RETRIEVAL_LOSSES = ("mnrl", "cached_mnrl")
LR_SCHEDULES = ("linear", "constant")

LR_GRID = (2e-5, 6e-5, 1e-4, 5e-4)
LR_GRID_EXTENDED = LR_GRID + (1e-3, 2e-3)


@dataclass
class FinetuneConfig:
    """All knobs of one fine-tuning run. Defaults follow the paper's protocol."""

    # optimiser and schedule: AdamW b=(0.9, 0.95), eps=1e-5, wd 0.1, linear decay, 10% warm-up
    lr: float = 6e-5
    betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-5
    weight_decay: float = 0.1
    warmup_ratio: float = 0.1
    lr_schedule: str = "linear"
    max_grad_norm: float | None = 1.0
    precision: str = "auto"  # bf16 autocast on CUDA, fp32 on CPU
    seed: int = 0
    # length of training: epochs or steps (steps win when both are set); None = family default
    epochs: float | None = None
    max_steps: int | None = None
    batch_size: int | None = None  # effective batch
    grad_accumulation: int = 1
    eval_batch_size: int = 64
    max_length: int | None = None  # None: the model's context (max_position_embeddings)
    append_eos: bool = True
    # data subsets (for quick runs); None = everything
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    split_seed: int = 42  # the 95/5 train/validation cut of Hub tasks, and every split carved from train
    validation_fraction: float = 0.05
    test_fraction: float = 0.1  # a task without a test split gets this share of train
    evaluate_test: bool = True
    # own data (aveyb.tasks.sources): which column is what; None = the usual names
    task_type: str | None = None  # a family (sequence_classification, ...) when the columns do not tell
    text_columns: list[str] | None = None  # one column, or two for sentence pairs
    label_column: str | None = None
    tokens_column: str | None = None
    tags_column: str | None = None
    question_column: str | None = None
    context_column: str | None = None
    answers_column: str | None = None
    dataset_config: str | None = None  # Hugging Face dataset config name
    splits: dict[str, str] | None = None  # our split -> the dataset's split name
    # checkpoints of the fine-tuning loop every N optimiser steps (0: none); removed once results.json exists
    checkpoint_every: int = 500
    # token classification
    tc_decoding: str = "majority"
    # question answering
    qa_head: str = "start_end"
    doc_stride: int = 64
    n_best: int = 20
    max_answer_length: int = 30
    # retrieval
    retrieval_loss: str = "cached_mnrl"
    mini_batch_size: int = 8  # cached MNRL chunk
    query_prefix: str = "Query: "
    document_prefix: str = "Document: "
    max_corpus_size: int | None = None  # keep judged docs + this many others (None = whole corpus)
    # needle in a haystack
    niah_length: int = 1000  # words
    niah_train_size: int = 10000
    niah_test_size: int = 1000
    niah_seed: int = 11
    # output: save the fine-tuned model (save_pretrained) to <output_dir>/model
    save_model: bool = True
    # misc
    num_workers: int = 0
    progress: bool = True
    device: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)
        self.validate()

    # ---- validation -----------------------------------------------------------------
    def validate(self) -> None:
        def positive(name, allow_none=False, integer=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
            if integer:
                ok = ok and isinstance(v, int)
            if not ok:
                raise ValueError(f"FinetuneConfig.{name}={v!r} must be a positive {'integer' if integer else 'number'}")

        def choice(name, allowed):
            if getattr(self, name) not in allowed:
                raise ValueError(f"FinetuneConfig.{name}={getattr(self, name)!r}; choose one of {list(allowed)}")

        positive("lr")
        self._validate_data_fields()
        positive("adam_eps")
        positive("epochs", allow_none=True)
        if self.max_steps is not None and not (isinstance(self.max_steps, int) and not isinstance(self.max_steps, bool)
                                               and self.max_steps >= 0):
            raise ValueError(f"FinetuneConfig.max_steps={self.max_steps!r} must be an integer >= 0 "
                             "(0: evaluate without training)")
        for name in ("batch_size", "max_length", "max_train_examples", "max_eval_examples",
                     "max_corpus_size"):
            positive(name, allow_none=True, integer=True)
        for name in ("grad_accumulation", "eval_batch_size", "doc_stride", "n_best", "max_answer_length",
                     "mini_batch_size", "niah_length", "niah_train_size", "niah_test_size"):
            positive(name, integer=True)
        if not (len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas)):
            raise ValueError(f"FinetuneConfig.betas={self.betas!r} must be two numbers in [0, 1)")
        if not (0 <= self.weight_decay):
            raise ValueError(f"FinetuneConfig.weight_decay={self.weight_decay!r} must be >= 0")
        if not (0 <= self.warmup_ratio <= 1):
            raise ValueError(f"FinetuneConfig.warmup_ratio={self.warmup_ratio!r} must be in [0, 1]")
        for name in ("validation_fraction", "test_fraction"):
            if not (isinstance(getattr(self, name), (int, float)) and 0 < getattr(self, name) < 1):
                raise ValueError(f"FinetuneConfig.{name}={getattr(self, name)!r} must be in (0, 1)")
        if isinstance(self.checkpoint_every, bool) or not isinstance(self.checkpoint_every, int) \
                or self.checkpoint_every < 0:
            raise ValueError(f"FinetuneConfig.checkpoint_every={self.checkpoint_every!r} must be an integer >= 0 "
                             "(0: no checkpoints)")
        if self.max_grad_norm is not None:
            positive("max_grad_norm")
        choice("precision", PRECISIONS)
        choice("qa_head", QA_HEADS)
        choice("tc_decoding", TC_DECODINGS)
        choice("retrieval_loss", RETRIEVAL_LOSSES)
        choice("lr_schedule", LR_SCHEDULES)
        if not isinstance(self.save_model, bool):
            raise ValueError(f"FinetuneConfig.save_model={self.save_model!r} must be true or false")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"FinetuneConfig.seed={self.seed!r} must be an integer")  # noqa: TRY004

    def _validate_data_fields(self) -> None:
        for name in ("task_type", "label_column", "tokens_column", "tags_column", "question_column",
                     "context_column", "answers_column", "dataset_config"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and value.strip()):
                raise ValueError(f"FinetuneConfig.{name}={value!r} must be a non-empty string or null")
        if isinstance(self.text_columns, str):
            self.text_columns = [self.text_columns]
        if self.text_columns is not None:
            cols = self.text_columns
            if not (isinstance(cols, (list, tuple)) and 1 <= len(cols) <= 2 and all(isinstance(c, str) and c
                                                                                   for c in cols)):
                raise ValueError(f"FinetuneConfig.text_columns={cols!r} must be one column name, or two for "
                                 "sentence pairs")
            self.text_columns = list(cols)
        if self.splits is not None:
            allowed = ("train", "validation", "test")
            if not (isinstance(self.splits, dict) and all(k in allowed and isinstance(v, str) and v
                                                          for k, v in self.splits.items())):
                raise ValueError(f"FinetuneConfig.splits={self.splits!r} must map {list(allowed)} to the "
                                 "dataset's split names")
        if self.task_type is not None:
            try:
                get_family(self.task_type)
            except ValueError as err:
                raise ValueError(f"FinetuneConfig.task_type={self.task_type!r}: {err}") from None

    # ---- construction ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    def replace(self, **changes) -> FinetuneConfig:
        return FinetuneConfig.from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        from aveyb.engine import check_known

        check_known(data, [f.name for f in fields(cls)], "fine-tuning")
        return cls(**data)

    def resolved(self, family: str) -> FinetuneConfig:
        """Fill the ``None`` per-family fields with the protocol's values for ``family``."""
        defaults = FAMILIES[family].defaults if family in FAMILIES else {}
        changes = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        if self.epochs is None and self.max_steps is None and "epochs" not in changes and "max_steps" not in changes:
            changes["epochs"] = 1.0
        if self.batch_size is None and "batch_size" not in changes:
            changes["batch_size"] = 32
        return self.replace(**changes) if changes else self


def parse_set_items(items: list[str] | None) -> dict[str, Any]:
    """``["lr=1e-4", "qa_head=in_span"]`` -> field values, read as ``aveyb pretrain``'s are
    (:func:`aveyb.engine.parse_overrides`)."""
    from aveyb.engine import parse_overrides

    return parse_overrides(items, FinetuneConfig, "fine-tuning")


def list_presets() -> list[str]:
    root = resources.files("aveyb") / "configs" / "finetune"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """A protocol preset shipped with the package (``paper``, ``quick``, ``ci``) or a YAML path."""
    import os

    if os.path.exists(name):
        with open(name) as f:
            data = yaml.safe_load(f) or {}
    else:
        path = resources.files("aveyb") / "configs" / "finetune" / f"{name}.yaml"
        if not path.is_file():
            raise ValueError(f"unknown fine-tuning preset {name!r}; choose one of {list_presets()} or a YAML path")
        data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"fine-tuning preset {name!r} must be a mapping")  # noqa: TRY004
    return data


def build_config(preset: str | None = None, overrides: dict[str, Any] | None = None) -> FinetuneConfig:
    data: dict[str, Any] = {}
    if preset:
        data.update(load_preset(preset))
    data.update(overrides or {})
    data.pop("sweep", None)  # sweep-level keys live beside the run config in presets
    return FinetuneConfig.from_dict(data)


def config_hash(cfg: FinetuneConfig) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]
