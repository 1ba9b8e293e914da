"""A study's jobs and their state on disk, and the function that runs one job.

Layout of a study directory::

    study.yaml                                   the resolved specification (fixed at the first run)
    pretrain/<variant>/                          an ``aveyb pretrain`` run: metrics.jsonl, checkpoints/, final/
    finetune/<variant>/<task>/lr<lr>/seed<s>/    an ``aveyb finetune`` run: results.json
    jobs/failed/<job>.json                       the error of a job's last failed attempt
    logs/<job>.log                               each job's output
    report/                                      ``aveyb study report``

A job is finished when its result exists (``pretrain/<variant>/final`` or ``results.json``),
so running the study again skips it. An interrupted pretraining job resumes from its last
checkpoint; a fine-tuning job leaves no ``results.json`` until it has finished.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from aveyb.study.spec import Study, StudyError

SPEC_FILE = "study.yaml"
DATA_DIR_PLACEHOLDER = "{data_dir}"


@dataclass(frozen=True)
class Job:
    kind: str                  # "pretrain" or "finetune"
    variant: str
    task: str | None = None
    lr: float | None = None
    seed: int | None = None

    @property
    def id(self) -> str:
        if self.kind == "pretrain":
            return f"pretrain/{self.variant}"
        from aveyb.evaluation.sweep import format_lr

        return f"finetune/{self.variant}/{self.task}/lr{format_lr(self.lr)}/seed{self.seed}"

    @property
    def file_name(self) -> str:
        return self.id.replace("/", "__")

    def directory(self, root: Path) -> Path:
        return Path(root) / self.id

    def is_done(self, root: Path) -> bool:
        d = self.directory(root)
        if self.kind == "pretrain":
            return (d / "final" / "config.json").is_file()
        return (d / "results.json").is_file()

    @classmethod
    def from_id(cls, job_id: str) -> Job:
        parts = job_id.split("/")
        if parts[0] == "pretrain" and len(parts) == 2:
            return cls("pretrain", parts[1])
        if parts[0] == "finetune" and len(parts) == 5 and parts[3].startswith("lr") and parts[4].startswith("seed"):
            return cls("finetune", parts[1], parts[2], float(parts[3][2:]), int(parts[4][4:]))
        raise StudyError(f"not a study job id: {job_id!r}")


def pretrain_jobs(study: Study) -> list[Job]:
    return [Job("pretrain", v.name) for v in study.variants if v.needs_pretraining]


def finetune_jobs(study: Study, variants: list[str] | None = None, data_dir: str | None = None) -> list[Job]:
    """Every variant × task × learning rate × seed, variants outermost."""
    from aveyb.tasks.registry import get_task

    data_dir = resolve_data_dir(data_dir)
    families = {}
    for task in study.finetune.tasks:
        try:
            families[task] = get_task(task, data_dir).family
        except Exception as err:  # an unknown task, or local data not found
            raise StudyError(f"study.finetune.tasks: {err}") from None
    jobs = []
    for v in study.variants:
        if variants is not None and v.name not in variants:
            continue
        for task in study.finetune.tasks:
            family = families[task]
            for lr in study.lrs_for(v, task, family):
                for seed in study.finetune.seeds:
                    jobs.append(Job("finetune", v.name, task, lr, seed))
    return jobs


# ---- the study directory ----------------------------------------------------------------------

_PRETRAINING_FIELDS = ("name", "scale", "variants", "reference", "pretrain", "token_budget")
_PROSE_FIELDS = ("description", "notes")


def prepare(study: Study, root: Path) -> None:
    """Write ``study.yaml``, or check that the directory holds the same study.

    The fine-tuning settings may still change while no fine-tuning job has finished (so
    pretraining can start before they are settled), and the description and notes at any time
    (they compute nothing); nothing else may.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / SPEC_FILE
    if path.is_file():
        stored, wanted = Study.from_yaml(path).to_dict(), study.to_dict()
        diff = sorted(k for k, v in wanted.items() if stored.get(k) != v)
        finetuned = any((root / "finetune").rglob("results.json")) if (root / "finetune").is_dir() else False
        fixed = [k for k in diff if k in _PRETRAINING_FIELDS or (finetuned and k not in _PROSE_FIELDS)]
        if fixed:
            raise StudyError(f"{root} holds another study (it differs in {fixed}); finished jobs would be mixed "
                             f"with the new ones: choose another --output-dir")
        if not diff:
            return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(study.to_yaml())
    os.replace(tmp, path)


def remember_data_dir(root: Path, data_dir: str | None) -> None:
    """Keep the data directory of the last run, so ``aveyb study report`` finds the local tasks."""
    if data_dir:
        (Path(root) / "data_dir.txt").write_text(data_dir + "\n")


def remembered_data_dir(root: Path) -> str | None:
    path = Path(root) / "data_dir.txt"
    return path.read_text().strip() if path.is_file() else None


def load(root: Path) -> Study:
    path = Path(root) / SPEC_FILE
    if not path.is_file():
        raise StudyError(f"{root} is not a study directory (no {SPEC_FILE}); run `aveyb study run` first")
    return Study.from_yaml(path)


def failure_path(root: Path, job: Job) -> Path:
    return Path(root) / "jobs" / "failed" / f"{job.file_name}.json"


def failures(root: Path) -> dict[str, dict]:
    folder = Path(root) / "jobs" / "failed"
    out = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = json.loads(path.read_text())
        out[record["job"]] = record
    return out


def job_states(study: Study, root: Path, variants: list[str] | None = None,
               data_dir: str | None = None) -> list[tuple[Job, str]]:
    """Every job of the study with its state: ``finished``, ``failed`` (its last attempt) or ``to run``."""
    root = Path(root)
    failed = failures(root)
    jobs = [j for j in pretrain_jobs(study) if variants is None or j.variant in variants]
    jobs += finetune_jobs(study, variants, data_dir)
    return [(j, "finished" if j.is_done(root) else "failed" if j.id in failed else "to run") for j in jobs]


def record_failure(root: Path, job: Job, error: str, trace: str = "") -> None:
    path = failure_path(root, job)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"job": job.id, "error": error, "traceback": trace[-4000:],
               "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


# ---- running one job --------------------------------------------------------------------------

def resolve_data_dir(data_dir: str | os.PathLike | None) -> str | None:
    value = data_dir or os.environ.get("AVEYB_DATA_DIR")
    return str(Path(value).resolve()) if value else None


def fill_data_dir(value, data_dir: str | None):
    if isinstance(value, str) and DATA_DIR_PLACEHOLDER in value:
        if data_dir is None:
            raise StudyError(f"{value!r} needs the data directory: pass --data-dir or set AVEYB_DATA_DIR "
                             f"(the folder holding corpus/ and tasks/)")
        return value.replace(DATA_DIR_PLACEHOLDER, data_dir)
    if isinstance(value, dict):
        return {k: fill_data_dir(v, data_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_data_dir(v, data_dir) for v in value]
    return value


def resolve_pretrained(name: str) -> str:
    """A ``pretrained:`` value as a path or Hub id; ``package:NAME`` is a model shipped in a Python package."""
    if not name.startswith("package:"):
        return name
    import importlib

    package = name.split(":", 1)[1]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise StudyError(f"pretrained: {name!r}: the package {package!r} is not installed "
                         f"(pip install {package.replace('_', '-')})") from None
    if hasattr(module, "get_model_path"):
        return str(module.get_model_path())
    return str(Path(module.__file__).resolve().parent / "model")


def model_path(study: Study, root: Path, variant: str) -> str:
    v = study.variant(variant)
    if v.pretrained is not None:
        return resolve_pretrained(v.pretrained)
    return str(Job("pretrain", variant).directory(root) / "final")


def run_job(root: str | os.PathLike, job_id: str, data_dir: str | None = None) -> str:
    """Run one job of the study in ``root`` (in this process); records a failure before re-raising."""
    root = Path(root)
    job = Job.from_id(job_id)
    data_dir = resolve_data_dir(data_dir)
    with job_lock(root, job):
        if job.is_done(root):  # finished meanwhile by another run, or copied in by --reuse
            return job.id
        return _run_locked(root, job, data_dir)


def _run_locked(root: Path, job: Job, data_dir: str | None) -> str:
    try:
        study = load(root)
        if job.kind == "pretrain":
            _pretrain(study, root, job, data_dir)
        else:
            _finetune(study, root, job, data_dir)
    except BaseException as err:  # a crash of any kind is recorded; KeyboardInterrupt too
        record_failure(root, job, f"{type(err).__name__}: {err}", traceback.format_exc())
        raise
    failure_path(root, job).unlink(missing_ok=True)
    return job.id


class JobBusy(StudyError):
    """The job is running in another process (another run of the same study holds its lock)."""


class job_lock:
    """An exclusive lock on one job (``jobs/locks/<job>.lock``): two runs of a study never train the same job."""

    def __init__(self, root: Path, job: Job):
        self.path = Path(root) / "jobs" / "locks" / f"{job.file_name}.lock"
        self.job = job

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "w")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise JobBusy(f"{self.job.id} is running in another process (lock {self.path})") from None
        return self

    def __exit__(self, *exc):
        self.fh.close()
        return False


def _pretrain(study: Study, root: Path, job: Job, data_dir: str | None) -> None:
    from aveyb.pretrain import checkpoint as ckpt
    from aveyb.pretrain.config import PretrainConfig
    from aveyb.pretrain.loop import pretrain

    values = fill_data_dir(study.pretrain_values(study.variant(job.variant)), data_dir)
    cfg = PretrainConfig.from_dict(values)
    out = job.directory(root)
    latest = ckpt.find_latest(out / "checkpoints") if (out / "checkpoints").is_dir() else None
    started = time.time()
    code = pretrain(cfg, out, resume=latest is not None)
    if code in (128 + 2, 128 + 15):  # SIGINT / SIGTERM: a checkpoint was written
        raise RuntimeError(f"pretraining {job.variant} was interrupted (exit code {code}); it resumes from its "
                           f"last checkpoint when the study runs again")
    if code != 0:
        raise RuntimeError(f"pretraining {job.variant} stopped with exit code {code}")
    done = {"variant": job.variant, "resumed_from": latest.name if latest else None,
            "last_attempt_s": round(time.time() - started, 1)}
    (out / "done.json").write_text(json.dumps(done, indent=1))


def _finetune(study: Study, root: Path, job: Job, data_dir: str | None) -> None:
    from aveyb.tasks.runner import run_finetune

    path = model_path(study, root, job.variant)
    if study.variant(job.variant).needs_pretraining and not Path(path).is_dir():
        raise StudyError(f"{job.variant} has no pretrained model yet ({path}): its pretraining job did not finish")
    cfg = study.finetune_config(job.task).replace(lr=job.lr, seed=job.seed)
    run_finetune(path, job.task, job.directory(root), cfg, data_dir=data_dir, log=print)
