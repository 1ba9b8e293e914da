"""``aveyb study``: list, show, run and report studies (the paper's comparison and ablations).

  aveyb study list
  aveyb study show layer_arrangement --scale micro > my_study.yaml      # edit, then run the file
  aveyb study run baselines --scale micro --output-dir studies/baselines --data-dir ../shared/data
  aveyb study report studies/baselines

Exit codes: 0 everything finished; 1 a job failed or waits on a failed one; 2 a bad
specification or argument.
"""

from __future__ import annotations

import argparse
import sys


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser("study", help="run the paper's comparison or an ablation as one resumable command",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="study_command", required=True, metavar="ACTION")

    p = sub.add_parser("list", help="the built-in studies, their variants and claims")
    p.add_argument("--scale", default="micro", choices=("micro", "mini", "base"), help="scale to describe")
    p.set_defaults(func=_list)

    p = sub.add_parser("show", help="print a study's full specification as YAML (a starting point for your own)")
    p.add_argument("study", help="a built-in study name or a YAML file")
    p.add_argument("--scale", default="micro", choices=("micro", "mini", "base"), help="scale of a built-in study")
    _add_overrides(p)
    p.set_defaults(func=_show)

    p = sub.add_parser("run", help="pretrain, fine-tune and report; re-running resumes",
                       description="Pretrain every variant once, fine-tune every variant on every task x learning "
                                   "rate x seed, then write the report. Finished jobs are skipped and interrupted "
                                   "pretraining resumes from its last checkpoint.")
    p.add_argument("study", help="a built-in study name (aveyb study list) or a YAML file")
    p.add_argument("--scale", default="micro", choices=("micro", "mini", "base"), help="scale of a built-in study")
    p.add_argument("--output-dir", required=True, help="the study directory (created; reused to resume)")
    p.add_argument("--data-dir", default=None, help="folder with corpus/ and tasks/ (default: $AVEYB_DATA_DIR)")
    p.add_argument("--executor", default="local", choices=("local", "submitit"),
                   help="local: subprocesses on this host; submitit: a Slurm cluster (or its local mode)")
    p.add_argument("--cluster", default=None, choices=("slurm", "local", "debug"),
                   help="submitit's cluster (default: Slurm when available, else local)")
    p.add_argument("--slurm-partition", default=None, help="Slurm partition for submitit jobs")
    p.add_argument("--timeout-min", type=int, default=24 * 60, help="time limit of one submitit job in minutes")
    p.add_argument("--gpus", type=int, default=None, help="GPUs to use on this host (default: all visible; 0: CPU)")
    p.add_argument("--jobs-per-gpu", type=int, default=1, help="jobs sharing one GPU at a time (small models)")
    p.add_argument("--cpu-jobs", type=int, default=1,
                   help="without GPUs: jobs at once, splitting OMP_NUM_THREADS (or the cores) between them")
    p.add_argument("--stage", action="append", choices=("pretrain", "finetune", "report"), default=None,
                   help="run only these stages (repeatable; default: all three)")
    p.add_argument("--variants", default=None, help="comma-separated subset of the variants")
    p.add_argument("--reuse", action="append", default=[], metavar="DIR",
                   help="another study directory: its finished jobs with the same settings (model, "
                        "recipe, task, lr, seed) are copied in instead of run again (repeatable)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and list every job (finished, failed, to run) without running any")
    _add_overrides(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("status", help="what has finished, failed or not run in a study directory")
    p.add_argument("output_dir", metavar="DIR", help="a study directory")
    p.set_defaults(func=_status)

    p = sub.add_parser("report", help="(re)write DIR/report: markdown, CSV and plots")
    p.add_argument("output_dir", metavar="DIR", help="a study directory")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=_report)


def _add_overrides(p) -> None:
    p.add_argument("--token-budget", type=int, default=None, help="pretraining tokens per variant")
    p.add_argument("--tasks", default=None, help="comma-separated fine-tuning tasks (replaces the study's)")
    p.add_argument("--seeds", default=None, help="comma-separated fine-tuning seeds (replaces the study's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="set any field of the study, dotted, value parsed as YAML: "
                        "--set pretrain.lr=1e-3 --set finetune.settings.max_steps=300; repeatable")


def _load(name: str, scale: str, args=None):
    from pathlib import Path

    from aveyb.study.builtin import builtin_study
    from aveyb.study.spec import Study, apply_overrides

    study = Study.from_yaml(name) if name.endswith((".yaml", ".yml")) or Path(name).is_file() \
        else builtin_study(name, scale)
    if args is None:
        return study
    items = list(args.overrides)
    if args.token_budget is not None:
        items.append(f"token_budget={args.token_budget}")
    if args.tasks:
        import json

        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        kept = {t: v for t, v in study.finetune.task_settings.items() if t in tasks}
        items += [f"finetune.tasks={json.dumps(tasks)}", f"finetune.task_settings={json.dumps(kept)}"]
    if args.seeds:
        items.append(f"finetune.seeds=[{args.seeds}]")
    return apply_overrides(study, items) if items else study


def _fail(message: str) -> int:
    print(f"aveyb study: error: {message}", file=sys.stderr)
    return 2


def _list(args) -> int:
    from aveyb.study.builtin import BUILTIN, builtin_study

    print(f"Built-in studies (scale {args.scale}; every one adds the all-MiniLM-L6-v2 reference row):\n")
    for name in BUILTIN:
        study = builtin_study(name, args.scale)
        variants = [v.name for v in study.variants]
        print(f"  {name:<18} {len(variants)} variants: {', '.join(variants)}")
        print(f"  {'':<18} reference {study.reference}; claims: {', '.join(study.claims) or '-'}")
    print("\nScales: micro (a 2-core CPU), mini (one GPU per pretraining job), base (the paper).")
    return 0


def _show(args) -> int:
    from aveyb.study.spec import StudyError

    try:
        print(_load(args.study, args.scale, args).to_yaml(), end="")
    except StudyError as err:
        return _fail(str(err))
    return 0


def _run(args) -> int:
    from aveyb.study.executors import LocalExecutor, SubmititExecutor
    from aveyb.study.jobs import resolve_data_dir
    from aveyb.study.runner import run_study
    from aveyb.study.spec import StudyError

    try:
        study = _load(args.study, args.scale, args)
        variants = args.variants.split(",") if args.variants else None
        for v in variants or []:
            study.variant(v)
        data_dir = resolve_data_dir(args.data_dir)
        from pathlib import Path

        from aveyb.study.jobs import load

        for other in args.reuse:  # a bad --reuse fails now, before anything runs
            try:
                load(Path(other))
            except StudyError as err:
                raise StudyError(f"--reuse: {err}") from None
        if args.dry_run:
            return _dry_run(study, args.output_dir, variants, data_dir, args.reuse)
        if args.executor == "submitit":
            extra = {"slurm_partition": args.slurm_partition} if args.slurm_partition else {}
            executor = SubmititExecutor(args.cluster, data_dir=data_dir, timeout_min=args.timeout_min, **extra)
        else:
            if args.cpu_jobs < 1 or args.jobs_per_gpu < 1:
                raise StudyError("--cpu-jobs and --jobs-per-gpu must be at least 1")
            executor = LocalExecutor(args.gpus, args.jobs_per_gpu, data_dir=data_dir, cpu_jobs=args.cpu_jobs)
        stages = tuple(args.stage) if args.stage else ("pretrain", "finetune", "report")
        outcome = run_study(study, args.output_dir, executor, stages=stages, variants=variants, data_dir=data_dir,
                            reuse_from=args.reuse)
    except (StudyError, RuntimeError) as err:
        return _fail(str(err))
    reused = f"{len(outcome.reused)} reused from other studies, " if outcome.reused else ""
    before = len(set(outcome.skipped) - set(outcome.reused))
    print(f"[aveyb study] {len(outcome.ran)} job(s) ran, {before} finished before, {reused}"
          f"{len(outcome.failed)} failed, {len(outcome.blocked)} waiting on failed pretraining")
    for job, error in outcome.failed.items():
        print(f"[aveyb study] FAILED {job}: {error}", file=sys.stderr)
    if outcome.stopped:
        print("[aveyb study] stopped by a signal: run the same command again to resume", file=sys.stderr)
    return 0 if outcome.ok else 1


def _job_table(study, root, variants, data_dir) -> list[tuple[str, str]]:
    from aveyb.study.jobs import job_states

    return [(job.id, state) for job, state in job_states(study, root, variants, data_dir)]


def _print_jobs(rows) -> None:
    from collections import Counter

    for job, state in rows:
        print(f"  {state:<9} {job}")
    counts = Counter(state for _, state in rows)
    print(f"{len(rows)} job(s): " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


def _dry_run(study, root, variants, data_dir, reuse_from=()) -> int:
    from pathlib import Path

    from aveyb.study import jobs as J

    if (Path(root) / J.SPEC_FILE).is_file():
        stored = J.load(Path(root))
        if stored.to_dict() != study.to_dict():
            print(f"note: {root} holds a study that differs from this one; `run` checks whether it may continue")
    print(f"study {study.name} ({study.scale}), {len(study.variants)} variants, reference {study.reference}; "
          f"output {root}")
    rows = _job_table(study, root, variants, data_dir)
    if reuse_from:
        from aveyb.study.reuse import reusable

        found = {job.id: f"{source}: {theirs.id}" for job, source, theirs in
                 reusable(study, Path(root), [Path(d) for d in reuse_from], variants, data_dir)}
        rows = [(job, "reuse" if job in found else state) for job, state in rows]
    _print_jobs(rows)
    return 0


def _status(args) -> int:
    from pathlib import Path

    from aveyb.study import jobs as J
    from aveyb.study.spec import StudyError

    try:
        study = J.load(Path(args.output_dir))
        rows = _job_table(study, args.output_dir, None, J.remembered_data_dir(Path(args.output_dir)))
    except StudyError as err:
        return _fail(str(err))
    _print_jobs(rows)
    for job, record in J.failures(Path(args.output_dir)).items():
        print(f"failed {job}: {record['error']}")
    return 0


def _report(args) -> int:
    from aveyb.study.report import write_report
    from aveyb.study.spec import StudyError

    try:
        path = write_report(args.output_dir, plots=not args.no_plots)
    except StudyError as err:
        return _fail(str(err))
    print(f"[aveyb study] report: {path / 'report.md'}")
    return 0
