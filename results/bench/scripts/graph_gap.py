"""Where the graphed forward loses time against its kernels, and what programmatic dependent launch
(AVEYB_PDL=1) recovers. Base Avey-B, bf16, batch 8, random ids.

For each length and for PDL off/on (one captured GraphedEncoder each, measured alternately):
* ``call``: the user-facing call (eager validation with its one sync, input copy, replay, output copy);
* ``replay``: back-to-back graph replays only;
* ``kernels``: the summed GPU time of the kernels of one forward (torch.profiler, PDL off).

Usage on a GPU: PYTHONPATH=src python3 results/bench/scripts/graph_gap.py [LEN ...]  (JSON to $OUT/graph_gap.json)
"""
import json
import os
import sys

import torch

from aveyb.architectures import build_masked_lm
from aveyb.kernels.graphs import GraphedEncoder

dev = torch.device("cuda")
lengths = [int(v) for v in sys.argv[1:]] or [512, 2048]
model = build_masked_lm("avey-b", "base", 50368, kernel_backend="triton").to(dev, torch.bfloat16).eval()
gen = torch.Generator().manual_seed(0)
rows = []


def timed(fn, n):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    fn()
    torch.cuda.synchronize()
    start.record()
    for _ in range(n):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / n


for length in lengths:
    ids = torch.randint(0, 50368, (8, length), generator=gen).to(dev)
    n = max(10, int(200_000 / length))
    encoders = {}
    for pdl in ("0", "1"):
        os.environ["AVEYB_PDL"] = pdl
        enc = GraphedEncoder(model)
        enc(ids)
        encoders[pdl] = enc
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        os.environ["AVEYB_PDL"] = "0"
        with torch.no_grad():
            model.model(input_ids=ids)
        torch.cuda.synchronize()
    kernel_ms = sum(e.device_time_total for e in prof.key_averages()
                    if e.device_type == torch.autograd.DeviceType.CUDA) / 1e3
    res = {"0": {"call": [], "replay": []}, "1": {"call": [], "replay": []}}
    for _ in range(3):
        for pdl, enc in encoders.items():
            (captured,) = enc._graphs.values()
            res[pdl]["call"].append(timed(lambda enc=enc: enc(ids), n))
            res[pdl]["replay"].append(timed(captured.graph.replay, n))
    out0 = encoders["0"](ids)
    out1 = encoders["1"](ids)
    diff = float((out0.float() - out1.float()).abs().max())
    for pdl in ("0", "1"):
        row = {"length": length, "pdl": int(pdl), "kernels_ms": kernel_ms, "max_abs_diff_pdl": diff,
               "call_ms": min(res[pdl]["call"]), "replay_ms": min(res[pdl]["replay"]),
               "call_all": res[pdl]["call"], "replay_all": res[pdl]["replay"]}
        row["tokens_per_s_call"] = 8 * length / row["call_ms"] * 1e3
        rows.append(row)
        print(json.dumps(row), flush=True)

print(f"\n{'len':>6} {'pdl':>3} {'kernels ms':>10} {'replay ms':>10} {'call ms':>9} {'tok/s (call)':>13}")
for r in rows:
    print(f"{r['length']:>6} {r['pdl']:>3} {r['kernels_ms']:>10.3f} {r['replay_ms']:>10.3f} {r['call_ms']:>9.3f} "
          f"{r['tokens_per_s_call'] / 1e6:>12.3f}M")
json.dump({"gpu": torch.cuda.get_device_name(), "commit": os.environ.get("AVEYB_COMMIT"), "rows": rows},
          open(os.environ.get("OUT", "/tmp") + "/graph_gap.json", "w"), indent=1)
