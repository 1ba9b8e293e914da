"""Reports from a folder of results: markdown and CSV tables (models x tasks, like the paper's
tables: median over seeds at the best learning rate, with the spread) and matplotlib plots
(a bar chart per task, learning-rate curves)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from aveyb.evaluation.baseline import PREFIX as MAJORITY
from aveyb.evaluation.sweep import collect, select
from aveyb.tasks.families import FAMILIES

FAMILY_ORDER = tuple(FAMILIES)


def _family_rank(rows, task: str) -> int:
    fam = next(r["family"] for r in rows if r["task"] == task)
    return FAMILY_ORDER.index(fam) if fam in FAMILY_ORDER else len(FAMILY_ORDER)


def _fmt(stat: dict[str, float] | None, scale: float = 1.0) -> str:
    if not stat:
        return "-"
    med, lo, hi = stat["median"] * scale, stat["min"] * scale, stat["max"] * scale
    if stat["n"] > 1:
        return f"{med:.2f} [{lo:.2f}, {hi:.2f}]"
    return f"{med:.2f}"


def _scale(metric: str) -> float:
    """Fractions are shown as percentages; SQuAD metrics already are."""
    return 1.0 if metric in ("exact_match", "squad_f1") or metric.startswith(("HasAns", "NoAns")) else 100.0


BASELINE_ROW = "majority baseline"


def baseline(rows: list[dict[str, Any]], task: str, metric: str) -> float | None:
    """The majority-class score of ``metric`` on the task's reported split (None: not applicable)."""
    for r in rows:
        if r["task"] == task:
            stat = r["metrics"].get(f"{r['split']}/{MAJORITY}{metric}")
            if stat:
                return stat["median"]
    return None


def _fmt_baseline(value: float | None, metric: str) -> str:
    return "-" if value is None else f"{value * _scale(metric):.2f}"


def build_tables(rows: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    models = sorted({r["model"] for r in rows})
    tasks = sorted({r["task"] for r in rows}, key=lambda t: (_family_rank(rows, t), t))
    cell = {(r["model"], r["task"]): r for r in rows}
    main_of = {t: next(r["main_metric"] for r in rows if r["task"] == t) for t in tasks}
    lines = ["## Main metric (test split; median over seeds at the best validation learning rate, [min, max])", ""]
    header = ["model"] + [f"{t} ({main_of[t]})" for t in tasks]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for m in models:
        vals = []
        for t in tasks:
            r = cell.get((m, t))
            vals.append(_fmt(r["score"], _scale(r["main_metric"])) if r else "-")
        lines.append("| " + " | ".join([m] + vals) + " |")
    lines.append("| " + " | ".join([f"*{BASELINE_ROW}*"] + [_fmt_baseline(baseline(rows, t, main_of[t]), main_of[t])
                                                          for t in tasks]) + " |")
    lines += ["", "The majority baseline always predicts the train split's most frequent class (every token its "
              "most frequent tag); '-' where no class applies (QA, retrieval)."]
    lines += ["", "## All metrics (paper's and standard)", ""]
    long_rows = []
    for t in tasks:
        fam = next(r["family"] for r in rows if r["task"] == t)
        names = list(FAMILIES[fam].report_metrics) if fam in FAMILIES else []
        lines.append(f"### {t} ({fam})")
        lines.append("")
        lines.append("| model | best lr | seeds | " + " | ".join(names) + " |")
        lines.append("|---|---|---|" + "---|" * len(names))
        for m in models:
            r = cell.get((m, t))
            if not r:
                continue
            split = r["split"]
            vals = [_fmt(r["metrics"].get(f"{split}/{n}"), _scale(n)) for n in names]
            lines.append(f"| {m} | {r['best_lr']:g} | {len(r['seeds'])} | " + " | ".join(vals) + " |")
            for key, stat in sorted(r["metrics"].items()):
                long_rows.append({"model": m, "task": t, "family": fam, "best_lr": r["best_lr"],
                                  "metric": key, **{k: stat[k] for k in ("median", "mean", "std", "min", "max", "n")}})
        lines.append(f"| *{BASELINE_ROW}* | - | - | " + " | ".join(_fmt_baseline(baseline(rows, t, n), n)
                                                                for n in names) + " |")
        lines.append("")
    return "\n".join(lines), long_rows


def _save(fig, path: Path) -> Path:
    """Lay out, write (120 dpi) and close one figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    models = sorted({r["model"] for r in rows})
    tasks = sorted({r["task"] for r in rows}, key=lambda t: (_family_rank(rows, t), t))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(tasks) * max(1, len(models)) ** 0.5), 4))
    width = 0.8 / max(1, len(models))
    for i, m in enumerate(models):
        xs, ys, lo, hi = [], [], [], []
        for j, t in enumerate(tasks):
            r = next((r for r in rows if r["model"] == m and r["task"] == t), None)
            if r:
                s, sc = r["score"], _scale(r["main_metric"])
                xs.append(j + i * width)
                ys.append(s["median"] * sc)
                lo.append((s["median"] - s["min"]) * sc)
                hi.append((s["max"] - s["median"]) * sc)
        ax.bar(xs, ys, width, yerr=[lo, hi], label=m, capsize=2)
    for j, t in enumerate(tasks):  # the majority baseline: a dashed line across each task's bars
        main = next(r["main_metric"] for r in rows if r["task"] == t)
        value = baseline(rows, t, main)
        if value is not None:
            ax.hlines(value * _scale(main), j - width / 2, j + width * (len(models) - 0.5), colors="black",
                      linestyles="dashed", label=BASELINE_ROW if not any(
                          c.get_label() == BASELINE_ROW for c in ax.collections) else None)
    ax.set_xticks([j + width * (len(models) - 1) / 2 for j in range(len(tasks))])
    ax.set_xticklabels(tasks, rotation=30, ha="right")
    ax.set_ylabel("main metric (test, median over seeds)")
    ax.legend(fontsize=7)
    paths.append(_save(fig, out_dir / "scores.png"))
    if all(len(r["lr_scores"]) <= 1 for r in rows):  # one learning rate: no curve to draw
        (out_dir / "lr_curves.png").unlink(missing_ok=True)  # nor an old one left from a larger sweep
        return paths
    # learning-rate curves: mean validation main metric per lr
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        if len(r["lr_scores"]) > 1:
            lrs = sorted(r["lr_scores"], key=float)
            ax.plot([float(x) for x in lrs], [r["lr_scores"][x] * _scale(r["main_metric"]) for x in lrs], marker="o",
                    label=f"{r['model']} / {r['task']}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("validation main metric (mean over seeds)")
    if ax.lines:
        ax.legend(fontsize=6)
    paths.append(_save(fig, out_dir / "lr_curves.png"))
    return paths


def write_report(results_dir: str | Path, out_dir: str | Path | None = None, plots: bool = True,
                 title: str = "Fine-tuning results", command: str | None = None) -> dict[str, Path]:
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir else results_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    records = collect(results_dir)
    if not records:
        raise FileNotFoundError(f"no results.json under {results_dir}")
    rows = select(records)
    md, long_rows = build_tables(rows)
    header = [f"# {title}", ""]
    if command:
        header += ["Command:", "", "```", command, "```", ""]
    header += [(f"{len(records)} runs, {len(rows)} model x task cells. Scores in % (SQuAD EM/F1 as the official "
                "script). Selection: best mean validation main metric over the learning rates, then the test "
                "split's median over seeds at that rate."), ""]
    files = {"markdown": out_dir / "report.md", "csv": out_dir / "results.csv", "wide_csv": out_dir / "table.csv",
             "json": out_dir / "summary.json"}
    files["markdown"].write_text("\n".join(header) + "\n" + md + "\n")
    with open(files["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["model", "task", "family", "best_lr", "metric", "median", "mean", "std",
                                          "min", "max", "n"])
        w.writeheader()
        w.writerows(long_rows)
    tasks = sorted({r["task"] for r in rows})
    with open(files["wide_csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model"] + tasks)
        for m in sorted({r["model"] for r in rows}):
            w.writerow([m] + [next((f"{r['score']['median']:.6g}" for r in rows if r["model"] == m and r["task"] == t),
                                   "") for t in tasks])
    files["json"].write_text(json.dumps(rows, indent=2) + "\n")
    if plots:
        for i, p in enumerate(plot(rows, out_dir)):
            files[f"plot{i}"] = p
    return files
