"""``aveyb bench``: throughput, latency and peak memory of Avey-B and the baselines.

Examples::

    aveyb bench                                   # the full sweep (needs a GPU)
    aveyb bench --models avey-b --impls fused,official-style --lengths 2048,32768
    aveyb bench --models avey-b --impls fused-graphs,official-style --modes inference --lengths 128,512,2048
    aveyb bench --report results/bench/v11_6157576_inference.jsonl   # tables and plots from records
  aveyb bench --device cpu --threads 16 --models avey-b,bert --impls reference,cpu-fast,int8,onnxruntime,sdpa \
      --modes inference --lengths 512,2048,8192 --batch 1 --dtype fp32     # the CPU paths

Every measurement is appended to ``--out`` (JSON lines) as soon as it is taken; a markdown table
(``.md``) and plots (``_<mode>_b<batch>.png``) are written beside it at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DESCRIPTION = """Throughput, latency and peak memory of Avey-B and the baselines.

  aveyb bench                                   # the full sweep (needs a GPU)
  aveyb bench --models avey-b --impls fused,official-style --lengths 2048,32768
  aveyb bench --models avey-b --impls fused-graphs,official-style --modes inference --lengths 128,512,2048
  aveyb bench --report results/bench/v11_6157576_inference.jsonl   # tables and plots from records
  aveyb bench --device cpu --threads 16 --models avey-b,bert --impls reference,cpu-fast,int8,onnxruntime,sdpa \
      --modes inference --lengths 512,2048,8192 --batch 1 --dtype fp32     # the CPU paths

Every measurement is appended to --out (JSON lines) as soon as it is taken; a markdown table
(.md) and plots (_<mode>_b<batch>.png) are written beside it at the end."""

DEFAULT_MODELS = "avey-b,bert,roberta,modernbert,neobert"
DEFAULT_IMPLS = "fused,fused-graphs,reference,official-style,sdpa,flash"


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser("bench", help="throughput / latency / memory benchmark (GPU)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"comma list (default {DEFAULT_MODELS})")
    p.add_argument("--impls", default=DEFAULT_IMPLS,
                   help="comma list; Avey-B: fused, fused-graphs (inference), reference, official-style, and the "
                        "CPU inference paths cpu-fast (chunked layers, reused buffers), compiled (torch.compile, frozen weights), int8 (dynamic quantisation, "
                        "opt-in approximation), onnxruntime; baselines: sdpa, flash, eager")
    p.add_argument("--modes", default="inference,train", help="inference, train, ranker (Avey-B's ranker alone)")
    p.add_argument("--lengths", default="128,512,2048,8192,32768,65536,98304,131072", help="inference lengths")
    p.add_argument("--batch", type=int, default=8, help="inference batch (default 8)")
    p.add_argument("--train-lengths", default="512,2048", help="comma list of training-step lengths (default 512,2048)")
    p.add_argument("--train-batch", type=int, default=16, help="batch of the training-step mode (default 16)")
    p.add_argument("--baseline-max-len", type=int, default=32768,
                   help="longest input given to the quadratic-attention baselines (default 32768)")
    p.add_argument("--reference-max-len", type=int, default=32768,
                   help="longest input given to the plain-PyTorch Avey-B reference and its CPU paths (default 32768)")
    p.add_argument("--sparse-prediction", action="store_true",
                   help="train mode: our Avey-B heads compute logits only at labelled positions (same loss; "
                        "our pretraining recipe); official-style and the baselines stay dense")
    p.add_argument("--preset", default="base", help="size preset of every model (default base)")
    p.add_argument("--vocab-size", type=int, default=50368, help="vocabulary of every model (default 50368)")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"), help="weights and activations")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before timing (default 2)")
    p.add_argument("--repeats", type=int, default=10, help="timed calls at most (default 10)")
    p.add_argument("--min-time", type=float, default=1.0, help="keep timing until this many seconds (or --repeats)")
    p.add_argument("--time-budget", type=float, default=None, help="skip measurements after this many seconds")
    p.add_argument("--device", default=None, help="torch device (default: cuda)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (torch.set_num_threads; default: torch's, i.e. OMP_NUM_THREADS or the cores)")
    p.add_argument("--out", default=None,
                   help="JSON-lines file the records are appended to; the .md table and plots go beside it "
                        "(default runs/bench/bench.jsonl; with --report FILE, beside FILE)")
    p.add_argument("--report", nargs="*", default=None, metavar="JSONL",
                   help="only write the table and plots of these record files")
    p.set_defaults(func=run)


def _plan(args) -> list[tuple[str, str, str, int, list[int]]]:
    from aveyb.bench.runner import AVEY_IMPLS, BASELINE_IMPLS, CPU_IMPLS

    plan = []
    impls = _names(args.impls)
    for mode in _names(args.modes):
        lengths = _ints(args.train_lengths) if mode == "train" else _ints(args.lengths)
        batch = args.train_batch if mode == "train" else args.batch
        for model in _names(args.models):
            allowed = AVEY_IMPLS if model == "avey-b" else BASELINE_IMPLS
            if mode == "ranker" and model != "avey-b":
                continue
            for impl in impls:
                inference_only = impl == "fused-graphs" or impl in CPU_IMPLS
                if impl not in allowed or (inference_only and mode != "inference"):
                    continue
                cap = None
                if model != "avey-b":
                    cap = args.baseline_max_len
                elif impl == "reference" or impl in CPU_IMPLS:
                    cap = args.reference_max_len
                todo = [n for n in lengths if cap is None or n <= cap]
                if todo:
                    plan.append((model, impl, mode, batch, todo))
    return plan


def _write_report(records: list[dict], out: Path) -> None:
    from aveyb.bench.report import markdown_table, plot

    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(markdown_table(records) + "\n")
    try:
        plot(records, out)
    except ImportError as err:  # matplotlib is optional (the eval extra)
        print(f"no plots: {err}", file=sys.stderr)


def run(args) -> int:
    import torch

    from aveyb.bench.report import load_records, markdown_table
    from aveyb.bench.runner import Bench, format_rate

    out = Path(args.out or (args.report[0] if args.report else "runs/bench/bench.jsonl"))
    if args.report is not None:
        records = load_records(args.report or [out])
        _write_report(records, out)
        print(markdown_table(records))
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    if args.threads is not None:
        if args.threads < 1:
            print(f"aveyb bench: error: --threads must be at least 1, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    bench = Bench(preset=args.preset, vocab_size=args.vocab_size, device=args.device, warmup=args.warmup,
                  repeats=args.repeats, min_time=args.min_time, dtype=dtype, sparse_prediction=args.sparse_prediction)
    deadline = time.monotonic() + args.time_budget if args.time_budget else None
    command = "aveyb bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "aveyb bench"
    records, failed = [], False
    with out.open("a") as sink:
        for model, impl, mode, batch, lengths in _plan(args):
            for rec in bench.run(model, impl, mode, batch, lengths, deadline):
                row = rec.as_dict()
                row["command"] = command
                records.append(row)
                sink.write(json.dumps(row) + "\n")
                sink.flush()
                failed |= rec.status == "error"
                print(f"{model:10s} {impl:15s} {mode:9s} b={batch:<3d} T={rec.seq_len:<7d} {rec.status:7s} "
                      f"{format_rate(rec.tokens_per_s):>9s} tok/s  "
                      f"{(rec.latency_ms or float('nan')):9.2f} ms  {(rec.peak_mem_gb or float('nan')):6.2f} GB "
                      f"{rec.note[:80]}", flush=True)
    _write_report(load_records([out]), out)
    print(markdown_table(records))
    return 1 if failed else 0
