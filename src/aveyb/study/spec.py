"""A study: named variants pretrained under one recipe, fine-tuned on one task grid, compared
with a reference. Validated dataclasses, read from YAML or generated in code
(:mod:`aveyb.study.builtin`).

A variant is either an architecture to pretrain (``arch`` + ``model`` overrides of its config
+ ``pretrain`` overrides of the shared recipe) or an existing checkpoint fine-tuned as is
(``pretrained: <path, Hub id or package:NAME>``). Errors name the field, e.g.
``study.variants[2].model.dynamic_norm``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCALES = ("micro", "mini", "base")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class StudyError(ValueError):
    """A study specification that cannot be run; the message names the field."""


@dataclass
class Variant:
    name: str
    arch: str = "avey-b"
    model: dict = field(default_factory=dict)      # config overrides of the architecture's size preset
    pretrain: dict = field(default_factory=dict)   # overrides of the shared pretraining recipe
    pretrained: str | None = None                  # fine-tune this checkpoint as is (no pretraining)
    lrs: list | None = None                        # this variant's fine-tuning learning rates (default: the study's)
    description: str = ""

    @property
    def needs_pretraining(self) -> bool:
        return self.pretrained is None


@dataclass
class Finetuning:
    tasks: list = field(default_factory=list)
    preset: str | None = None                      # a fine-tuning preset (aveyb/configs/finetune) or YAML
    settings: dict = field(default_factory=dict)   # FinetuneConfig fields for every task
    task_settings: dict = field(default_factory=dict)  # task -> FinetuneConfig fields for that task
    lrs: Any = field(default_factory=lambda: [1e-4])   # a list, or {family or task: list}
    seeds: list = field(default_factory=lambda: [0, 1, 2])

    def lrs_for(self, task: str, family: str) -> list[float]:
        if isinstance(self.lrs, dict):
            chosen = self.lrs.get(task, self.lrs.get(family, self.lrs.get("default")))
            if chosen is None:
                raise StudyError(f"study.finetune.lrs has no entry for task {task!r} or family {family!r} "
                                 f"(keys: {sorted(self.lrs)}; add one or a 'default')")
            return [float(x) for x in chosen]
        return [float(x) for x in self.lrs]


@dataclass
class Study:
    name: str
    variants: list
    reference: str
    finetune: Finetuning
    scale: str = "micro"
    description: str = ""
    pretrain: dict = field(default_factory=dict)   # the shared recipe: PretrainConfig fields
    token_budget: int | None = None               # tokens per variant; sets max_steps
    claims: list = field(default_factory=list)     # claim ids (aveyb.study.claims) this study tests
    notes: list = field(default_factory=list)      # what the study's choices are and why

    def __post_init__(self) -> None:
        self.validate()

    # ---- lookups ----------------------------------------------------------------------------
    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise StudyError(f"study has no variant {name!r}; variants: {[v.name for v in self.variants]}")

    def lrs_for(self, variant: Variant, task: str, family: str) -> list[float]:
        """The fine-tuning learning rates of ``variant`` on ``task``: its own, else the study's."""
        if variant.lrs is not None:
            return [float(x) for x in variant.lrs]
        return self.finetune.lrs_for(task, family)

    def pretrain_values(self, variant: Variant) -> dict:
        """The resolved PretrainConfig fields of one variant (recipe + its overrides + budget)."""
        values = {**self.pretrain, **variant.pretrain, "arch": variant.arch}
        values["model_overrides"] = {**self.pretrain.get("model_overrides", {}), **variant.model}
        if self.token_budget is not None and "max_steps" not in variant.pretrain:
            batch = values.get("global_batch_tokens")
            if batch is None:
                from aveyb.pretrain.config import PretrainConfig

                batch = PretrainConfig.__dataclass_fields__["global_batch_tokens"].default
            values["max_steps"] = max(1, self.token_budget // int(batch))
        return values

    def pretrain_config(self, variant: Variant):
        from aveyb.pretrain.config import PretrainConfig

        try:
            return PretrainConfig.from_dict(self.pretrain_values(variant))
        except ValueError as err:
            where = "study.pretrain" if not variant.pretrain else f"study.variants[{variant.name}].pretrain"
            raise StudyError(f"{where}: {err}") from None

    # ---- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        from aveyb.architectures import architecture_names

        _require(isinstance(self.name, str) and _NAME.match(self.name), "study.name",
                 f"must be a file-safe name (letters, digits, . _ -), got {self.name!r}")
        _require(self.scale in SCALES, "study.scale", f"must be one of {list(SCALES)}, got {self.scale!r}")
        _require(isinstance(self.variants, list) and self.variants, "study.variants", "must list at least one variant")
        seen = set()
        for i, v in enumerate(self.variants):
            where = f"study.variants[{i}]"
            _require(isinstance(v, Variant), where, "must be a mapping")
            _require(isinstance(v.name, str) and _NAME.match(v.name), f"{where}.name",
                     f"must be a file-safe name (letters, digits, . _ -), got {v.name!r}")
            _require(v.name not in seen, f"{where}.name", f"{v.name!r} is used twice")
            seen.add(v.name)
            _require(v.arch in architecture_names(), f"{where}.arch",
                     f"must be one of {list(architecture_names())}, got {v.arch!r}")
            for key in ("model", "pretrain"):
                _require(isinstance(getattr(v, key), dict), f"{where}.{key}", "must be a mapping")
            if v.pretrained is not None:
                _require(isinstance(v.pretrained, str) and v.pretrained, f"{where}.pretrained",
                         "must be a path, a Hub id or package:NAME")
                _require(not v.model and not v.pretrain, where,
                         "a pretrained variant is fine-tuned as is: it takes no 'model' or 'pretrain' overrides")
            if v.lrs is not None:
                _require(_positive_numbers(v.lrs), f"{where}.lrs",
                         f"must be a list of positive learning rates, got {v.lrs!r}")
        _require(self.reference in seen, "study.reference", f"{self.reference!r} is not a variant; variants: {sorted(seen)}")
        _require(isinstance(self.pretrain, dict), "study.pretrain", "must be a mapping of PretrainConfig fields")
        if self.token_budget is not None:
            _require(isinstance(self.token_budget, int) and not isinstance(self.token_budget, bool)
                     and self.token_budget > 0, "study.token_budget", f"must be a positive integer, got {self.token_budget!r}")
        for v in self.variants:
            if v.needs_pretraining:
                cfg = self.pretrain_config(v)
                _check_model_overrides(v, cfg)
        self._validate_finetune()
        from aveyb.study.claims import CLAIMS

        for i, claim in enumerate(self.claims):
            _require(claim in CLAIMS, f"study.claims[{i}]", f"unknown claim {claim!r}; known: {sorted(CLAIMS)}")

    def _validate_finetune(self) -> None:
        ft = self.finetune
        _require(isinstance(ft, Finetuning), "study.finetune", "must be a mapping")
        _require(isinstance(ft.tasks, list) and ft.tasks and all(isinstance(t, str) for t in ft.tasks),
                 "study.finetune.tasks", "must list at least one task name")
        _require(len(set(ft.tasks)) == len(ft.tasks), "study.finetune.tasks", "lists a task twice")
        _require(isinstance(ft.seeds, list) and ft.seeds and all(isinstance(s, int) and not isinstance(s, bool)
                                                                 for s in ft.seeds),
                 "study.finetune.seeds", f"must list integer seeds, got {ft.seeds!r}")
        grids = ft.lrs.values() if isinstance(ft.lrs, dict) else [ft.lrs]
        for grid in grids:
            _require(_positive_numbers(grid), "study.finetune.lrs", f"must be a list of positive learning rates (or a mapping of them), got {ft.lrs!r}")
        _require(isinstance(ft.task_settings, dict), "study.finetune.task_settings", "must map task names to settings")
        for task in ft.task_settings:
            _require(task in ft.tasks, f"study.finetune.task_settings.{task}", f"is not one of the tasks {ft.tasks}")
        from aveyb.tasks.config import build_config

        for task in [None, *ft.tasks]:
            where = "study.finetune.settings" if task is None else f"study.finetune.task_settings.{task}"
            try:
                build_config(ft.preset, {**ft.settings, **(ft.task_settings.get(task, {}) if task else {})})
            except ValueError as err:
                raise StudyError(f"{where}: {err}") from None

    def finetune_config(self, task: str):
        from aveyb.tasks.config import build_config

        ft = self.finetune
        return build_config(ft.preset, {**ft.settings, **ft.task_settings.get(task, {})})

    # ---- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, width=100)

    @classmethod
    def from_dict(cls, data: dict) -> Study:
        _require(isinstance(data, dict), "study", "must be a mapping")
        data = dict(data)
        _known(data, cls, "study")
        variants = data.get("variants")
        _require(isinstance(variants, list), "study.variants", "must be a list of variants")
        parsed = []
        for i, v in enumerate(variants):
            _require(isinstance(v, dict), f"study.variants[{i}]", f"must be a mapping, got {v!r}")
            _known(v, Variant, f"study.variants[{i}]")
            _require("name" in v, f"study.variants[{i}].name", "is required")
            parsed.append(Variant(**v))
        data["variants"] = parsed
        ft = data.get("finetune")
        _require(isinstance(ft, dict), "study.finetune", "is required: a mapping with tasks, lrs, seeds")
        _known(ft, Finetuning, "study.finetune")
        data["finetune"] = Finetuning(**ft)
        for required in ("name", "reference"):
            _require(required in data, f"study.{required}", "is required")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Study:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise StudyError(f"{path}: not valid YAML: {err}") from None
        try:
            return cls.from_dict(data)
        except StudyError as err:
            raise StudyError(f"{path}: {err}") from None


def apply_overrides(study: Study, items: list[str]) -> Study:
    """``["pretrain.lr=1e-3", "finetune.seeds=[0, 1]"]``: set dotted fields, then re-validate.

    Each value is read by the ``--set`` parser of ``aveyb pretrain`` and ``aveyb finetune``
    (:func:`aveyb.engine.parse_value`), fitted to the type of the field it sets (:func:`_field_type`).
    """
    from aveyb.engine import OverrideError, parse_value, split_item

    data = study.to_dict()
    for item in items:
        try:
            key, raw = split_item(item)
            parts = key.split(".")
            value = parse_value(key, raw, _field_type(parts))
        except OverrideError as err:
            raise StudyError(str(err)) from None
        node = data
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                if part not in node or node[part] is None:
                    node[part] = {}
                else:
                    raise StudyError(f"--set {key}: study.{'.'.join(parts[:i + 1])} is not a mapping")
            node = node[part]
        node[parts[-1]] = value
    return Study.from_dict(data)


def _field_type(parts: list[str]):
    """The type of the field a dotted ``--set`` key names: a study field (``token_budget``), a
    ``finetune`` field, a PretrainConfig field under ``pretrain``, a FinetuneConfig field under
    ``finetune.settings`` or ``finetune.task_settings.TASK``; ``Any`` elsewhere (variants, model
    overrides), where the study's validation checks the value."""
    import typing

    owner = None
    if len(parts) == 1:
        owner = Study
    elif parts[0] == "finetune" and len(parts) == 2:
        owner = Finetuning
    elif parts[0] == "pretrain" and len(parts) == 2:
        from aveyb.pretrain.config import PretrainConfig as owner
    elif parts[:2] == ["finetune", "settings"] and len(parts) == 3 \
            or parts[:2] == ["finetune", "task_settings"] and len(parts) == 4:
        from aveyb.tasks.config import FinetuneConfig as owner
    return typing.get_type_hints(owner).get(parts[-1], Any) if owner is not None else Any


def _positive_numbers(grid) -> bool:
    return isinstance(grid, list) and bool(grid) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in grid)


def _require(ok, where: str, message: str) -> None:
    if not ok:
        raise StudyError(f"{where} {message}")


def _known(data: dict, cls, where: str) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise StudyError(f"{where}: unknown key(s) {unknown}; allowed: {names}")


def _check_model_overrides(variant: Variant, cfg) -> None:
    """Build the variant's config so that a bad override fails now, naming the variant."""
    from aveyb.architectures import build_config

    try:
        build_config(cfg.arch, cfg.model_preset, 1024, **cfg.model_overrides)
    except (TypeError, ValueError) as err:
        raise StudyError(f"study.variants[{variant.name}].model: {err}") from None
