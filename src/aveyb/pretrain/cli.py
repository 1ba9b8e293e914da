"""``aveyb pretrain``: masked-LM pretraining from a YAML config or preset (``tiny``, ``mini``, ``base``).

Single process: ``aveyb pretrain --config tiny --output-dir runs/tiny``.
Several GPUs: ``torchrun --nproc-per-node 8 -m aveyb.pretrain --config base --output-dir runs/base``.
"""

from __future__ import annotations

import sys


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser("pretrain", help="pretrain a masked-LM model (Avey-B or a baseline)",
                                   description=__doc__)
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="YAML file or preset name (tiny, mini, base)")
    parser.add_argument("--output-dir", required=True, help="run directory: metrics, checkpoints, final model")
    parser.add_argument("--max-steps", type=int, default=None, help="override max_steps")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output-dir")
    parser.add_argument("--arch", default=None, help="architecture: avey-b, bert, roberta, modernbert, neobert")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key (value parsed as YAML); repeatable")


def run(args) -> int:
    from aveyb.pretrain.config import PretrainConfig
    from aveyb.pretrain.loop import TrainingError, pretrain

    overrides = list(args.overrides)
    if args.max_steps is not None:
        overrides.append(f"max_steps={args.max_steps}")
    if args.arch is not None:
        overrides.append(f"arch={args.arch}")
    try:
        cfg = PretrainConfig.load(args.config, overrides)
        return pretrain(cfg, args.output_dir, resume=args.resume)
    except (TrainingError, ValueError, FileNotFoundError) as err:
        print(f"aveyb pretrain: error: {err}", file=sys.stderr)
        return 2 if not isinstance(err, TrainingError) else 3
