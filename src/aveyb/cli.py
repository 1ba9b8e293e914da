"""The ``aveyb`` command line. Thin: every stage registers its own sub-commands.

Each module listed in ``_STAGES`` exposes ``add_parsers(subparsers)``; a sub-command sets
``func`` to a callable taking the parsed namespace. Heavy imports happen inside those
callables so that ``aveyb --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

_STAGES = (
    "aveyb.data.cli",        # tokenizer train
    "aveyb.pretrain.cli",    # pretrain
    "aveyb.tasks.cli",       # finetune, sweep, report, quickstart
    "aveyb.study.cli",       # study list / show / run / report
    "aveyb.baselines.cli",   # params
    "aveyb.bench.cli",       # bench
    "aveyb.convert",         # convert
    "aveyb.export",          # export (ONNX)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aveyb", description="Avey-B: pretrain, fine-tune, evaluate, benchmark")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _STAGES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if not (err.name and name.startswith(err.name)):  # a missing dependency, not a missing stage
                raise
            continue
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
