"""Compare per-step losses of runs against a reference run: python compare_losses.py OUT.json REF=DIR NAME=DIR ..."""

import json
import statistics
import sys
from pathlib import Path


def load(run: Path) -> dict:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["step"]: r for r in records if "loss" in r}


def main() -> None:
    out = Path(sys.argv[1])
    pairs = [arg.split("=", 1) for arg in sys.argv[2:]]
    ref_name, ref_dir = pairs[0]
    ref = load(Path(ref_dir))
    rows = {}
    for name, d in pairs:
        run = load(Path(d))
        common = sorted(set(run) & set(ref))
        diffs = [abs(run[s]["loss"] - ref[s]["loss"]) / abs(ref[s]["loss"]) for s in common]
        tps = [run[s]["tokens_per_s"] for s in sorted(run)[2:]]
        rows[name] = {"steps": len(run), "compared_steps": len(common),
                      "max_rel_loss_diff": max(diffs) if diffs else None,
                      "last_loss": run[max(run)]["loss"] if run else None,
                      "tokens_per_s_median": statistics.median(tps) if tps else None,
                      "losses": [[s, run[s]["loss"]] for s in sorted(run)]}
    out.write_text(json.dumps({"reference": ref_name, "runs": rows}, indent=1))
    print(f"reference: {ref_name}")
    print(f"{'run':<22}{'steps':>6}{'max rel diff':>14}{'last loss':>11}{'tok/s':>12}")
    for name, r in rows.items():
        diff = f"{r['max_rel_loss_diff']:.2e}" if r["max_rel_loss_diff"] is not None else "-"
        last = f"{r['last_loss']:.5f}" if r["last_loss"] is not None else "-"
        tps = f"{r['tokens_per_s_median']:,.0f}" if r["tokens_per_s_median"] else "-"
        print(f"{name:<22}{r['steps']:>6}{diff:>14}{last:>11}{tps:>12}")


if __name__ == "__main__":
    main()
