"""``python -m aveyb.pretrain`` (what ``torchrun`` launches): the same as ``aveyb pretrain``."""

import argparse
import sys

from aveyb.pretrain.cli import add_arguments, run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m aveyb.pretrain")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
