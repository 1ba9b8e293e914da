"""``aveyb tokenizer train`` and ``aveyb tokenizer encode``."""

from __future__ import annotations

import argparse


def add_parsers(subparsers) -> None:
    tok = subparsers.add_parser("tokenizer", help="train or apply a pretraining tokenizer")
    sub = tok.add_subparsers(dest="tokenizer_command", required=True, metavar="ACTION",
                             help="train: learn a byte-level BPE; encode: tokenise a corpus to an id file")

    train = sub.add_parser("train", help="train a byte-level BPE (tokenizers) on a corpus")
    _add_source_args(train)
    train.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary, special tokens included")
    train.add_argument("--min-frequency", type=int, default=2,
                       help="drop merges seen fewer times than this (default 2)")
    train.add_argument("--max-chars", type=int, default=None, help="train on at most this many characters")
    train.add_argument("--output-dir", required=True, help="where to save the tokenizer (save_pretrained)")
    train.set_defaults(func=_train)

    enc = sub.add_parser("encode", help="tokenise a corpus into a flat EOS-separated id file ('tokens' source)")
    _add_source_args(enc)
    enc.add_argument("--tokenizer", required=True, help="bundled:NAME, gpt2-bpe:DIR, a directory or Hub name")
    enc.add_argument("--output", required=True, help="output .bin file (uint16 if the vocabulary fits, else uint32)")
    enc.add_argument("--max-tokens", type=int, default=None, help="stop after this many tokens (default: all)")
    enc.set_defaults(func=_encode)


def _add_source_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="bundled",
                        help="bundled | corpus | jsonl | text | parquet | hf (default: bundled)")
    parser.add_argument("--path", default=None, help="file, glob or directory of the source")
    parser.add_argument("--include", default=None, help="comma-separated corpus file stems")
    parser.add_argument("--name", default=None, help="Hugging Face dataset name (source hf)")
    parser.add_argument("--hf-config", default=None, help="Hugging Face dataset config (source hf)")


def _source_spec(args) -> dict:
    spec: dict = {"type": args.source}
    if args.path:
        spec["path"] = args.path
    if args.include:
        spec["include"] = [s.strip() for s in args.include.split(",") if s.strip()]
    if args.source == "hf":
        spec["name"] = args.name
        if args.hf_config:
            spec["config"] = args.hf_config
    return spec


def _train(args) -> int:
    from aveyb.data.sources import read_texts
    from aveyb.data.tokenizer import model_vocab_size, train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(read_texts([_source_spec(args)], args.max_chars),
                                    vocab_size=args.vocab_size, min_frequency=args.min_frequency)
    tokenizer.save_pretrained(args.output_dir)
    print(f"saved a byte-level BPE of {len(tokenizer)} tokens (model vocabulary {model_vocab_size(tokenizer)}) "
          f"to {args.output_dir}")
    return 0


def _encode(args) -> int:
    import numpy as np

    from aveyb.data.sources import SourceStats, iter_documents, validate_source
    from aveyb.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    dtype = np.uint16 if len(tokenizer) <= 65535 else np.uint32
    eos = tokenizer.eos_token_id
    stats = SourceStats()
    total, batch = 0, []
    backend = tokenizer.backend_tokenizer
    with open(args.output, "wb") as out:
        def flush():
            nonlocal total
            for enc in backend.encode_batch(batch, add_special_tokens=False):
                ids = np.asarray(enc.ids + [eos], dtype=dtype)
                out.write(ids.tobytes())
                total += len(ids)
            batch.clear()

        for doc in iter_documents([validate_source(_source_spec(args))], stats):
            batch.append(doc)
            if len(batch) >= 256:
                flush()
                if args.max_tokens and total >= args.max_tokens:
                    break
        if batch and not (args.max_tokens and total >= args.max_tokens):
            flush()
    print(f"wrote {total} tokens ({np.dtype(dtype).name}) from {stats.documents} documents to {args.output}; "
          f"{stats.empty_skipped} empty skipped, {stats.undecodable} undecodable repaired")
    return 0
