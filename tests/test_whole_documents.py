"""Whole documents through sentence-transformers: an aveyb checkpoint encodes a 16K-token
document in one pass, with no truncation, to the mean pool of the model's full forward."""

import pytest
import torch

import aveyb
from aveyb.data.tokenizer import load_tokenizer
from aveyb.model.heads import mean_pool

pytest.importorskip("sentence_transformers")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    tokenizer = load_tokenizer("bundled:bpe-4k")
    torch.manual_seed(0)
    model = aveyb.AveyBModel(aveyb.preset_config("tiny", vocab_size=len(tokenizer))).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, model


@pytest.mark.slow
def test_a_16k_token_document_is_encoded_whole(checkpoint):
    from sentence_transformers import SentenceTransformer

    path, model = checkpoint
    st = SentenceTransformer(str(path), device="cpu")
    trained_context = model.config.max_position_embeddings
    assert st.max_seq_length == trained_context  # sentence-transformers' default: the training context
    st.max_seq_length = 1 << 20                   # Avey-B has no positional limit
    text = " ".join(f"Section {i} says that the value of item {i} is {i * 7 % 13}." for i in range(1300))
    feats = st.tokenize([text])
    n_tokens = int(feats["attention_mask"].sum())
    assert n_tokens >= 16_000 and n_tokens % model.config.split_size != 0
    embedding = st.encode([text], convert_to_tensor=True, batch_size=1)
    with torch.no_grad():
        hidden = model(input_ids=feats["input_ids"], attention_mask=feats["attention_mask"]).last_hidden_state
    assert hidden.shape[1] == n_tokens
    torch.testing.assert_close(embedding, mean_pool(hidden, feats["attention_mask"]), rtol=1e-5, atol=1e-6)
    # at the default length the document is cut, and the embedding is another one
    st.max_seq_length = trained_context
    truncated = st.encode([text], convert_to_tensor=True)
    assert not torch.allclose(truncated, embedding, atol=1e-4)
