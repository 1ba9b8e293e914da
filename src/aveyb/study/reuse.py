"""Finished jobs shared between studies: ``aveyb study run ... --reuse OTHER_DIR``.

The built-in ablation studies share their reference with ``baselines`` (the default Avey-B
under another variant name) and every study fine-tunes the same all-MiniLM-L6-v2 row. A job is
identified by what it computes, not by its name: the resolved pretraining recipe with the full
model configuration (so ``layer_arrangement: interleaved_static_first``, the default, is the same
model as no override), or the ``pretrained:`` checkpoint; and for fine-tuning the task, the
resolved fine-tuning settings, the learning rate and the seed. A finished job of another study
directory with the same identity is copied in (pretraining: its final model and metrics, not its
checkpoints), with ``reused_from.json`` saying where from, instead of being run again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

from aveyb.study import jobs as J
from aveyb.study.spec import Study

REUSED_FILE = "reused_from.json"
# settings that change how a run reports progress, not what it computes
_COSMETIC_PRETRAIN = ("progress_bar", "tensorboard", "wandb", "log_every")
_COSMETIC_FINETUNE = ("progress",)
# configuration entries that name the software rather than the model
_CONFIG_NOISE = ("transformers_version", "_name_or_path", "architectures", "auto_map")


def pretrain_identity(study: Study, variant) -> dict:
    from aveyb.architectures import build_config

    values = study.pretrain_values(variant)
    overrides = values.pop("model_overrides", {})
    for key in _COSMETIC_PRETRAIN:
        values.pop(key, None)
    # the study validated these overrides when it was built (spec._check_model_overrides)
    model = build_config(values["arch"], values.get("model_preset"), 1024, **overrides).to_dict()
    values["model"] = {k: v for k, v in model.items() if k not in _CONFIG_NOISE}
    return values


def job_key(study: Study, job: J.Job) -> str:
    """A digest of what ``job`` computes (equal for equal work in different studies)."""
    variant = study.variant(job.variant)
    model = {"pretrained": variant.pretrained} if variant.pretrained else {"pretrain": pretrain_identity(study, variant)}
    if job.kind == "pretrain":
        payload = model
    else:
        settings = dataclasses.asdict(study.finetune_config(job.task))
        for key in _COSMETIC_FINETUNE:
            settings.pop(key, None)
        payload = {"model": model, "task": job.task, "finetune": settings, "lr": job.lr, "seed": job.seed}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def reusable(study: Study, root: Path, sources: list[Path], variants: list[str] | None = None,
             data_dir: str | None = None) -> list[tuple[J.Job, Path, J.Job]]:
    """``(job here, other study directory, its job)`` for every unfinished job here that another
    directory has finished with the same identity."""
    root = Path(root)
    wanted = {}
    for job, state in J.job_states(study, root, variants, data_dir):
        if state != "finished":
            wanted.setdefault(job_key(study, job), job)
    found = []
    for source in sources:
        source = Path(source)
        if source.resolve() == root.resolve():
            continue
        other = J.load(source)
        for job in J.pretrain_jobs(other) + J.finetune_jobs(other, data_dir=data_dir):
            if not wanted or not job.is_done(source):
                continue
            mine = wanted.pop(job_key(other, job), None)
            if mine is not None:
                found.append((mine, source, job))
    return found


def copy_job(root: Path, job: J.Job, source: Path, theirs: J.Job) -> None:
    """Copy a finished job in; the finished marker appears last, so an interruption leaves it to run."""
    src, dst = theirs.directory(source), job.directory(root)
    tmp = dst.with_name(dst.name + ".reusing")
    shutil.rmtree(tmp, ignore_errors=True)
    if job.kind == "pretrain":
        tmp.mkdir(parents=True)
        shutil.copytree(src / "final", tmp / "final")
        for name in ("metrics.jsonl", "config.json", "done.json"):
            if (src / name).is_file():
                shutil.copy2(src / name, tmp / name)
    else:
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("checkpoints", "model"))
    (tmp / REUSED_FILE).write_text(json.dumps({"study_dir": str(source.resolve()), "job": theirs.id}, indent=1))
    if dst.exists():  # an interrupted attempt of this job: its partial state is replaced
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dst)


def reuse(study: Study, root: Path, sources: list[Path], variants: list[str] | None = None,
          data_dir: str | None = None, log=print) -> list[str]:
    """Copy in every job that ``sources`` have finished; returns the ids copied."""
    copied = []
    for job, source, theirs in reusable(study, root, sources, variants, data_dir):
        with J.job_lock(root, job):
            if job.is_done(root):
                continue
            copy_job(root, job, source, theirs)
        copied.append(job.id)
        log(f"[aveyb study] reused {job.id} from {source} ({theirs.id})")
    return copied


def reused_jobs(root: Path) -> dict[str, dict]:
    """Job id -> where it was copied from, for every reused job of a study directory."""
    out = {}
    for path in Path(root).glob(f"*/**/{REUSED_FILE}"):
        rel = path.parent.relative_to(root).as_posix()
        out[rel] = json.loads(path.read_text())
    return out
