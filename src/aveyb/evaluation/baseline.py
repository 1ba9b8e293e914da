"""The majority-class baseline: what always predicting the train split's most frequent class
scores, so that every table shows how far a model is above a constant guess.

Sequence classification: the most frequent train label for every example. Token
classification: the most frequent train tag for every token. Question answering and retrieval
have no class to guess: no baseline. Stored in ``results.json`` as
``metrics["<split>/majority_<metric>"]`` (same metric names as the model's).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aveyb.evaluation.metrics import classification_metrics, token_classification_metrics
from aveyb.tasks.families import FAMILIES

PREFIX = "majority_"


def majority_label(task, train: list[dict]) -> str | None:
    """The most frequent class of the train split (ties: the first in sorted order)."""
    family = FAMILIES[task.family]
    if family.label_key is None:
        return None
    counts = Counter(label for ex in train for label in family.labels_of(ex))
    if not counts:
        return None
    best = max(counts.values())
    return min(label for label, n in counts.items() if n == best)


def majority_metrics(task, splits, labels: list[str] | None, evaluate_test: bool = True) -> dict[str, Any]:
    """``{"<split>/majority_<metric>": value}`` for validation and test, and the class guessed."""
    guess = majority_label(task, splits.train)
    if guess is None:
        return {}
    out: dict[str, Any] = {}
    for name in ("validation", "test"):
        rows = getattr(splits, name)
        if not rows or (name == "test" and not evaluate_test):
            continue
        if task.family == "sequence_classification":
            golds = [ex["label"] for ex in rows]
            scores = classification_metrics(golds, [guess] * len(golds), labels or sorted(set(golds)),
                                            task.options.get("positive_label"))
        else:
            golds = [list(ex["tags"]) for ex in rows]
            scores = token_classification_metrics(golds, [[guess] * len(g) for g in golds],
                                                  bio=task.options.get("bio", True))
        out.update({f"{name}/{PREFIX}{k}": float(v) for k, v in scores.items()})
    return out
