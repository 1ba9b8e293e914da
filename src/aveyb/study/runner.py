"""Run a whole study: pretrain every variant once, fine-tune every variant on every task ×
learning rate × seed, then write the report. Finished jobs are skipped, so running it again
resumes; a failed job is recorded and the others go on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aveyb.study import jobs as J
from aveyb.study.spec import Study


@dataclass
class StudyOutcome:
    ran: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)     # job id -> error
    blocked: list = field(default_factory=list)    # fine-tuning jobs of variants whose pretraining failed
    stopped: bool = False                          # a signal stopped the run; running it again resumes
    reused: list = field(default_factory=list)     # jobs copied from other study directories
    report: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked and not self.stopped


def run_study(study: Study, root: str | Path, executor, stages=("pretrain", "finetune", "report"),
              variants: list[str] | None = None, data_dir: str | None = None, log=print,
              reuse_from: list | None = None) -> StudyOutcome:
    """``reuse_from``: other study directories whose finished jobs with the same settings are
    copied in instead of run (aveyb.study.reuse)."""
    root = Path(root)
    data_dir = J.resolve_data_dir(data_dir)
    jobs_to_finetune = J.finetune_jobs(study, variants, data_dir)  # fails now on an unknown task
    J.prepare(study, root)
    J.remember_data_dir(root, data_dir)
    outcome = StudyOutcome()
    if reuse_from:
        from aveyb.study.reuse import reuse

        outcome.reused = reuse(study, root, [Path(d) for d in reuse_from], variants, data_dir, log)
    if "pretrain" in stages:
        todo = [j for j in J.pretrain_jobs(study) if variants is None or j.variant in variants]
        _run(executor, root, todo, outcome, log, "pretraining")
    outcome.stopped = bool(getattr(executor, "stopped", False))
    if "finetune" in stages and not outcome.stopped:
        todo, ready = [], {}
        for job in jobs_to_finetune:
            if job.variant not in ready:
                v = study.variant(job.variant)
                ready[job.variant] = not v.needs_pretraining or J.Job("pretrain", v.name).is_done(root)
            if ready[job.variant] or job.is_done(root):
                todo.append(job)
            else:
                outcome.blocked.append(job.id)
        if outcome.blocked:
            names = sorted({b.split("/")[1] for b in outcome.blocked})
            log(f"[aveyb study] {len(outcome.blocked)} fine-tuning job(s) wait for pretraining of {names}")
        _run(executor, root, todo, outcome, log, "fine-tuning")
        outcome.stopped = bool(getattr(executor, "stopped", False))
    if "report" in stages:
        try:
            from aveyb.study.report import write_report

            outcome.report = write_report(root)
            log(f"[aveyb study] report: {outcome.report / 'report.md'}")
        except Exception as err:  # the report is rebuilt by `aveyb study report`; jobs' results are safe
            outcome.failed["report"] = f"{type(err).__name__}: {err}"
            log(f"[aveyb study] FAILED to write the report: {err}")
    return outcome


def _run(executor, root: Path, todo: list, outcome: StudyOutcome, log, stage: str) -> None:
    done = {j.id for j in todo if j.is_done(root)}
    pending = [j for j in todo if j.id not in done]
    outcome.skipped += [j.id for j in todo if j.id in done]
    if not todo:
        return
    log(f"[aveyb study] {stage}: {len(pending)} job(s) to run, {len(todo) - len(pending)} finished before")
    if not pending:
        return
    failed = executor.run(root, pending)
    outcome.failed.update(failed)
    outcome.ran += [j.id for j in pending if j.id not in failed and j.is_done(root)]
