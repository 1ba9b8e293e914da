"""One fine-tuning run: load the task, fine-tune, score, write ``results.json`` atomically.

A finished run (``results.json`` present) is skipped on re-run, so an interrupted sweep
resumes where it stopped; a run that crashes leaves no ``results.json`` (it is written to a
temporary file and renamed only after every metric is computed).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aveyb.evaluation.baseline import majority_label, majority_metrics
from aveyb.provenance import git_commit
from aveyb.tasks import checkpoint
from aveyb.tasks.config import FinetuneConfig
from aveyb.tasks.data import resolve_data_dir
from aveyb.tasks.export import MODEL_DIR
from aveyb.tasks.families import FAMILIES
from aveyb.tasks.registry import LoadContext, get_task, task_labels

RESULTS_FILE = "results.json"


def _versions() -> dict[str, str]:
    import torch
    import transformers

    import aveyb

    return {"aveyb": aveyb.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644 & ~_umask())  # mkstemp makes 0600; results are meant to be read by others
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_results(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(output_dir) / RESULTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


# Options that change neither the training nor the scores: a stored run is still the same run.
_NOT_COMPARED = ("progress", "save_model")


def check_model_source(model: str) -> None:
    """A ``--model`` that is plainly a path (absolute, ``./``, ``~``, or deeper than ``org/name``) must
    exist: say so, instead of transformers' "Repo id must be in the form ..."."""
    text = str(model)
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir() and not (path / "config.json").is_file():
            from aveyb.tasks.training import TaskError

            raise TaskError(f"--model {text}: the folder has no config.json (expected a save_pretrained folder)")
        return
    looks_like_path = text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1 or text.endswith("/")
    if looks_like_path:
        from aveyb.tasks.training import TaskError

        parent = next((p for p in path.parents if p.exists()), None)
        hint = f" ({parent} exists)" if parent not in (None, Path(".")) else ""
        raise TaskError(f"--model {text}: no such folder{hint}; give a save_pretrained folder or a Hugging Face "
                        "id (org/name)")


def run_finetune(model: str, task: str, output_dir: str | os.PathLike, config: FinetuneConfig | None = None,
                 data_dir: str | os.PathLike | None = None, force: bool = False, load_split=None,
                 log=print) -> dict[str, Any]:
    """Fine-tune ``model`` (a path or Hub id) on ``task`` and return the results record.

    Skips (and returns the stored record) when ``output_dir/results.json`` exists, unless
    ``force``. Raises on any failure, leaving no ``results.json``.
    """
    from aveyb.tasks.training import select_device, set_seed

    out_dir = Path(output_dir)
    existing = load_results(out_dir)
    if existing is None or force:
        check_model_source(model)
    ddir = resolve_data_dir(data_dir)
    # a built-in name, a folder or file, a data-directory folder or a Hub id; records carry spec.name
    spec = get_task(task, ddir, config, load_split)
    cfg = (config or FinetuneConfig()).resolved(spec.family)
    if existing is not None and not force:
        log(f"[aveyb] {out_dir / RESULTS_FILE} exists: skipping {spec.name} (use --force to re-run)")
        stored = {k: v for k, v in existing.get("config", {}).items() if k not in _NOT_COMPARED}
        wanted = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_COMPARED}
        changed = sorted(k for k in wanted if stored.get(k) != wanted[k])
        if changed or existing.get("task") != spec.name:
            log(f"[aveyb] warning: the stored run differs from this request in {changed or ['task']}; "
                "its results are kept (use --force or another --output-dir)")
        return existing
    set_seed(cfg.seed)
    ctx = LoadContext(data_dir=ddir, config=cfg)
    if load_split is not None:
        ctx.load_split = load_split
    started = time.time()
    splits = spec.load(ctx)
    labels = task_labels(spec, splits, ddir)
    device = select_device(cfg)
    set_seed(cfg.seed)
    family = FAMILIES[spec.family]
    save_dir = out_dir / MODEL_DIR if cfg.save_model else None
    ckpt_dir = out_dir / checkpoint.CHECKPOINTS_DIR
    with checkpoint.checkpoints_in(ckpt_dir):  # a killed run resumes from here when run again
        metrics = family.run(spec, splits, labels, str(model), cfg, device, save_dir=save_dir)
    metrics.update(majority_metrics(spec, splits, labels, cfg.evaluate_test))  # the constant-guess baseline
    elapsed = time.time() - started
    record = {
        "task": spec.name,
        "model": str(model),
        "family": spec.family,
        "main_metric": spec.main_metric,
        "seed": cfg.seed,
        "lr": cfg.lr,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "time_s": round(elapsed, 2),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "device": str(device),
        "versions": _versions(),
        "labels": labels,
        "splits_carved": splits.carved,
        "baseline": {"kind": "majority class of train", "label": majority_label(spec, splits.train)},
        "model_dir": MODEL_DIR if save_dir is not None else None,
        "config": cfg.to_dict(),
    }
    write_json_atomic(out_dir / RESULTS_FILE, record)
    checkpoint.remove(ckpt_dir)
    log(f"[aveyb] {spec.name}: " + ", ".join(f"{k}={v:.4g}" for k, v in record["metrics"].items()
                                          if k.startswith(("validation/", "test/")) and "/majority_" not in k))
    return record
