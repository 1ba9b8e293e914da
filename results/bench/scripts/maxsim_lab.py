"""MaxSim kernel lab: the current ``_maxsim_kernel`` against an earlier version of ranker.py (a
file path, optional) and the PyTorch reference, on the base model's shapes (S=256, d=768, bf16).

python results/bench/scripts/maxsim_lab.py OUT.json [OLD_RANKER.py]

For each length: agreement with the reference (fp32 chunked einsum) on the candidate pairs; the
times (triton.testing.do_bench, median ms) of the current kernel with pointer loads ("new") and
with TMA loads ("tma"), and of the old one if given; the achieved TFLOP/s, counting 2·S²·d per
candidate pair. Prints a table last.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import torch
import triton.testing

from aveyb.kernels import ranker as new
from aveyb.model import ranker as ref

out_path = sys.argv[1]
old = None
if len(sys.argv) > 2:
    spec = importlib.util.spec_from_file_location("old_ranker", sys.argv[2])
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)

S, D, B, EPS = 256, 768, 8, 1e-12
rows = []
for length in (2048, 8192, 32768, 98304, 131072):
    torch.manual_seed(0)
    n = length // S
    # Topic per split plus token noise, as real embeddings: selections are well separated.
    xs = (torch.randn(B, n, S, D, device="cuda") + 2 * torch.randn(B, n, 1, D, device="cuda")).bfloat16()
    pairs = n * (n - 1) // 2
    flop = B * pairs * 2 * S * S * D
    row = {"length": length, "batch": B, "pairs_per_seq": pairs}
    got = new.maxsim_scores(xs, None, EPS, "left")
    cand = torch.ones(B, n, n, dtype=torch.bool, device="cuda").tril(-1)
    if length <= 32768:
        want = ref.maxsim_scores(xs[:2], torch.ones(2, n, S, dtype=torch.bool, device="cuda"), EPS)
        c2 = cand[:2]
        row["max_rel_err_vs_ref"] = float(((got[:2] - want).abs()[c2] / want.abs()[c2].clamp_min(1)).max())
        row["top3_agree_vs_ref"] = float((got[:2].masked_fill(~c2, -float("inf")).topk(min(3, n - 1), -1).indices[:, 1:]
                                          == want.masked_fill(~c2, -float("inf")).topk(min(3, n - 1), -1).indices[:, 1:])
                                         .float().mean())
    row["noncandidates_neg_inf"] = bool((got[~cand] == float("-inf")).all())
    ms_new = triton.testing.do_bench(lambda x=xs: new.maxsim_scores(x, None, EPS, "left", tma=False), warmup=50,
                                     rep=300)
    row["new_ms"] = ms_new
    row["new_tflops"] = flop / ms_new / 1e9
    row["new_config"] = str(new._maxsim_kernel.best_config)
    if hasattr(new, "_maxsim_tma_kernel"):
        got_tma = new.maxsim_scores(xs, None, EPS, "left", tma=True)
        row["tma_max_abs_diff_vs_pointer"] = float((got_tma - new.maxsim_scores(xs, None, EPS, "left", tma=False))
                                                   .abs()[cand].max())
        row["tma_noncandidates_neg_inf"] = bool((got_tma[~cand] == float("-inf")).all())
        ms_tma = triton.testing.do_bench(lambda x=xs: new.maxsim_scores(x, None, EPS, "left", tma=True), warmup=50,
                                         rep=300)
        row["tma_ms"] = ms_tma
        row["tma_tflops"] = flop / ms_tma / 1e9
        row["tma_config"] = str(new._maxsim_tma_kernel.best_config)
    if old is not None:
        got_old = old.maxsim_scores(xs, None, EPS, "left")
        row["max_abs_diff_vs_old"] = float((got - got_old).abs()[cand].max())
        ms_old = triton.testing.do_bench(lambda x=xs: old.maxsim_scores(x, None, EPS, "left"), warmup=50, rep=300)
        row["old_ms"] = ms_old
        row["old_tflops"] = flop / ms_old / 1e9
        row["speedup"] = ms_old / ms_new
    rows.append(row)
    print(json.dumps(row), flush=True)
    del xs, got
    torch.cuda.empty_cache()

with open(out_path, "w") as fh:
    json.dump({"gpu": torch.cuda.get_device_name(), "rows": rows}, fh, indent=1)
nan = float("nan")
print(f"{'length':>8} {'old ms':>9} {'new ms':>9} {'tma ms':>9} {'old TF/s':>9} {'new TF/s':>9} {'tma TF/s':>9}")
for r in rows:
    print(f"{r['length']:>8} {r.get('old_ms', nan):>9.2f} {r['new_ms']:>9.2f} {r.get('tma_ms', nan):>9.2f} "
          f"{r.get('old_tflops', nan):>9.0f} {r['new_tflops']:>9.0f} {r.get('tma_tflops', nan):>9.0f}")
