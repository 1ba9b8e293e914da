"""``aveyb pretrain``: masked-LM pretraining from a YAML config or preset (``tiny``, ``mini``, ``base``).

Single process: ``aveyb pretrain --config tiny --output-dir runs/tiny``.
Several GPUs: ``torchrun --nproc-per-node 8 -m aveyb.pretrain --config base --output-dir runs/base``.
"""


from __future__ import annotations

import argparse
import sys

DESCRIPTION = """Masked-LM pretraining from a YAML config or a preset (tiny, mini, base).

  one process:   aveyb pretrain --config tiny --output-dir runs/tiny
  several GPUs:  torchrun --nproc-per-node 8 -m aveyb.pretrain --config base --output-dir runs/base
  after a crash: aveyb pretrain --config tiny --output-dir runs/tiny --resume

A new run needs an --output-dir without checkpoints; --resume needs one with a checkpoint.
Exit status: 0 done, 2 usage or configuration error (nothing trained), 3 training failed (e.g. a NaN loss),
128 + N stopped by signal N after writing a checkpoint."""


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser("pretrain", help="pretrain a masked-LM model (Avey-B or a baseline)",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="YAML file or preset name (tiny, mini, base)")
    parser.add_argument("--output-dir", required=True, help="run directory: metrics, checkpoints, final model")
    parser.add_argument("--max-steps", type=int, default=None, help="override max_steps")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output-dir (an error if it has none); "
                             "without it, a new run (an error if --output-dir already has checkpoints)")
    parser.add_argument("--arch", default=None, help="architecture: avey-b, bert, roberta, modernbert, neobert, or one registered with "
                        "aveyb.architectures.register_architecture")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key (value parsed as YAML); repeatable")


def run(args) -> int:
    from aveyb.pretrain.config import PretrainConfig
    from aveyb.pretrain.loop import SetupError, TrainingError, pretrain

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
        # 2: usage or configuration (nothing ran); 3: the training itself failed
        return 3 if isinstance(err, TrainingError) and not isinstance(err, SetupError) else 2
