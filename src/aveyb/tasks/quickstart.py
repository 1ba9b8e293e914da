"""``aveyb quickstart``: the whole path on a laptop, no download, no GPU.

1. ``aveyb pretrain --config tiny`` on the corpus sample bundled with aveyb;
2. fine-tune the result on tasks that need no download: generated needle-in-a-haystack
   (``niah1``, short) and the task samples shipped in the package (``*-sample``);
3. print and save the results table (``OUTPUT_DIR/report.md``, CSV, plots).

Every step is skipped when its output exists, so an interrupted quickstart resumes.
"""

from __future__ import annotations

import time
from pathlib import Path

DEFAULT_TASKS = ("niah1", "sentiment_rt-sample", "paraphrase_bible-sample", "ner_wnut-sample",
                 "news_retrieval-sample")


def quickstart(output_dir: str = "aveyb-quickstart", pretrain_steps: int = 200, finetune_steps: int | None = None,
               model: str | None = None, tasks=None, force: bool = False, overrides: dict | None = None,
               log=print) -> int:
    from aveyb.evaluation.report import write_report
    from aveyb.evaluation.sweep import run_sweep, sweep_grid
    from aveyb.tasks.config import build_config

    t0 = time.time()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model is None:
        pre = out / "pretrain"
        final = pre / "final"
        if force or not (final / "config.json").is_file():
            from aveyb.cli import main as cli_main

            log(f"[aveyb quickstart] 1/3 pretraining the tiny preset for {pretrain_steps} steps -> {pre}")
            rc = cli_main(["pretrain", "--config", "tiny", "--output-dir", str(pre), "--max-steps", str(pretrain_steps)])
            if rc:
                return rc
        else:
            log(f"[aveyb quickstart] 1/3 reusing the pretrained model in {final}")
        model = str(final)
        name = "avey-b-tiny"
    else:
        name = Path(model.rstrip("/")).name or "model"
    overrides = dict(overrides or {})
    if finetune_steps:
        overrides["max_steps"] = finetune_steps
    cfg = build_config("quickstart", overrides)
    tasks = list(tasks or DEFAULT_TASKS)
    grid = sweep_grid([f"{name}={model}"], tasks, [cfg.lr], [cfg.seed])
    log(f"[aveyb quickstart] 2/3 fine-tuning on {', '.join(tasks)}")
    runs = out / "runs"
    if force:
        import shutil

        shutil.rmtree(runs, ignore_errors=True)
    failures = run_sweep(runs, grid, cfg, log=log)
    log("[aveyb quickstart] 3/3 results")
    files = write_report(runs, out, title="aveyb quickstart: tiny Avey-B pretrained on CPU",
                         command=f"aveyb quickstart --output-dir {output_dir} --pretrain-steps {pretrain_steps}")
    print(files["markdown"].read_text())
    log(f"[aveyb quickstart] table: {files['markdown']}  ({time.time() - t0:.0f}s)")
    if failures:
        for spec, err in failures:
            log(f"[aveyb quickstart] FAILED {spec.task}: {err}")
        return 1
    return 0
