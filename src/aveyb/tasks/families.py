"""The four task families, each one object that owns everything family-specific.

A family knows its protocol defaults (PROTOCOL.md, "Fine-tuning"), its metrics (the paper's main
one, the ones a task may choose instead, the ones a report shows beside it), the names users give
it, how to read the labels of an example, the input columns ``aveyb predict`` reads, the head
class that identifies a model saved by another tool, and the module that trains, scores and
predicts (``run`` and ``predict_rows``). Adding a family means adding one :class:`Family` here
and its module.

Import-light on purpose: the family modules (and with them torch and transformers) are imported
only when a family runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Family:
    name: str
    module: str                          # defines run(task, splits, labels, model, cfg, device, save_dir)
    #                                      and predict_rows(model_dir, rows, where, cfg, device, settings, serving)
    main_metric: str                     # the paper's metric, a task's main one unless it names another
    metrics: tuple[str, ...]             # what a task may name as its main metric (meta.json main_metric)
    report_metrics: tuple[str, ...]      # shown beside the main metric in tables (PROTOCOL.md)
    defaults: Mapping[str, Any]          # the protocol's settings: epochs or max_steps, batch size
    aliases: tuple[str, ...]             # other names users give it (``--task-type``, meta.json task_type)
    label_key: str | None                # the example field holding its labels (None: no label set)
    input_columns: str                   # what ``aveyb predict`` reads, in words
    head_suffix: str | None = None       # transformers head class suffix of a model saved elsewhere
    _module: list = field(default_factory=list, repr=False, compare=False)  # the imported module, once

    def implementation(self):
        if not self._module:
            self._module.append(importlib.import_module(self.module))
        return self._module[0]

    def run(self, task, splits, labels, model_path: str, cfg, device, save_dir=None) -> dict[str, float]:
        """Fine-tune ``model_path`` on ``task`` and score it (the family module's ``run``)."""
        return self.implementation().run(task, splits, labels, model_path, cfg, device, save_dir=save_dir)

    def predict_rows(self, model_dir: str, rows: list[dict], where, cfg, device, settings: dict,
                     serving: str = "reference") -> list[dict]:
        """Predictions of a saved model for input rows (``aveyb predict``)."""
        return self.implementation().predict_rows(model_dir, rows, where, cfg, device, settings, serving=serving)

    def labels_of(self, example: dict) -> list:
        """The labels of one example: its class, or its tags (empty for a family without labels)."""
        if self.label_key is None:
            return []
        value = example.get(self.label_key)
        return list(value) if isinstance(value, list) else [value]


_FAMILIES = (
    Family(
        "sequence_classification", "aveyb.tasks.classification",
        main_metric="accuracy",
        metrics=("accuracy", "macro_f1", "f1", "precision", "recall"),
        report_metrics=("accuracy", "f1", "macro_f1"),
        defaults=MappingProxyType({"epochs": 1.0, "batch_size": 32}),
        aliases=("text_classification", "sentence_pair_classification", "classification", "sc"),
        label_key="label",
        input_columns="'text', or 'text_a' and 'text_b' (a pair)",
        head_suffix="ForSequenceClassification",
    ),
    Family(
        "token_classification", "aveyb.tasks.token_classification",
        main_metric="paper_macro_f1",
        metrics=("paper_macro_f1", "token_accuracy", "f1", "precision", "recall"),
        report_metrics=("paper_macro_f1", "f1", "token_accuracy"),
        defaults=MappingProxyType({"epochs": 1.0, "batch_size": 32}),
        aliases=("ner", "pos", "tc"),
        label_key="tags",
        input_columns="'tokens' (a list of words, or one string split on whitespace)",
        head_suffix="ForTokenClassification",
    ),
    Family(
        "question_answering", "aveyb.tasks.qa",
        main_metric="paper_f1",
        metrics=("paper_f1", "exact_match", "squad_f1"),
        report_metrics=("paper_f1", "exact_match", "squad_f1"),
        defaults=MappingProxyType({"epochs": 4.0, "batch_size": 32}),
        aliases=("extractive_qa", "qa"),
        label_key=None,
        input_columns="'question' and 'context'",
        head_suffix="ForQuestionAnswering",
    ),
    Family(
        "retrieval", "aveyb.tasks.retrieval",
        main_metric="ndcg@10",
        metrics=("ndcg@10", "paper_ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100"),
        report_metrics=("paper_ndcg@10", "ndcg@10", "mrr@10", "recall@100"),
        defaults=MappingProxyType({"max_steps": 1000, "batch_size": 16}),
        aliases=("ir",),
        label_key=None,
        input_columns="'query' or 'document' (embedded with the prefix used in training), or 'text' (no prefix)",
    ),
)

# name -> Family, in the order tables show them; iterating gives the names
FAMILIES: dict[str, Family] = {f.name: f for f in _FAMILIES}

# every name a user may give a family -> its canonical name
ALIASES: dict[str, str] = {name: f.name for f in _FAMILIES for name in (f.name, *f.aliases)}


def get_family(name: str) -> Family:
    """The family of a canonical name or an alias (``ner``, ``qa``, ``text-classification``, …)."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in ALIASES:
        raise ValueError(f"unknown task family {name!r}; choose one of {list(FAMILIES)} "
                         f"(or {[a for a in ALIASES if a not in FAMILIES]})")
    return FAMILIES[ALIASES[key]]
