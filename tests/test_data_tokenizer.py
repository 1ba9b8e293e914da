"""Tokenizer: byte-level BPE training, special tokens, round trip, vocabulary rounding."""

from pathlib import Path

import pytest

from aveyb.data.tokenizer import (
    load_tokenizer,
    model_vocab_size,
    round_up,
    special_token_ids,
    train_bpe_tokenizer,
)

TEXTS = ["Call me Ishmael. Some years ago - never mind how long precisely -",
         "In the beginning God created the heaven and the earth.", "   ", "",
         "To be, or not to be, that is the question: café, naïve, 東京, emoji 🙂."] * 20
GPT2_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "tokenizers" / "gpt2-bpe"


def test_train_round_trip_and_specials(tmp_path):
    tok = train_bpe_tokenizer(TEXTS, vocab_size=400, min_frequency=1)
    for text in [t for t in TEXTS if t.strip()] + ["unseen wörds ∑ and bytes \x00\x7f"]:
        assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text
    assert {tok.pad_token, tok.eos_token, tok.mask_token} == {"<pad>", "</s>", "<mask>"}
    assert set(special_token_ids(tok)) == {tok.pad_token_id, tok.eos_token_id, tok.mask_token_id}
    assert tok(" <mask>", add_special_tokens=False).input_ids == [tok.mask_token_id]  # lstrip, like RoBERTa
    tok.save_pretrained(tmp_path / "tok")
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert again("In the beginning").input_ids == tok("In the beginning").input_ids
    assert again.mask_token_id == tok.mask_token_id


def test_vocab_rounding():
    assert round_up(50259) == 50304 and round_up(64) == 64 and round_up(65) == 128
    tok = load_tokenizer("bundled:bpe-4k")
    assert model_vocab_size(tok) % 64 == 0 and model_vocab_size(tok) >= len(tok)


def test_bundled_tokenizer_and_errors():
    tok = load_tokenizer("bundled:bpe-4k")
    assert len(tok) == 4096 and tok.mask_token_id is not None and tok.eos_token_id is not None
    with pytest.raises(FileNotFoundError):
        load_tokenizer("bundled:nope")
    with pytest.raises(FileNotFoundError):
        load_tokenizer("gpt2-bpe:/nonexistent/dir")
    with pytest.raises(FileNotFoundError, match="neither a local"):
        load_tokenizer("/nonexistent/tokenizer-dir")


@pytest.mark.skipif(not GPT2_DIR.is_dir(), reason="offline GPT-2 BPE files not present")
def test_gpt2_bpe_offline():
    tok = load_tokenizer(f"gpt2-bpe:{GPT2_DIR}")
    assert len(tok) == 50259 and model_vocab_size(tok) == 50304
    ids = tok("Hello world", add_special_tokens=False).input_ids
    assert ids == [15496, 995] and tok.decode(ids) == "Hello world"
    assert tok.eos_token == "<|endoftext|>"


def test_cli_train(tmp_path):
    from aveyb.cli import main

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(t for t in TEXTS if t.strip()))
    assert main(["tokenizer", "train", "--source", "text", "--path", str(corpus), "--vocab-size", "300",
                 "--min-frequency", "1", "--output-dir", str(tmp_path / "out")]) == 0
    tok = load_tokenizer(str(tmp_path / "out"))
    assert tok.mask_token == "<mask>" and len(tok) <= 300
    out = tmp_path / "ids.bin"
    assert main(["tokenizer", "encode", "--source", "text", "--path", str(corpus), "--tokenizer",
                 str(tmp_path / "out"), "--output", str(out)]) == 0
    import numpy as np

    ids = np.fromfile(out, dtype=np.uint16)
    assert (ids == tok.eos_token_id).sum() == len([t for t in TEXTS if t.strip()])


def test_a_trained_models_tokenizer_keeps_its_vocabulary(tmp_path):
    from transformers import PreTrainedTokenizerFast

    tok = load_tokenizer("bundled:bpe-4k")
    PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token=tok.eos_token).save_pretrained(tmp_path)
    trained = load_tokenizer(str(tmp_path), extend=False)  # fine-tuning: nothing added, pads with EOS
    assert trained.pad_token == tok.eos_token and trained.mask_token is None
    assert load_tokenizer(str(tmp_path)).mask_token == "<mask>"  # pretraining: pad and mask added
