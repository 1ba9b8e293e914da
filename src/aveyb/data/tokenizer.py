"""Tokenizers for pretraining: train a byte-level BPE, or load any Hugging Face tokenizer.

Every tokenizer returned here has an EOS token (document separator when packing), a pad
token and a mask token. :func:`model_vocab_size` rounds the tokenizer's length up to a
multiple of 64, the size the model's embedding gets (SPEC section 9 pads 50,281 to 50,368).

Names accepted by :func:`load_tokenizer`:

* ``bundled:NAME``: a tokenizer shipped in ``aveyb/resources/tokenizers/NAME``;
* ``gpt2-bpe:DIR``: the GPT-2 byte-level BPE from ``DIR/encoder.json`` + ``DIR/vocab.bpe``
  (works offline; ``<pad>`` and ``<mask>`` are added);
* a local directory saved with ``save_pretrained`` or a Hub name (``AutoTokenizer``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

PAD, EOS, MASK = "<pad>", "</s>", "<mask>"
RESOURCES = Path(__file__).resolve().parent.parent / "resources"


def round_up(n: int, multiple: int = 64) -> int:
    return ((n + multiple - 1) // multiple) * multiple


def model_vocab_size(tokenizer, multiple: int = 64) -> int:
    """The model's vocabulary: ``len(tokenizer)`` rounded up to a multiple of ``multiple``."""
    return round_up(len(tokenizer), multiple)


def _wrap(tok_object, *, eos: str, pad: str = PAD, mask: str = MASK, extra: dict | None = None):
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    # the mask token swallows the space before it (" <mask>" is one token), as in RoBERTa
    tok_object.add_special_tokens([AddedToken(mask, lstrip=True, rstrip=False, normalized=False, special=True)])

    return PreTrainedTokenizerFast(
        tokenizer_object=tok_object,
        eos_token=eos,
        pad_token=pad,
        mask_token=AddedToken(mask, lstrip=True, rstrip=False, normalized=False, special=True),
        model_max_length=1_000_000,
        **(extra or {}),
    )


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 8192, min_frequency: int = 2):
    """Train a byte-level BPE on ``texts`` with ``<pad>``, ``</s>`` (EOS) and ``<mask>``.

    Returns a ``PreTrainedTokenizerFast``; ``tokenizer.save_pretrained(dir)`` writes a
    standard tokenizer directory. ``vocab_size`` counts the special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[PAD, EOS, MASK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_nonempty(texts), trainer=trainer)
    return _wrap(tok, eos=EOS)


def _nonempty(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        if text and not text.isspace():
            yield text


def gpt2_bpe_tokenizer(directory: str | os.PathLike):
    """GPT-2's byte-level BPE from ``encoder.json`` and ``vocab.bpe`` (offline), plus pad and mask."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    directory = Path(directory)
    vocab, merges = directory / "encoder.json", directory / "vocab.bpe"
    for path in (vocab, merges):
        if not path.is_file():
            raise FileNotFoundError(f"GPT-2 BPE file not found: {path}")
    tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return _wrap(tok, eos="<|endoftext|>")


def load_tokenizer(name: str, *, extend: bool = True):
    """Load a tokenizer by name (see the module docstring).

    ``extend=True`` (the tokenizer of a model yet to be built: pretraining) adds whatever of EOS,
    pad and mask it lacks. ``extend=False`` (a trained model's tokenizer, whose vocabulary must not
    grow: fine-tuning, predict) adds nothing and pads with EOS, SEP or UNK when it has no pad token.
    """
    if name.startswith("bundled:"):
        path = RESOURCES / "tokenizers" / name.split(":", 1)[1]
        if not path.is_dir():
            available = sorted(p.name for p in (RESOURCES / "tokenizers").glob("*") if p.is_dir())
            raise FileNotFoundError(f"no bundled tokenizer {name!r}; available: {available}")
        name = str(path)
    if name.startswith("gpt2-bpe:"):
        return gpt2_bpe_tokenizer(name.split(":", 1)[1])
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:  # ValueError: huggingface_hub rejects the name as a repo id
        raise FileNotFoundError(f"tokenizer {name!r} is neither a local tokenizer directory nor loadable "
                                f"from the Hugging Face Hub: {err}") from err
    if extend:
        return ensure_special_tokens(tokenizer)
    if tokenizer.pad_token_id is None:
        fallback = tokenizer.eos_token or tokenizer.sep_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError(f"tokenizer {name!r} has no pad, eos, sep or unk token to pad with")
        tokenizer.pad_token = fallback
    return tokenizer


def ensure_special_tokens(tokenizer):
    """Add whatever of EOS, pad and mask the tokenizer lacks (EOS falls back to SEP)."""
    added = {}
    if tokenizer.eos_token is None:
        if tokenizer.sep_token is not None:
            added["eos_token"] = tokenizer.sep_token
        else:
            added["eos_token"] = EOS
    if tokenizer.pad_token is None:
        added["pad_token"] = PAD
    if tokenizer.mask_token is None:
        added["mask_token"] = MASK
    if added:
        tokenizer.add_special_tokens(added)
    return tokenizer


def special_token_ids(tokenizer) -> list[int]:
    """Ids never masked: every special token of the tokenizer."""
    return sorted(set(int(i) for i in tokenizer.all_special_ids))
