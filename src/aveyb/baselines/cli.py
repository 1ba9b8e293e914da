"""``aveyb params``: parameter counts of all five architectures at one size preset."""

from __future__ import annotations


def _params(args) -> int:
    import json

    from aveyb.baselines.params import format_table, parameter_table

    table = parameter_table(args.preset, vocab_size=args.vocab_size)
    print(json.dumps(table, indent=2) if args.json else format_table(table))
    return 0


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser(
        "params", help="total / embedding / non-embedding parameters of Avey-B and the four baselines"
    )
    parser.add_argument("--preset", required=True, choices=("tiny", "micro", "mini", "base"),
                        help="size preset shared by the five architectures")
    parser.add_argument("--vocab-size", type=int, default=50368, help="vocabulary size for every model (default 50368)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=_params)
