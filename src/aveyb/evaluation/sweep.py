"""Learning-rate x seed sweeps over models x tasks, and the paper's selection rule: the
learning rate with the best mean validation score, then the median (and spread) of the test
score over seeds at that learning rate.

Layout: ``<root>/<model>/<task>/lr<lr>/seed<seed>/results.json``. Runs that finished are
skipped, so re-running a sweep resumes it.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aveyb.tasks.config import FinetuneConfig


@dataclass(frozen=True)
class RunSpec:
    model_name: str
    model: str
    task: str
    lr: float
    seed: int

    def directory(self, root: Path) -> Path:
        return Path(root) / self.model_name / task_dir_name(self.task) / f"lr{format_lr(self.lr)}" / f"seed{self.seed}"


def task_dir_name(task: str) -> str:
    """One folder name per task: a path's last component (``data/reviews.csv`` -> ``reviews.csv``),
    a Hub id with ``/`` made ``_`` (``org/name`` -> ``org_name``), built-in names as they are."""
    if Path(task).exists():
        task = Path(task).resolve().name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", task)


def format_lr(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-").replace("e+0", "e+")


def model_name(spec: str) -> tuple[str, str]:
    """``name=path`` or ``path`` (name = the path's last component, made file-safe)."""
    if "=" in spec and not Path(spec).exists():
        name, path = spec.split("=", 1)
    else:
        path = spec
        parts = [p for p in Path(spec.rstrip("/")).parts if p not in ("final", ".")]
        name = parts[-1] if parts else spec
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name), path


def sweep_grid(models: Iterable[str], tasks: Iterable[str], lrs: Iterable[float], seeds: Iterable[int]) -> list[RunSpec]:
    """Every (model, task, lr, seed) combination, tasks outermost per model."""
    grid = []
    for m in models:
        name, path = model_name(m)
        for t in tasks:
            for lr in lrs:
                for s in seeds:
                    grid.append(RunSpec(name, path, t, float(lr), int(s)))
    return grid


def run_sweep(root: str | Path, grid: list[RunSpec], config: FinetuneConfig, data_dir=None, fail_fast: bool = False,
              log=print, load_split=None) -> list[tuple[RunSpec, str]]:
    """Run every point of ``grid`` (skipping finished ones); returns the failures ``(spec, error)``."""
    from aveyb.tasks.runner import run_finetune

    failures = []
    for i, spec in enumerate(grid, 1):
        log(f"[aveyb sweep] {i}/{len(grid)}: {spec.model_name} {spec.task} lr={spec.lr:g} seed={spec.seed}")
        try:
            run_finetune(spec.model, spec.task, spec.directory(root), config.replace(lr=spec.lr, seed=spec.seed),
                         data_dir=data_dir, log=log, load_split=load_split)
        except Exception as err:
            if fail_fast:
                raise
            log(f"[aveyb sweep] FAILED {spec.model_name} {spec.task} lr={spec.lr:g} seed={spec.seed}: {err!r}")
            failures.append((spec, repr(err)))
    return failures


def collect(root: str | Path) -> list[dict[str, Any]]:
    """Every ``results.json`` under ``root``, with ``model_name`` taken from the folder layout."""
    root = Path(root)
    out = []
    for path in sorted(root.rglob("results.json")):
        rec = json.loads(path.read_text())
        rel = path.relative_to(root).parts
        rec.setdefault("model_name", rel[0] if len(rel) >= 5 else model_name(rec.get("model", "model"))[0])
        rec["path"] = str(path)
        out.append(rec)
    return out


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def select(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, task): best lr by mean validation main metric, then test metrics over seeds
    at that lr (median, mean, std, min, max). Falls back to validation when no test split."""
    groups: dict[tuple[str, str], dict[float, list[dict]]] = {}
    for r in records:
        groups.setdefault((r["model_name"], r["task"]), {}).setdefault(float(r["lr"]), []).append(r)
    rows = []
    for (model, task), by_lr in sorted(groups.items()):
        main = next(iter(by_lr.values()))[0]["main_metric"]
        val_key = f"validation/{main}"
        lr_scores = {}
        for lr, recs in by_lr.items():
            vals = [x["metrics"][val_key] for x in recs if val_key in x["metrics"]]
            if vals:
                lr_scores[lr] = statistics.fmean(vals)
        # no validation split (e.g. a BEIR folder scored zero-shot): nothing to choose on, keep the smallest lr
        best_lr = max(sorted(lr_scores), key=lambda lr: lr_scores[lr]) if lr_scores else min(by_lr)
        recs = by_lr[best_lr]
        metric_names = sorted({k for x in recs for k in x["metrics"] if k.startswith(("test/", "validation/"))})
        summary = {}
        for k in metric_names:
            vals = [x["metrics"][k] for x in recs if k in x["metrics"]]
            summary[k] = _spread(vals)
        split = "test" if f"test/{main}" in summary else "validation"
        if f"{split}/{main}" not in summary:
            continue  # a run without scores of its main metric
        rows.append({
            "model": model, "task": task, "family": recs[0]["family"], "main_metric": main, "split": split,
            "best_lr": best_lr, "lr_scores": {format_lr(k): v for k, v in sorted(lr_scores.items())},
            "seeds": sorted(x["seed"] for x in recs), "score": summary[f"{split}/{main}"], "metrics": summary,
        })
    return rows
