"""Where the time of one Avey-B forward goes: ``python -m aveyb.bench.profile [--impl fused] [--length 2048]``.

Runs the encoder a few times under ``torch.profiler`` and prints the CUDA kernels sorted by their
own time; with ``--host`` it profiles the Python side instead (``cProfile``, sorted by own time),
which is what bounds short inputs in eager mode. The numbers guide the kernel work recorded in
``docs/kernels.md``.
"""

from __future__ import annotations

import argparse

import torch


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--impl", default="fused")
    p.add_argument("--length", type=int, default=2048)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--mode", default="inference", choices=("inference", "train"))
    p.add_argument("--rows", type=int, default=18)
    p.add_argument("--sparse-prediction", action="store_true", help="train: logits only at labelled positions")
    p.add_argument("--host", action="store_true", help="profile the Python side (cProfile) instead of the kernels")
    args = p.parse_args(argv)
    from aveyb.bench.runner import Bench, Measurement

    bench = Bench(repeats=1, warmup=2, sparse_prediction=args.sparse_prediction)
    module, opt, _ = bench.build("avey-b", args.impl, args.mode, args.length)
    rec = Measurement("avey-b", args.impl, args.mode, args.batch, args.length)
    fn = bench._step(rec, module, opt)
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    if args.host:
        import cProfile
        import pstats

        calls = 20
        with cProfile.Profile() as prof:
            for _ in range(calls):
                fn()
            torch.cuda.synchronize()
        print(f"== host side of {args.impl} {args.mode} batch {args.batch} length {args.length}: per {calls} calls")
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.rows)
        return
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
    print(f"== {args.impl} {args.mode} batch {args.batch} length {args.length}: per 3 calls")
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=args.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
