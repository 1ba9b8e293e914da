"""How much each autotuned kernel's config moves the whole graphed forward, and whether the
autotuner's choice (timed in isolation) is the whole forward's best. Base Avey-B, bf16, batch 8,
random ids, one length (default 2,048).

1. One GraphedEncoder call autotunes as usual; every isolated autotuning time is logged.
2. For each kernel the forward autotunes and each of its configs: the kernel's config list is set to
   that config alone (the others keep their tuned choice), a new graph is captured, and its replay
   is timed. The tuned graph is timed in every round too; rounds alternate over all graphs.

Usage on a GPU: PYTHONPATH=src python3 results/bench/scripts/e2e_config_lab.py OUT.json [LEN]
"""
import json
import statistics
import sys

import torch
from triton.runtime.autotuner import Autotuner

from aveyb.architectures import build_masked_lm
from aveyb.kernels import gemm, layers, ranker
from aveyb.kernels.graphs import GraphedEncoder
from aveyb.kernels.tuning import config_label

out_path, length = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2048
dev = torch.device("cuda")
model = build_masked_lm("avey-b", "base", 50368, kernel_backend="triton").to(dev, torch.bfloat16).eval()
ids = torch.randint(0, 50368, (8, length), generator=torch.Generator().manual_seed(0)).to(dev)
kernels = {name: getattr(mod, name) for mod in (gemm, layers, ranker) for name in dir(mod)
           if isinstance(getattr(mod, name), Autotuner)}

isolated = []  # (kernel, config, ms) for every config the autotuner timed


def logging_bench(name, kernel):
    original = kernel._bench

    def bench(*args, config, **kwargs):
        times = original(*args, config=config, **kwargs)
        isolated.append((name, config_label(config), times[0] if isinstance(times, (list, tuple)) else times))
        return times
    return bench


for name, kernel in kernels.items():
    kernel._bench = logging_bench(name, kernel)


def replay_ms(graph, n):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    graph.replay()
    torch.cuda.synchronize()
    start.record()
    for _ in range(n):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / n


def capture():
    encoder = GraphedEncoder(model)
    encoder(ids)
    (captured,) = encoder._graphs.values()
    return encoder, captured.graph


tuned_encoder, tuned_graph = capture()
used = {name: k for name, k in kernels.items() if k.cache}
chosen = {name: {str(key): config_label(cfg) for key, cfg in k.cache.items()} for name, k in used.items()}
graphs = {("tuned", "-"): (tuned_encoder, tuned_graph)}
failed = {}
for name, kernel in used.items():
    saved = kernel.configs
    for cfg in saved:
        kernel.configs = [cfg]
        try:
            graphs[(name, config_label(cfg))] = capture()
        except Exception as err:  # a config that does not fit is skipped by the autotuner too
            failed[f"{name} {config_label(cfg)}"] = f"{type(err).__name__}: {str(err)[:200]}"
        finally:
            kernel.configs = saved
    print(f"captured {name}: {len(saved)} configs", flush=True)

n = max(10, int(250_000 / length))
times = {key: [] for key in graphs}
for _ in range(3):
    for key, (_, graph) in graphs.items():
        times[key].append(replay_ms(graph, n))

tuned_ms = statistics.median(times[("tuned", "-")])
rows = []
for (name, label), ts in times.items():
    ms = statistics.median(ts)
    iso = [t for k, c, t in isolated if k == name and c == label]
    rows.append({"kernel": name, "config": label, "forward_ms": ms, "vs_tuned": ms / tuned_ms,
                 "rounds_ms": ts, "isolated_ms": iso,
                 "is_tuned_choice": name != "tuned" and label in chosen.get(name, {}).values()})
json.dump({"length": length, "batch": 8, "gpu": torch.cuda.get_device_name(), "chosen": chosen,
           "rows": rows, "failed": failed, "replays_per_round": n}, open(out_path, "w"), indent=1)

print(f"tuned forward {tuned_ms:.3f} ms ({8 * length / tuned_ms / 1e3:.3f}M tokens/s)")
for row in sorted(rows, key=lambda r: (r["kernel"], r["forward_ms"])):
    iso = ",".join(f"{t * 1e3:.1f}" for t in row["isolated_ms"])
    print(f"{row['kernel']:22s} {row['config']:70s} {row['forward_ms']:7.3f} ms {row['vs_tuned']:6.3f}"
          f"{' *' if row['is_tuned_choice'] else '  '} isolated us: {iso}")
for key, err in failed.items():
    print("failed", key, err)
