"""What a task is: its family, labels, main metric, options and a loader of its splits.

Kept apart from the registry so that the registry (built-in tasks) and the own-data sources
(folders, files, Hub dataset ids) both build :class:`Task` objects without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aveyb.tasks import hub
from aveyb.tasks.data import RetrievalData, subsample
from aveyb.tasks.families import FAMILIES

__all__ = ["FAMILIES", "LoadContext", "Task", "TaskSplits", "cap_queries"]

@dataclass
class TaskSplits:
    train: Any            # list of examples; for retrieval a list of (query, positive) pairs
    validation: Any       # list of examples; for retrieval a RetrievalData (None: no validation split)
    test: Any | None      # same as validation (None: no test split)
    carved: dict[str, str] = field(default_factory=dict)  # split -> how it was cut from train


@dataclass
class LoadContext:
    data_dir: Path | None = None
    config: Any = None  # FinetuneConfig
    load_split: hub.LoadSplit = hub.hub_load_split


@dataclass
class Task:
    name: str
    family: str
    loader: Callable[[LoadContext], TaskSplits]
    labels: list[str] | None = None
    main_metric: str = "accuracy"        # chosen on validation by sweeps; also the table's cell
    source: str = "hub"                   # hub | local | package | generated | file | hub-dataset
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # metric options (positive_label, bio, v2)

    def load(self, ctx: LoadContext) -> TaskSplits:
        splits = self.loader(ctx)
        cfg = ctx.config
        seed = cfg.split_seed if cfg else 0
        cap_train = cfg.max_train_examples if cfg else None
        cap_eval = cfg.max_eval_examples if cfg else None
        splits.train = subsample(splits.train, cap_train, seed)
        for name in ("validation", "test"):
            data = getattr(splits, name)
            if data is None or not cap_eval:
                continue
            if self.family == "retrieval":
                setattr(splits, name, cap_queries(data, cap_eval))
            else:
                setattr(splits, name, subsample(data, cap_eval, seed))
        return splits


def cap_queries(data: RetrievalData, n: int) -> RetrievalData:
    keep = sorted(data.queries)[:n]
    return RetrievalData(corpus=data.corpus, queries={q: data.queries[q] for q in keep},
                         qrels={q: data.qrels[q] for q in keep}, train_pairs=data.train_pairs)
