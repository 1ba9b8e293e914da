"""``aveyb study report DIR``: what a study found, as markdown, CSV and PNG plots.

* Pretraining: every variant's validation-loss curve on one plot; final masked-LM loss and
  accuracy, tokens seen, training time, tokens/s, parameters (non-embedding against the
  reference, with a warning beyond 5%).
* Each task: the median [min, max] over seeds at the learning rate chosen on validation,
  the paper's metric and the standard ones, and the majority-class baseline where the
  harness recorded it.
* Each variant against the reference: the mean difference per task with a 95% bootstrap
  interval over seeds; won, lost or tied (the interval includes zero).
* The paper's claims (:mod:`aveyb.study.claims`): supported, contradicted or inconclusive.

Every score is "higher is better" (accuracy, F1, nDCG). The files are written to a fresh
folder that then replaces ``DIR/report``, so a reader never sees half a report.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from aveyb.study import jobs as J
from aveyb.study.claims import CLAIMS
from aveyb.study.spec import Study

BOOTSTRAP_SAMPLES = 10_000
PARAMETER_TOLERANCE = 0.05


# ---- gathering --------------------------------------------------------------------------------

def pretraining_summary(study: Study, root: Path) -> dict[str, dict[str, Any]]:
    """Per variant: curves, final validation loss/accuracy, tokens, time, throughput, parameters."""
    out = {}
    for v in study.variants:
        row: dict[str, Any] = {"variant": v.name, "arch": v.arch if v.needs_pretraining else "pretrained",
                               "pretrained": v.pretrained}
        if v.needs_pretraining:
            run = J.Job("pretrain", v.name).directory(root)
            records = _read_jsonl(run / "metrics.jsonl")
            train = [r for r in records if "loss" in r]
            val = [r for r in records if "val_loss" in r]
            row["curve"] = [(r["step"], r["tokens"] if "tokens" in r else None, r["val_loss"]) for r in val]
            row["train_curve"] = [(r["step"], r["loss"]) for r in train]
            row["tokens"] = max((r.get("tokens", 0) for r in train), default=0)
            rates = [r["tokens_per_s"] for r in train[1:]] or [r["tokens_per_s"] for r in train]
            row["tokens_per_s"] = statistics.median(rates) if rates else None
            row["train_time_s"] = _train_time(train)
            if val:
                row["val_loss"], row["val_accuracy"] = val[-1]["val_loss"], val[-1]["val_accuracy"]
            row["finished"] = J.Job("pretrain", v.name).is_done(root)
        try:
            row["params"] = _parameters(J.model_path(study, root, v.name), v, study, root)
        except Exception as err:  # a model not built yet, or a package not installed here
            row["params"] = None
            row["params_error"] = f"{type(err).__name__}: {err}"
        out[v.name] = row
    return out


def _train_time(train: list[dict]) -> float | None:
    """Seconds of training, from the logged throughput (robust to resumes; leaves evaluation out)."""
    total, last_tokens = 0.0, 0
    for r in sorted(train, key=lambda r: r["step"]):
        if r.get("tokens_per_s"):
            total += (r["tokens"] - last_tokens) / r["tokens_per_s"]
        last_tokens = r["tokens"]
    return total or None


def _parameters(path: str, variant, study: Study, study_root: Path) -> dict[str, int]:
    from aveyb.baselines.params import build_on_meta, count_parameters

    final = Path(path)
    if variant.needs_pretraining and not (final / "config.json").is_file():
        from aveyb.data.tokenizer import load_tokenizer, model_vocab_size
        from aveyb.pretrain.config import PretrainConfig

        # not pretrained yet: the variant's model as it will be built, with the study's tokenizer
        values = J.fill_data_dir(study.pretrain_values(variant), J.remembered_data_dir(study_root))
        cfg = PretrainConfig.from_dict(values)
        vocab = model_vocab_size(load_tokenizer(cfg.tokenizer))
        return count_parameters(build_on_meta(cfg.arch, cfg.model_preset, vocab, **cfg.model_overrides))
    import torch
    from transformers import AutoConfig

    from aveyb.architectures import auto_class

    config = AutoConfig.from_pretrained(str(final))
    with torch.device("meta"):
        model = auto_class("masked_lm").from_config(config)
    return count_parameters(model)


def finetuning_rows(root: Path) -> tuple[list[dict], list[dict]]:
    """The sweep's selection (best lr on validation, spread over seeds) and the raw records."""
    from aveyb.evaluation.sweep import collect, select

    folder = Path(root) / "finetune"
    records = collect(folder) if folder.is_dir() else []
    return select(records), records


def seed_scores(rows: list[dict], records: list[dict]) -> dict[tuple[str, str], dict[int, float]]:
    """(variant, task) -> {seed: test score of the main metric at the chosen learning rate}."""
    out = {}
    for row in rows:
        key = f"{row['split']}/{row['main_metric']}"
        out[(row["model"], row["task"])] = {
            r["seed"]: r["metrics"][key] for r in records
            if r["model_name"] == row["model"] and r["task"] == row["task"] and float(r["lr"]) == row["best_lr"]
            and key in r["metrics"]}
    return out


def majority_baselines(records: list[dict]) -> dict[str, float]:
    """task -> the majority-class score of its main metric, where the harness recorded one."""
    out = {}
    for r in records:
        main = r.get("main_metric")
        for split in ("test", "validation"):
            value = r.get("metrics", {}).get(f"{split}/majority_{main}")
            if value is not None and r["task"] not in out:
                out[r["task"]] = value
    return out


# ---- statistics -------------------------------------------------------------------------------

def bootstrap_difference(a: list[float], b: list[float], samples: int = BOOTSTRAP_SAMPLES,
                         seed: int = 0) -> tuple[float, float, float]:
    """Mean(a) - mean(b) and its 95% percentile interval, resampling each side's seeds."""
    if not a or not b:
        raise ValueError("both sides need at least one seed")
    rng = random.Random(seed)
    diffs = sorted(statistics.fmean(rng.choices(a, k=len(a))) - statistics.fmean(rng.choices(b, k=len(b)))
                   for _ in range(samples))
    return statistics.fmean(a) - statistics.fmean(b), diffs[int(0.025 * samples)], diffs[int(0.975 * samples) - 1]


def verdict(low: float, high: float) -> str:
    if low > 0:
        return "won"
    if high < 0:
        return "lost"
    return "tied"


def compare(scores: dict, a: str, b: str, tasks: list[str]) -> dict | None:
    """a against b over ``tasks``: per seed the mean score over the tasks, then the bootstrap."""
    def per_seed(variant):
        tables = [scores.get((variant, t), {}) for t in tasks]
        seeds = set.intersection(*(set(t) for t in tables)) if tables and all(tables) else set()
        return [statistics.fmean(t[s] for t in tables) for s in sorted(seeds)]

    sa, sb = per_seed(a), per_seed(b)
    if not sa or not sb:
        return None
    diff, low, high = bootstrap_difference(sa, sb)
    return {"a": a, "b": b, "tasks": tasks, "mean_a": statistics.fmean(sa), "mean_b": statistics.fmean(sb),
            "diff": diff, "low": low, "high": high, "seeds": (len(sa), len(sb)), "result": verdict(low, high)}


def evaluate_claims(study: Study, scores: dict, families: dict[str, str]) -> list[dict]:
    trained = [v.name for v in study.variants if v.needs_pretraining]
    out = []
    for claim_id in study.claims:
        claim = CLAIMS[claim_id]
        tasks = [t for t in study.finetune.tasks if not claim.families or families.get(t) in claim.families]
        comparisons = [compare(scores, a, b, tasks) for a, b in claim.comparisons(study.reference, trained)
                       if a in trained and b in trained]
        missing = [c for c in comparisons if c is None]
        done = [c for c in comparisons if c is not None]
        if not done or missing:
            status = "not run" if not done else "incomplete"
        elif all(c["result"] == "won" for c in done):
            status = "supported"
        elif any(c["result"] == "lost" for c in done):
            status = "contradicted"
        else:
            status = "inconclusive at this scale"
        out.append({"claim": claim_id, "text": claim.text, "status": status, "tasks": tasks, "comparisons": done})
    return out


# ---- writing ----------------------------------------------------------------------------------

def write_report(root: str | Path, plots: bool = True) -> Path:
    """Write ``root/report`` (report.md, CSV files, plots) and return its path."""
    root = Path(root)
    study = J.load(root)
    pre = pretraining_summary(study, root)
    rows, records = finetuning_rows(root)
    scores = seed_scores(rows, records)
    families = {r["task"]: r["family"] for r in rows}
    majority = majority_baselines(records)
    comparisons = [c for v in study.variants if v.name != study.reference
                   for t in study.finetune.tasks
                   if (c := compare(scores, v.name, study.reference, [t])) is not None]
    claims = evaluate_claims(study, scores, families)
    status = _job_status(study, root)

    final = root / "report"
    tmp = Path(tempfile.mkdtemp(prefix=".report-", dir=root))
    try:
        md = _markdown(study, pre, rows, majority, comparisons, claims, status)
        if plots:
            md += _plots(tmp, study, pre, rows, majority)
        (tmp / "report.md").write_text(md)
        _write_csvs(tmp, study, pre, rows, comparisons, claims)
        (tmp / "summary.json").write_text(json.dumps(
            {"study": study.name, "scale": study.scale, "reference": study.reference, "claims": claims,
             "comparisons": comparisons, "jobs": status,
             "pretraining": {k: {x: y for x, y in v.items() if "curve" not in x} for k, v in pre.items()}},
            indent=1, default=str))
        for path in tmp.iterdir():
            path.chmod(0o644)
        tmp.chmod(0o755)
        old = root / ".report-old"
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _job_status(study: Study, root: Path) -> dict:
    from aveyb.study.reuse import reused_jobs

    states = J.job_states(study, root, data_dir=J.remembered_data_dir(root))
    errors = {k: v["error"] for k, v in J.failures(root).items()}
    reused = reused_jobs(root)
    return {"total": len(states), "finished": sum(state == "finished" for _, state in states),
            "failed": {j.id: errors[j.id] for j, state in states if state == "failed"},
            "not_run": [j.id for j, state in states if state == "to run"],
            "reused": {j.id: reused[j.id] for j, state in states if state == "finished" and j.id in reused}}


def _count(x) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _markdown(study, pre, rows, majority, comparisons, claims, status) -> str:
    from aveyb.evaluation.report import build_tables

    ref = pre.get(study.reference, {}).get("params") or {}
    lines = [f"# Study `{study.name}` ({study.scale})", "", study.description, "",
             f"Reference variant: `{study.reference}`. Jobs: {status['finished']} of {status['total']} finished, "
             f"{len(status['failed'])} failed, {len(status['not_run'])} not run.", ""]
    lines += ["What ran (from the study's specification):", ""] + [f"* {line}" for line in _recipe(study)] + [""]
    if study.notes:
        lines += ["Notes of the study's definition:", ""] + [f"* {n}" for n in study.notes] + [""]

    lines += ["## Pretraining", "",
              "| variant | arch | non-embedding params | vs reference | total params | tokens | val loss | "
              "val accuracy | training time | tokens/s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    warnings = []
    for name, p in pre.items():
        params = p.get("params") or {}
        ratio = "-"
        if params and ref:
            r = params["non_embedding"] / ref["non_embedding"] - 1
            ratio = f"{100 * r:+.1f}%"
            if abs(r) > PARAMETER_TOLERANCE and name != study.reference:
                kind = "a pretrained row fine-tuned as is" if p.get("pretrained") else "pretrained by the study"
                warnings.append(f"`{name}` ({kind}) has {params['non_embedding']:,} non-embedding parameters, "
                                f"{100 * r:+.1f}% from the reference's {ref['non_embedding']:,} (more than 5%)")
        lines.append("| " + " | ".join([
            name, p["arch"], _count(params.get("non_embedding")), ratio, _count(params.get("total")),
            _count(p.get("tokens")) if not p.get("pretrained") else "(pretrained)",
            f"{p['val_loss']:.3f}" if "val_loss" in p else "-",
            f"{_pct(p.get('val_accuracy'))}%" if "val_accuracy" in p else "-",
            f"{p['train_time_s'] / 60:.1f} min" if p.get("train_time_s") else "-",
            _count(p.get("tokens_per_s")),
        ]) + " |")
    lines.append("")
    lines += [f"**Warning:** {w}." for w in warnings] + ([""] if warnings else [])

    if rows:
        lines += ["## Fine-tuning", "", "Test split; median [min, max] over seeds at the learning rate with the best "
                  "mean validation score; scores in %.", ""]
        tables, _ = build_tables(rows)
        if majority and "majority baseline" not in tables:
            maj = ["", "Majority-class baseline (always the most frequent training label): " +
                   ", ".join(f"{t} {_pct(v)}" for t, v in sorted(majority.items())), ""]
            head, _, rest = tables.partition("\n## All metrics")
            tables = head + "\n".join(maj) + "\n## All metrics" + rest
        lines += [("\n" + tables).replace("\n## ", "\n### ").lstrip("\n"), ""]

    if comparisons:
        lines += [f"## Against the reference (`{study.reference}`)", "",
                  "Mean test score difference over seeds (points), 95% bootstrap interval; won / lost when the "
                  "interval excludes zero, tied otherwise.", "",
                  "| variant | task | difference | 95% interval | seeds | result |", "|---|---|---:|---|---|---|"]
        tally: dict[str, dict[str, int]] = {}
        for c in comparisons:
            lines.append(f"| {c['a']} | {c['tasks'][0]} | {100 * c['diff']:+.2f} | [{100 * c['low']:+.2f}, "
                         f"{100 * c['high']:+.2f}] | {c['seeds'][0]} vs {c['seeds'][1]} | {c['result']} |")
            tally.setdefault(c["a"], {"won": 0, "lost": 0, "tied": 0})[c["result"]] += 1
        lines += ["", "| variant | tasks won | lost | tied |", "|---|---:|---:|---:|"]
        lines += [f"| {v} | {t['won']} | {t['lost']} | {t['tied']} |" for v, t in tally.items()] + [""]

    if claims:
        lines += ["## The paper's claims at this scale", "",
                  "Each comparison: mean over the claim's tasks per seed, then the difference with a 95% bootstrap "
                  "interval. Supported: every interval above zero; contradicted: one below zero; otherwise "
                  "inconclusive.", "", "| claim | verdict | numbers |", "|---|---|---|"]
        for c in claims:
            numbers = "; ".join(f"{x['a']} − {x['b']} = {100 * x['diff']:+.2f} [{100 * x['low']:+.2f}, "
                                f"{100 * x['high']:+.2f}]" for x in c["comparisons"]) or "-"
            lines.append(f"| {c['text']} (tasks: {', '.join(c['tasks'])}) | **{c['status']}** | {numbers} |")
        lines.append("")

    if status.get("reused"):
        by_source: dict[str, list[str]] = {}
        for job, where in status["reused"].items():
            by_source.setdefault(where["study_dir"], []).append(job)
        lines += ["## Jobs reused from other studies", "",
                  "Finished there with the same model, recipe, task, settings, learning rate and seed "
                  "(`--reuse`); copied, not run again.", ""]
        for source, reused in sorted(by_source.items()):
            lines.append(f"* `{source}`: {len(reused)} job(s): {', '.join(f'`{j}`' for j in sorted(reused)[:12])}"
                         + (f" and {len(reused) - 12} more" if len(reused) > 12 else ""))
        lines.append("")
    if status["failed"] or status["not_run"]:
        lines += ["## Jobs not finished", ""]
        lines += [f"* failed: `{k}`: {v}" for k, v in status["failed"].items()]
        if status["not_run"]:
            shown = status["not_run"][:20]
            lines += [f"* not run: {', '.join(f'`{j}`' for j in shown)}"
                      + (f" and {len(status['not_run']) - len(shown)} more" if len(status["not_run"]) > 20 else "")]
        lines.append("")
    return "\n".join(lines)


def _recipe(study: Study) -> list[str]:
    trained = [v for v in study.variants if v.needs_pretraining]
    out = []
    if trained:
        cfg = study.pretrain_config(trained[0])
        out.append(f"pretraining: {cfg.model_preset} size, tokenizer `{cfg.tokenizer}`, sequences of {cfg.seq_len}, "
                   f"{cfg.global_batch_tokens:,} tokens/step x {cfg.max_steps:,} steps = "
                   f"{cfg.global_batch_tokens * cfg.max_steps:,} tokens per variant, masking {cfg.mask_rate:.0%}, "
                   f"peak lr {cfg.lr:g} ({cfg.schedule})")
        changed = [f"{v.name}: {v.model or ''}{' ' if v.model and v.pretrain else ''}{v.pretrain or ''}"
                   for v in trained if v.model or v.pretrain]
        if changed:
            out.append("variant overrides: " + "; ".join(changed))
    ft = study.finetune
    lrs = ", ".join(f"{k} {v}" for k, v in ft.lrs.items()) if isinstance(ft.lrs, dict) else str(ft.lrs)
    own = [f"{v.name} {v.lrs}" for v in study.variants if v.lrs is not None]
    if own:
        lrs += " (" + ", ".join(own) + ")"
    settings = ", ".join(f"{k}={v}" for k, v in ft.settings.items() if k not in ("progress", "save_model"))
    out.append(f"fine-tuning: tasks {', '.join(ft.tasks)}; learning rates {lrs}; seeds {ft.seeds}; "
               f"preset {ft.preset or '-'}; {settings}")
    return out


def _plots(folder: Path, study, pre, rows, majority) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "\n(matplotlib is not installed: no plots)\n"
    out = ["## Plots", ""]
    curves = {k: v["curve"] for k, v in pre.items() if v.get("curve")}
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, curve in curves.items():
            ax.plot([c[0] for c in curve], [c[2] for c in curve], marker="o", ms=3, label=name,
                    lw=2.5 if name == study.reference else 1.2)
        ax.set_xlabel("step")
        ax.set_ylabel("validation masked-LM loss")
        ax.set_title(f"{study.name} ({study.scale}): pretraining")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(folder / "pretraining_val_loss.png", dpi=120)
        plt.close(fig)
        out.append("![validation loss](pretraining_val_loss.png)")
    if rows:
        tasks = list(dict.fromkeys(r["task"] for r in rows))
        variants = [v.name for v in study.variants if any(r["model"] == v.name for r in rows)]
        cell = {(r["model"], r["task"]): r for r in rows}
        fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.8), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            vals = [cell[(v, task)]["score"] if (v, task) in cell else None for v in variants]
            xs = range(len(variants))
            med = [100 * s["median"] if s else 0 for s in vals]
            err = [[100 * (s["median"] - s["min"]) if s else 0 for s in vals],
                   [100 * (s["max"] - s["median"]) if s else 0 for s in vals]]
            ax.bar(xs, med, yerr=err, capsize=3, color=["C1" if v == study.reference else "C0" for v in variants])
            if task in majority:
                ax.axhline(100 * majority[task], color="k", ls="--", lw=1, label="majority")
                ax.legend(fontsize=7)
            ax.set_xticks(list(xs))
            ax.set_xticklabels(variants, rotation=60, ha="right", fontsize=7)
            metric = next(r["main_metric"] for r in rows if r["task"] == task)
            ax.set_title(f"{task}\n({metric}, %)", fontsize=9)
        fig.tight_layout()
        fig.savefig(folder / "task_scores.png", dpi=120)
        plt.close(fig)
        out.append("![task scores](task_scores.png)")
    return "\n".join(out) + "\n"


def _write_csvs(folder: Path, study, pre, rows, comparisons, claims) -> None:
    from aveyb.evaluation.report import build_tables

    with open(folder / "pretraining.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["variant", "arch", "non_embedding_params", "total_params", "tokens", "val_loss", "val_accuracy",
                    "train_time_s", "tokens_per_s"])
        for name, p in pre.items():
            params = p.get("params") or {}
            w.writerow([name, p["arch"], params.get("non_embedding"), params.get("total"), p.get("tokens"),
                        p.get("val_loss"), p.get("val_accuracy"), p.get("train_time_s"), p.get("tokens_per_s")])
    _, long_rows = build_tables(rows) if rows else ("", [])
    with open(folder / "results.csv", "w", newline="") as fh:
        fields = ["model", "task", "family", "best_lr", "metric", "median", "mean", "std", "min", "max", "n"]
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(long_rows)
    with open(folder / "comparisons.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["variant", "reference", "task", "difference", "low", "high", "result"])
        for c in comparisons:
            w.writerow([c["a"], c["b"], c["tasks"][0], c["diff"], c["low"], c["high"], c["result"]])
    with open(folder / "claims.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["claim", "verdict", "better", "worse", "tasks", "difference", "low", "high"])
        for c in claims:
            for x in c["comparisons"] or [{}]:
                w.writerow([c["claim"], c["status"], x.get("a"), x.get("b"), " ".join(c["tasks"]), x.get("diff"),
                            x.get("low"), x.get("high")])


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
