"""Markdown tables and plots from ``results/bench/*.jsonl`` records."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

# Numbers quoted for the authors' implementation and ModernBERT on one H100 (bf16, batch 8,
# inference, tokens/s; batch 16 for training), measured with the authors' code, not here. Used
# only to print ratios beside our own numbers.
QUOTED = {
    ("official", "inference", 2048): 0.92e6, ("official", "inference", 8192): 0.94e6,
    ("official", "inference", 32768): 0.69e6, ("official", "inference", 65536): 0.48e6,
    ("official", "inference", 98304): 0.38e6,
    ("modernbert-sdpa-compiled", "inference", 2048): 0.73e6,
    ("modernbert-sdpa-compiled", "inference", 8192): 0.30e6,
    ("modernbert-sdpa-compiled", "inference", 32768): 0.084e6,
    ("bert-sdpa", "inference", 2048): 1.24e6,
    ("official", "train", 2048): 292e3, ("official", "train", 512): 204e3,
}


def load_records(paths) -> list[dict]:
    records = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


def _cell(rec: dict | None) -> str:
    if rec is None:
        return ""
    if rec.get("status", "ok") != "ok":
        return rec["status"].upper()
    tps, mem = rec["tokens_per_s"], rec.get("peak_mem_gb")
    rate = f"{tps / 1e6:.3f}M" if tps >= 1e4 else f"{tps / 1e3:.2f}K"  # CPU rows: thousands
    memory = f"{mem:.1f} GB" if isinstance(mem, (int, float)) and mem == mem else "-"  # NaN on a CPU
    return f"{rate} / {rec['latency_ms']:.1f} ms / {memory}"


def markdown_table(records: list[dict]) -> str:
    """One table per (mode, batch): rows = model/impl, columns = length; cells = tok/s / latency / peak."""
    out = []
    groups = defaultdict(list)
    for rec in records:
        groups[(rec["mode"], rec["batch"])].append(rec)
    for (mode, batch), recs in sorted(groups.items()):
        lengths = sorted({r["seq_len"] for r in recs})
        rows = sorted({(r["model"], r["impl"]) for r in recs}, key=lambda x: (x[0] != "avey-b", x))
        latest = {(r["model"], r["impl"], r["seq_len"]): r for r in recs}
        gpu = sorted({r.get("gpu", "") for r in recs})
        commits = sorted({r.get("commit", "") for r in recs})
        out.append(f"### {mode}, batch {batch} ({', '.join(gpu)}; commit {', '.join(commits)})\n")
        out.append("tokens/s / median latency / peak memory\n")
        out.append("| model | impl | " + " | ".join(str(n) for n in lengths) + " |")
        out.append("|---|---|" + "---|" * len(lengths))
        for model, impl in rows:
            cells = [_cell(latest.get((model, impl, n))) for n in lengths]
            out.append(f"| {model} | {impl} | " + " | ".join(cells) + " |")
        out.append("")
        on_cpu = all(g.startswith("cpu") for g in gpu)
        for numerator in FUSED_IMPLS + (CPU_RATIO_IMPLS if on_cpu else ()):
            ratio_rows = _ratios(latest, lengths, mode, numerator, quoted=not on_cpu)
            if ratio_rows:
                label = "fused Avey-B" if numerator == "fused" else f"Avey-B {numerator}"
                out.append(f"Ratios ({label} throughput over …)\n")
                out.append("| over | " + " | ".join(str(n) for n in lengths) + " |")
                out.append("|---|" + "---|" * len(lengths))
                out.extend(ratio_rows)
                out.append("")
    return "\n".join(out)


# Each fused implementation present gets its own ratio table (eager kernels; CUDA-graph replay),
# and in CPU records so does each CPU path of Avey-B (aveyb.bench.runner.CPU_IMPLS) and its reference.
FUSED_IMPLS = ("fused", "fused-graphs")
CPU_RATIO_IMPLS = ("reference", "cpu-fast", "compiled", "onnxruntime", "int8")


def _ratios(latest: dict, lengths: list[int], mode: str, numerator: str = "fused", quoted: bool = True) -> list[str]:
    def tps(model, impl, n):
        rec = latest.get((model, impl, n))
        return rec["tokens_per_s"] if rec and rec.get("status", "ok") == "ok" else None

    rows = []

    def add_row(label, denominator):  # denominator: length -> tokens/s or None
        pairs = [(tps("avey-b", numerator, n), denominator(n)) for n in lengths]
        if any(a and b for a, b in pairs):
            cells = [f"{a / b:.2f}×" if a and b else "" for a, b in pairs]
            rows.append(f"| {label} | " + " | ".join(cells) + " |")

    others = sorted({(m, i) for (m, i, _) in latest if (m, i) != ("avey-b", numerator)})
    for model, impl in others:
        add_row(f"{model} {impl} (measured)", lambda n, model=model, impl=impl: tps(model, impl, n))
    for name in ("official", "modernbert-sdpa-compiled", "bert-sdpa") if quoted else ():  # GPU figures
        add_row(f"{name} (quoted numbers)", lambda n, name=name: QUOTED.get((name, mode, n)))
    return rows


def plot(records: list[dict], path) -> list[str]:
    """Throughput and peak memory against length, one figure per (mode, batch). Returns files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    groups = defaultdict(list)
    for rec in records:
        if rec.get("status", "ok") == "ok" and rec["mode"] in ("inference", "train"):
            groups[(rec["mode"], rec["batch"])].append(rec)
    for (mode, batch), recs in sorted(groups.items()):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        for key in sorted({(r["model"], r["impl"]) for r in recs}):
            pts = sorted((r["seq_len"], r["tokens_per_s"], r["peak_mem_gb"]) for r in recs
                         if (r["model"], r["impl"]) == key)
            xs = [p[0] for p in pts]
            ax1.plot(xs, [p[1] / 1e6 for p in pts], marker="o", label=f"{key[0]} {key[1]}")
            ax2.plot(xs, [p[2] for p in pts], marker="o", label=f"{key[0]} {key[1]}")
        for ax, label in ((ax1, "tokens/s (millions)"), (ax2, "peak memory (GB)")):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("sequence length")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
        ax1.legend(fontsize=7)
        gpu = recs[0].get("gpu", "")
        fig.suptitle(f"{mode}, batch {batch}, {gpu}")
        fig.tight_layout()
        target = Path(path).with_name(f"{Path(path).stem}_{mode}_b{batch}.png")
        fig.savefig(target, dpi=110)
        plt.close(fig)
        written.append(str(target))
    return written
