"""Summarise pretraining runs' metrics.jsonl files into one JSON and a short table.

python results/pretrain/scripts/summarize.py OUT.json NAME=RUN_DIR [NAME=RUN_DIR ...]
Tokens/s: median over logged intervals, the first interval (start-up, compilation) left out.
"""

import json
import statistics
import sys
from pathlib import Path


def summarize(run_dir: Path) -> dict:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {"error": f"no {path}"}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val_loss" in r]
    steady = train[1:] if len(train) > 1 else train
    tps = [r["tokens_per_s"] for r in steady]
    mfu = [r["mfu"] for r in steady if r.get("mfu") is not None]
    return {
        "steps": train[-1]["step"] if train else 0,
        "first_loss": train[0]["loss"] if train else None,
        "last_loss": train[-1]["loss"] if train else None,
        "tokens_per_s_median": statistics.median(tps) if tps else None,
        "mfu_median": statistics.median(mfu) if mfu else None,
        "val": [{"step": r["step"], "val_loss": r["val_loss"], "val_accuracy": r["val_accuracy"]} for r in val],
        "loss_curve": [[r["step"], r["loss"]] for r in train],
    }


def main() -> None:
    out = Path(sys.argv[1])
    runs = dict(arg.split("=", 1) for arg in sys.argv[2:])
    summary = {name: summarize(Path(d)) for name, d in runs.items()}
    out.write_text(json.dumps(summary, indent=1))
    print(f"{'run':<18}{'steps':>6}{'first loss':>11}{'last loss':>10}{'tok/s (median)':>16}{'MFU':>7}")
    for name, s in summary.items():
        if "error" in s:
            print(f"{name:<18} {s['error']}")
            continue
        mfu = f"{s['mfu_median']:.3f}" if s["mfu_median"] is not None else "-"
        tps = f"{s['tokens_per_s_median']:,.0f}" if s["tokens_per_s_median"] else "-"
        print(f"{name:<18}{s['steps']:>6}{s['first_loss']:>11.3f}{s['last_loss']:>10.3f}{tps:>16}{mfu:>7}")


if __name__ == "__main__":
    main()
