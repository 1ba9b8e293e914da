"""``aveyb finetune``, ``aveyb sweep``, ``aveyb report``, ``aveyb quickstart``, ``aveyb tasks``.

Thin: parse arguments, build a :class:`~aveyb.tasks.config.FinetuneConfig`, call the library.
Heavy imports happen inside the command functions.
"""

from __future__ import annotations

import argparse
import shlex
import sys


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=None,
                   help="fine-tuning preset (paper, quick, cpu-tiny, quickstart, ci) or a YAML file; "
                        "default: the paper's protocol")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                   help="override any fine-tuning option (value parsed as YAML); repeatable")
    p.add_argument("--data-dir", default=None, help="folder holding tasks/<name>/ (default: $AVEYB_DATA_DIR)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="optimiser steps (overrides epochs); 0 evaluates the model without training")
    _add_data_flags(p)


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "own data", "with --task a folder, a file (.jsonl, .csv, .tsv, .parquet) or a Hugging Face dataset id: "
                    "which column is what (default: the usual names: text, label, tokens, tags, question, "
                    "context, answers)")
    g.add_argument("--task-type", default=None,
                   help="sequence_classification, token_classification, question_answering or retrieval; "
                        "needed only when the columns do not tell")
    g.add_argument("--text-column", dest="text_columns", action="append", default=None, metavar="NAME",
                   help="the text column; give it twice for sentence pairs")
    g.add_argument("--label-column", default=None, metavar="NAME", help="the class label column")
    g.add_argument("--tokens-column", default=None, metavar="NAME", help="the word list column (token tagging)")
    g.add_argument("--tags-column", default=None, metavar="NAME", help="the tag list column (token tagging)")
    g.add_argument("--question-column", default=None, metavar="NAME", help="the question column (QA)")
    g.add_argument("--context-column", default=None, metavar="NAME", help="the passage column (QA)")
    g.add_argument("--answers-column", default=None, metavar="NAME",
                   help='the answers column (QA): {"text": [...], "answer_start": [...]}')
    g.add_argument("--dataset-config", default=None, metavar="NAME", help="the Hugging Face dataset's config name")
    g.add_argument("--split", dest="split_map", action="append", default=None, metavar="OURS=THEIRS,...",
                   help="the dataset's split names, e.g. train=train,validation=dev,test=test; a split left out "
                        "is cut from train")


DATA_FLAGS = ("task_type", "text_columns", "label_column", "tokens_column", "tags_column", "question_column",
              "context_column", "answers_column", "dataset_config")


def parse_split_map(items: list[str] | None) -> dict[str, str] | None:
    """``["train=train,validation=dev"]`` -> ``{"train": "train", "validation": "dev"}``."""
    if not items:
        return None
    mapping = {}
    for part in (p.strip() for item in items for p in item.split(",")):
        ours, sep, theirs = part.partition("=")
        if not sep or ours.strip() not in ("train", "validation", "test") or not theirs.strip():
            raise ValueError(f"--split {part!r}: expected OURS=THEIRS with OURS one of train, validation, test "
                             "(e.g. --split train=train,validation=dev,test=test)")
        mapping[ours.strip()] = theirs.strip()
    return mapping


def _config(args, **extra):
    from aveyb.tasks.config import build_config, parse_set_items

    overrides = parse_set_items(args.overrides)
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    for name in DATA_FLAGS:
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    split_map = parse_split_map(getattr(args, "split_map", None))
    if split_map is not None:
        overrides["splits"] = split_map
    overrides.update({k: v for k, v in extra.items() if v is not None})
    return build_config(args.preset, overrides)


def _error(command: str, err: BaseException) -> int:
    """A user error as one message on stderr (no traceback): exit status 2."""
    print(f"aveyb {command}: error: {err}", file=sys.stderr)
    return 2


def _sweep_settings(args) -> tuple[list[float], list[int]]:
    from aveyb.tasks.config import LR_GRID, load_preset

    preset = (load_preset(args.preset).get("sweep") or {}) if args.preset else {}
    lrs = args.lrs or preset.get("lrs") or list(LR_GRID)
    seeds = args.seeds or preset.get("seeds") or list(range(10))
    return [float(x) for x in lrs], [int(s) for s in seeds]


def cmd_finetune(args) -> int:
    from aveyb.tasks.data import TaskDataError
    from aveyb.tasks.hub import HubUnavailableError
    from aveyb.tasks.runner import run_finetune
    from aveyb.tasks.training import TaskError

    try:
        cfg = _config(args, lr=args.lr, seed=args.seed, save_model=False if args.no_save else None)
        run_finetune(args.model, args.task, args.output_dir, cfg, data_dir=args.data_dir, force=args.force)
    except (TaskDataError, TaskError, HubUnavailableError, ValueError) as err:  # --set, --preset, --task, data
        return _error("finetune", err)
    return 0


def cmd_sweep(args) -> int:
    from aveyb.evaluation.report import write_report
    from aveyb.evaluation.sweep import run_sweep, sweep_grid

    try:
        cfg = _config(args)
        lrs, seeds = _sweep_settings(args)
        # a grid of tens of runs: keep only the scores unless asked (a mini model is ~150 MB a run)
        if not any(item.split("=", 1)[0].strip() == "save_model" for item in args.overrides):
            cfg = cfg.replace(save_model=bool(args.save_models))
    except ValueError as err:
        return _error("sweep", err)
    grid = sweep_grid(args.models, args.tasks, lrs, seeds)
    print(f"[aveyb sweep] {len(grid)} runs: {len(args.models)} model(s) x {len(args.tasks)} task(s) x "
          f"{len(lrs)} lr x {len(seeds)} seed(s) -> {args.output_dir}")
    failures = run_sweep(args.output_dir, grid, cfg, data_dir=args.data_dir, fail_fast=args.fail_fast)
    if not args.no_report:
        files = write_report(args.output_dir, command="aveyb " + shlex.join(sys.argv[1:]) if sys.argv else None)
        print(files["markdown"].read_text())
    if failures:
        print(f"[aveyb sweep] {len(failures)} run(s) failed:")
        for spec, err in failures:
            print(f"  {spec.model_name} {spec.task} lr={spec.lr:g} seed={spec.seed}: {err}")
        return 1
    return 0


def cmd_report(args) -> int:
    from aveyb.evaluation.report import write_report

    files = write_report(args.results_dir, args.output_dir, plots=not args.no_plots, title=args.title)
    print(files["markdown"].read_text())
    for kind, path in files.items():
        print(f"[aveyb report] {kind}: {path}")
    return 0


def cmd_quickstart(args) -> int:
    from aveyb.tasks.config import parse_set_items
    from aveyb.tasks.quickstart import quickstart

    return quickstart(output_dir=args.output_dir, pretrain_steps=args.pretrain_steps, finetune_steps=args.finetune_steps,
                      model=args.model, tasks=args.tasks, force=args.force, overrides=parse_set_items(args.overrides))


def cmd_tasks(args) -> int:
    from aveyb.tasks.data import TaskDataError, resolve_data_dir
    from aveyb.tasks.registry import REGISTRY, get_task
    from aveyb.tasks.sources import task_folders

    root = resolve_data_dir(args.data_dir)
    local = task_folders(root)
    print(f"{'task':24s} {'family':24s} {'source':11s} {'main metric':16s} description")
    for name in sorted(set(REGISTRY) | set(local)):
        try:
            t = REGISTRY[name] if name in REGISTRY else get_task(name, root)
        except TaskDataError as err:  # one broken folder must not hide the others
            print(f"{name:24s} {'?':24s} {'local':11s} {'?':16s} error: {str(err).splitlines()[0]}")
            continue
        print(f"{name:24s} {t.family:24s} {t.source:11s} {t.main_metric:16s} {t.description}")
    if root is None:
        print("(local tasks: give --data-dir or set AVEYB_DATA_DIR to list the task folders found there)")
    return 0


def cmd_predict(args) -> int:
    from aveyb.tasks.predict import PredictError, predict, write_jsonl
    from aveyb.tasks.training import TaskError

    try:
        records = predict(args.model, args.input, batch_size=args.batch_size, device=args.device,
                          progress=args.output is not None, serving=args.serving)
    except (PredictError, TaskError, ValueError) as err:  # bad input, model or option: one line, exit 2
        return _error("predict", err)
    write_jsonl(records, args.output)
    if args.output is not None:
        print(f"[aveyb predict] {len(records)} predictions -> {args.output}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune and score a model on one task",
                       description="Fine-tune a model (path or Hub id) on a task; writes OUTPUT_DIR/results.json. "
                                   "A finished run is skipped unless --force; a killed one resumes from its last "
                                   "checkpoint when run again.",
                       epilog="Exit status: 0 done; 2 a usage, configuration or data error (one message, no "
                              "traceback).")
    p.add_argument("--model", required=True, help="save_pretrained folder or Hugging Face id")
    p.add_argument("--task", required=True,
                   help="a task name (see aveyb tasks), a folder (train/validation/test files + meta.json, or "
                        "BEIR), a file (.jsonl, .csv, .tsv, .parquet) or a Hugging Face dataset id")
    p.add_argument("--output-dir", required=True,
                   help="run folder: results.json, the fine-tuned model (model/), checkpoints while it runs")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's, else 6e-5)")
    p.add_argument("--seed", type=int, default=None, help="random seed of the head, data order and dropout (default 0)")
    p.add_argument("--force", action="store_true", help="re-run even if results.json exists")
    p.add_argument("--no-save", action="store_true",
                   help="do not save the fine-tuned model (default: save_pretrained to OUTPUT_DIR/model)")
    _add_common(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("sweep", help="learning-rate x seed grid for models x tasks, then a report",
                       description="Runs OUTPUT_DIR/<model>/<task>/lr<lr>/seed<seed>; finished runs are skipped "
                                   "(resume by re-running). Best lr chosen on validation; median over seeds.")
    p.add_argument("--models", nargs="+", required=True, help="paths / Hub ids, optionally NAME=PATH")
    p.add_argument("--tasks", nargs="+", required=True, help="task names, folders, files or Hub dataset ids")
    p.add_argument("--output-dir", required=True, help="root folder: <model>/<task>/lr<lr>/seed<seed>/ per run")
    p.add_argument("--lrs", nargs="+", type=float, default=None, help="default: the preset's, else the paper's grid")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the preset's, else 0..9")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failed run")
    p.add_argument("--no-report", action="store_true", help="do not write the report when the grid is done")
    p.add_argument("--save-models", action="store_true",
                   help="save every run's fine-tuned model to its folder (default: scores only)")
    _add_common(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="markdown / CSV tables and plots from a folder of results")
    p.add_argument("results_dir", help="folder searched for results.json files (e.g. a sweep's --output-dir)")
    p.add_argument("--output-dir", default=None, help="where report.md, the CSVs and plots go (default: RESULTS_DIR)")
    p.add_argument("--title", default="Fine-tuning results", help="the report's heading")
    p.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("quickstart", help="pretrain a tiny Avey-B on the bundled corpus, fine-tune, print a table",
                       description="No data download, no GPU: pretrains the tiny preset on the bundled sample "
                                   "corpus (aveyb pretrain), fine-tunes it on generated needle-in-a-haystack and "
                                   "the task samples shipped with aveyb, prints and saves the results table.")
    p.add_argument("--output-dir", default="aveyb-quickstart", help="folder of the whole run (default: %(default)s)")
    p.add_argument("--pretrain-steps", type=int, default=200, help="pretraining steps (default: %(default)s)")
    p.add_argument("--finetune-steps", type=int, default=None, help="default: the quickstart preset's")
    p.add_argument("--model", default=None, help="skip pretraining and fine-tune this model instead")
    p.add_argument("--tasks", nargs="+", default=None,
                   help="tasks to fine-tune on (default: niah1 and the bundled samples)")
    p.add_argument("--force", action="store_true", help="re-run finished steps")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                   help="override a fine-tuning option of the quickstart preset; repeatable")
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("tasks", help="list the fine-tuning tasks",
                       description="List the built-in tasks (Hub, generated, bundled samples) and, with a data "
                                   "directory, every task folder (one holding a meta.json) found in it.")
    p.add_argument("--data-dir", default=None,
                   help="folder holding tasks/<name>/ (default: $AVEYB_DATA_DIR); its task folders are listed too")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("predict", help="predictions of a fine-tuned model (aveyb finetune's OUTPUT_DIR/model) for new data",
                       description="Reads the task family from the model's config.json and writes one JSON object "
                                   "per input row. Input columns: text, or text_a + text_b (classification: label, "
                                   "score, scores); tokens (token classification: tags per word); question + "
                                   "context (QA: answer, start, end); query, document or text (retrieval: "
                                   "embedding). Rows keep their id (else their row number).")
    p.add_argument("--model", required=True, help="folder saved by aveyb finetune (OUTPUT_DIR/model)")
    p.add_argument("--input", required=True, help="a .jsonl (JSON Lines), .csv or .tsv file")
    p.add_argument("--output", default=None, help="a .jsonl file to write (default: standard output)")
    p.add_argument("--batch-size", type=int, default=64, help="examples per forward pass (default 64)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--serving", default="reference", choices=("reference", "cpu-fast", "cpu-int8"),
                   help="how an Avey-B model runs on the CPU: as saved (default), aveyb.serving's fast path "
                        "(same outputs), or int8 (opt-in approximation); not for retrieval")
    p.set_defaults(func=cmd_predict)
