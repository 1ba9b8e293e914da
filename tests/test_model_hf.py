"""Hugging Face integration: Auto classes, safetensors round trip, remote code, sentence-transformers."""

import json
import subprocess
import sys

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PreTrainedTokenizerFast,
)

import aveyb
from aveyb.config import AveyBConfig

AUTO = [AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification,
        AutoModelForTokenClassification, AutoModelForQuestionAnswering]


def tiny_config():
    return AveyBConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, split_size=4, num_retrieved_splits=1, num_labels=3)


def tiny_tokenizer(words):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[MASK]", "[EOS]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   mask_token="[MASK]", eos_token="[EOS]")


@pytest.mark.parametrize("auto_class", AUTO)
def test_auto_classes_round_trip_through_safetensors(auto_class, tmp_path):
    torch.manual_seed(0)
    model = auto_class.from_config(tiny_config()).eval()
    assert type(model).__module__.startswith("aveyb.")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "aveyb"
    assert isinstance(AutoConfig.from_pretrained(tmp_path), AveyBConfig)
    loaded = auto_class.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        want, got = model(ids), loaded(ids)
    key = "last_hidden_state" if auto_class is AutoModel else ("start_logits" if auto_class is
                                                                AutoModelForQuestionAnswering else "logits")
    torch.testing.assert_close(getattr(got, key), getattr(want, key))


def test_head_loads_encoder_weights_of_a_masked_lm(tmp_path):
    mlm = AutoModelForMaskedLM.from_config(tiny_config())
    mlm.save_pretrained(tmp_path)
    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=4)
    torch.testing.assert_close(clf.model.embed.weight, mlm.model.embed.weight)
    assert clf.classifier.out_features == 4


@pytest.mark.slow
def test_checkpoint_loads_with_remote_code_where_aveyb_is_not_installed(tmp_path):
    torch.manual_seed(0)
    model = aveyb.AveyBForMaskedLM(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "modeling_aveyb.py").exists() and (tmp_path / "ranker.py").exists()
    ids = torch.randint(0, 64, (1, 11))
    torch.save({"ids": ids, "logits": model(ids).logits.detach()}, tmp_path / "expected.pt")
    script = f"""
import sys
sys.modules['aveyb'] = None  # aveyb is not importable in this process
import torch
from transformers import AutoModelForMaskedLM
model = AutoModelForMaskedLM.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()
assert not type(model).__module__.startswith('aveyb'), type(model).__module__
data = torch.load({str(tmp_path / 'expected.pt')!r})
torch.testing.assert_close(model(data['ids']).logits, data['logits'])
print('REMOTE_OK', type(model).__module__)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"),
                                 "PATH": "/usr/bin:/bin"})
    assert "REMOTE_OK" in result.stdout, result.stderr[-3000:]


def test_sentence_transformers_encodes_with_mean_pooling(tmp_path):
    from sentence_transformers import SentenceTransformer, models

    words = "the cat sat on a mat dog ran far away".split()
    tok = tiny_tokenizer(words)
    config = tiny_config()
    config.vocab_size = 64
    aveyb.AveyBModel(config).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    encoder = models.Transformer(str(tmp_path), max_seq_length=32)
    st = SentenceTransformer(modules=[encoder, models.Pooling(config.hidden_size, pooling_mode="mean")], device="cpu")
    texts = ["the cat sat on a mat", "dog ran", "a dog ran far far away"]
    embeddings = st.encode(texts, convert_to_tensor=True, batch_size=3)
    assert embeddings.shape == (3, config.hidden_size)
    # Same as our own mean pooling of the encoder, text by text (padding must not matter).
    base = aveyb.AveyBModel.from_pretrained(tmp_path).eval()
    for text, emb in zip(texts, embeddings):
        ids = tok(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            want = base(ids).last_hidden_state.mean(dim=1)[0]
        torch.testing.assert_close(emb, want, rtol=1e-5, atol=1e-5)
