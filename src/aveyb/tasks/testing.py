"""Tiny random checkpoints for tests and smoke runs: any ``save_pretrained`` folder works with
the fine-tuning harness, these just cost nothing to build."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from aveyb.tasks.niah import HAYSTACK_WORDS

_BASE_TEXT = (
    "the quick brown fox jumps over the lazy dog . what is the first special word in this passage ? "
    "who when where why how many which question answer movie film good bad great awful spam ham free win "
    "call now text reply stop 0 1 2 3 4 5 6 7 8 9 a b c d e f g h i j k l m n o p q r s t u v w x y z "
    "query document news president city state john paris london ! , ; : ' \" ( ) - @ # placeholder"
)


def train_wordpiece(texts: Iterable[str], vocab_size: int = 600):
    """A BertTokenizerFast with a WordPiece vocabulary trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    tok.train_from_iterator(list(texts) + [_BASE_TEXT, " ".join(HAYSTACK_WORDS)], trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)


def make_tiny_bert(path: str | Path, texts: Iterable[str] = (), hidden_size: int = 32, layers: int = 2,
                   max_position_embeddings: int = 128, seed: int = 0) -> Path:
    """Save a random tiny BERT masked LM + tokenizer to ``path`` and return it."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    path = Path(path)
    tok = train_wordpiece(texts)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=2 * hidden_size, max_position_embeddings=max_position_embeddings,
                     pad_token_id=tok.pad_token_id)
    BertForMaskedLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def fixture_loader(root: str | Path):
    """A ``load_split(path, name, split)`` reading Hub-format fixtures saved as
    ``root/<path>/<name or _>/<split>.jsonl`` + ``features.json`` (``datasets.Features``)."""
    import json

    def load(path: str, name: str | None, split: str):
        import datasets

        from aveyb.tasks.data import read_jsonl

        folder = Path(root) / path / (name or "_")
        features = datasets.Features.from_dict(json.loads((folder / "features.json").read_text()))
        return datasets.Dataset.from_list(read_jsonl(folder / f"{split}.jsonl"), features=features)

    return load
