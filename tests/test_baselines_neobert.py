"""NeoBERT: config validation, attention parity with a naive reference, heads, registration,
and loading a checkpoint laid out like the published ``chandar-lab/NeoBERT``."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from aveyb.baselines.neobert import (
    NeoBERTConfig,
    NeoBERTForMaskedLM,
    NeoBERTForQuestionAnswering,
    NeoBERTForSequenceClassification,
    NeoBERTForTokenClassification,
    NeoBERTModel,
    register,
)
from aveyb.baselines.neobert.convert import convert_key
from aveyb.baselines.neobert.modeling_neobert import SelfAttention, rotary_angles

TINY = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=72,
            max_position_embeddings=64)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread than on two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(**overrides) -> NeoBERTConfig:
    return NeoBERTConfig(**{**TINY, **overrides})


# ---- naive references (written independently of the model code) ---------------------------


def _rotate_complex(x: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """Rotary as in the published code: adjacent pairs are complex numbers times e^{i·pos·freq}."""
    batch, length, heads, dim = x.shape
    freqs = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64)[: dim // 2] / dim)
    angles = torch.outer(torch.arange(length, dtype=torch.float64), freqs)
    rot = torch.polar(torch.ones_like(angles), angles)[None, :, None, :]
    xc = torch.view_as_complex(x.to(torch.float64).reshape(batch, length, heads, dim // 2, 2).contiguous())
    return torch.view_as_real(xc * rot).flatten(3).to(x.dtype)


def _naive_attention(x, qkv_weight, out_weight, heads, mask):
    """softmax(Q Kᵀ/sqrt(d) + mask) V with explicit loops-free matrix algebra, float64."""
    batch, length, width = x.shape
    dim = width // heads
    q, k, v = (x @ qkv_weight.T).view(batch, length, heads, 3 * dim).chunk(3, dim=-1)
    q, k = _rotate_complex(q), _rotate_complex(k)
    q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(dim)
    if mask is not None:
        scores = scores + torch.where(mask.bool(), 0.0, float("-inf"))[:, None, None, :].to(scores.dtype)
    y = scores.softmax(-1) @ v
    return y.permute(0, 2, 1, 3).reshape(batch, length, width) @ out_weight.T


def _rms(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _published_forward(state: dict, config: dict, ids, mask):
    """The published NeoBERT LM forward, on a state dict with the published names."""
    x = state["model.encoder.weight"][ids]
    for i in range(config["num_hidden_layers"]):
        p = f"model.transformer_encoder.{i}."
        h = _rms(x, state[p + "attention_norm.weight"], config["norm_eps"])
        x = x + _naive_attention(h, state[p + "qkv.weight"], state[p + "wo.weight"], config["num_attention_heads"], mask)
        h = _rms(x, state[p + "ffn_norm.weight"], config["norm_eps"])
        a, b = (h @ state[p + "ffn.w12.weight"].T).chunk(2, dim=-1)
        x = x + (F.silu(a) * b) @ state[p + "ffn.w3.weight"].T
    x = _rms(x, state["model.layer_norm.weight"], config["norm_eps"])
    return x @ state["decoder.weight"].T + state["decoder.bias"]


# ---- tests -------------------------------------------------------------------------------


def test_published_defaults_and_ffn_size():
    config = NeoBERTConfig()
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (28, 768, 12)
    assert config.ffn_size == 2048 and config.head_dim == 64


@pytest.mark.parametrize(
    "bad",
    [dict(num_attention_heads=5), dict(hidden_size=0), dict(classifier_pooling="max"), dict(norm_eps=-1.0),
     dict(pad_token_id=97), dict(num_hidden_layers=1.5), dict(hidden_size=12, num_attention_heads=4)],
)
def test_config_rejects_impossible_values(bad):
    with pytest.raises(ValueError):
        _config(**bad)


def test_config_accepts_published_keys_and_round_trips(tmp_path):
    config = NeoBERTConfig(**{**TINY, "max_position_embeddings": 1}, max_length=128, dim_head=8, kwargs={})
    assert config.max_position_embeddings == 128
    config.save_pretrained(tmp_path)
    again = NeoBERTConfig.from_pretrained(tmp_path)
    assert again.to_dict() == config.to_dict()
    with pytest.raises(ValueError):
        NeoBERTConfig(**TINY, dim_head=16)


def test_attention_matches_naive_reference_float64():
    torch.manual_seed(0)
    config = _config()
    attn = SelfAttention(config).double()
    for module in (attn.qkv, attn.out):
        torch.nn.init.normal_(module.weight, std=0.3)
    x = torch.randn(3, 11, config.hidden_size, dtype=torch.float64)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 2:] = 0
    cos, sin = rotary_angles(torch.arange(11)[None], config.head_dim, config.rope_theta, torch.float64)
    ours = attn(x, mask.bool()[:, None, None, :], cos, sin)
    ref = _naive_attention(x, attn.qkv.weight, attn.out.weight, config.num_attention_heads, mask)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def test_registration_is_idempotent_and_auto_classes_resolve():
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForQuestionAnswering

    register()
    register()
    config = AutoConfig.for_model("neobert", **TINY)
    assert isinstance(config, NeoBERTConfig)
    assert isinstance(AutoModel.from_config(config), NeoBERTModel)
    assert isinstance(AutoModelForMaskedLM.from_config(config), NeoBERTForMaskedLM)
    assert isinstance(AutoModelForQuestionAnswering.from_config(config), NeoBERTForQuestionAnswering)


def test_masked_lm_loss_ignores_minus_100_and_hidden_states():
    torch.manual_seed(0)
    model = NeoBERTForMaskedLM(_config()).eval()
    ids = torch.randint(1, 97, (2, 9))
    labels = torch.full_like(ids, -100)
    labels[0, 3], labels[1, 5] = 7, 11
    out = model(input_ids=ids, labels=labels, output_hidden_states=True)
    expected = F.cross_entropy(torch.stack([out.logits[0, 3], out.logits[1, 5]]), torch.tensor([7, 11]))
    torch.testing.assert_close(out.loss, expected)
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == (2, 9, 32)
    assert model(input_ids=ids, return_dict=False)[0].shape == (2, 9, 97)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_heads_shapes_and_losses(pooling):
    torch.manual_seed(0)
    ids = torch.randint(1, 97, (2, 8))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    seq = NeoBERTForSequenceClassification(_config(num_labels=3, classifier_pooling=pooling))
    out = seq(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and out.loss.ndim == 0
    reg = NeoBERTForSequenceClassification(_config(num_labels=1))
    assert reg(input_ids=ids, labels=torch.tensor([0.5, -1.0])).loss.ndim == 0
    tok = NeoBERTForTokenClassification(_config(num_labels=5))
    labels = torch.randint(0, 5, (2, 8)).masked_fill(mask == 0, -100)
    out = tok(input_ids=ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (2, 8, 5) and torch.isfinite(out.loss)
    qa = NeoBERTForQuestionAnswering(_config())
    out = qa(input_ids=ids, attention_mask=mask, start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([3, 4]))
    assert out.start_logits.shape == (2, 8) and out.end_logits.shape == (2, 8) and torch.isfinite(out.loss)


@pytest.mark.parametrize("head", ["token", "mlm"])
def test_out_of_range_labels_are_named(head):
    """A label outside [0, n) (other than -100) is a clear error, as for Avey-B, not a CUDA assert."""
    ids = torch.randint(1, 97, (2, 6))
    if head == "token":
        model, labels = NeoBERTForTokenClassification(_config(num_labels=4)), torch.full((2, 6), -100)
        labels[1, 2] = 4
    else:
        model, labels = NeoBERTForMaskedLM(_config()), torch.full((2, 6), -100)
        labels[0, 0] = 97
    with pytest.raises(ValueError, match=r"labels must be -100 \(ignored\) or in \[0,"):
        model(input_ids=ids, labels=labels)


def test_key_converter_names():
    assert convert_key("model.encoder.weight") == "neobert.embed.weight"
    assert convert_key("model.transformer_encoder.3.ffn.w12.weight") == "neobert.layers.3.ffn.gate_up.weight"
    assert convert_key("transformer_encoder.0.wo.weight") == "neobert.layers.0.attn.out.weight"
    with pytest.raises(KeyError):
        convert_key("model.something_else.weight")


@pytest.mark.parametrize("head", ["masked_lm", "base", "sequence_classification"])
def test_loads_a_checkpoint_laid_out_like_the_published_one(tmp_path, head):
    """A random checkpoint with the published names and config keys loads, and the MLM logits
    equal a from-scratch reference of the published forward (complex rotary, per-head qkv)."""
    from aveyb.architectures import load_pretrained

    torch.manual_seed(0)
    published = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=72,
                     vocab_size=97, norm_eps=1e-5, pad_token_id=0, max_length=64)
    d, ffn = 32, 48  # ffn = round_up(int(2 * 72 / 3), 8)
    state = {"model.encoder.weight": torch.randn(97, d), "model.layer_norm.weight": 1 + 0.1 * torch.randn(d),
             "decoder.weight": 0.2 * torch.randn(97, d), "decoder.bias": 0.1 * torch.randn(97)}
    for i in range(2):
        p = f"model.transformer_encoder.{i}."
        state |= {p + "qkv.weight": 0.2 * torch.randn(3 * d, d), p + "wo.weight": 0.2 * torch.randn(d, d),
                  p + "ffn.w12.weight": 0.2 * torch.randn(2 * ffn, d), p + "ffn.w3.weight": 0.2 * torch.randn(d, ffn),
                  p + "attention_norm.weight": 1 + 0.1 * torch.randn(d), p + "ffn_norm.weight": 1 + 0.1 * torch.randn(d)}
    save_file(state, str(tmp_path / "model.safetensors"))
    config_json = {**published, "model_type": "neobert", "architectures": ["NeoBERTLMHead"], "dim_head": 8,
                   "embedding_init_range": 0.02, "decoder_init_range": 0.02, "kwargs": {"classifier_init_range": 0.02},
                   "auto_map": {"AutoConfig": "model.NeoBERTConfig", "AutoModelForMaskedLM": "model.NeoBERTLMHead"}}
    (tmp_path / "config.json").write_text(json.dumps(config_json))

    model = load_pretrained(str(tmp_path), head=head).double()
    ids = torch.randint(1, 97, (2, 13))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    if head == "masked_lm":
        ref = _published_forward({k: v.double() for k, v in state.items()}, published, ids, mask)
        torch.testing.assert_close(out.logits, ref, rtol=1e-9, atol=1e-9)
    elif head == "base":
        assert torch.equal(model.embed.weight, state["model.encoder.weight"].double())
        assert out.last_hidden_state.shape == (2, 13, 32)
    else:
        assert out.logits.shape == (2, 2)


def test_auto_classes_convert_a_published_layout_checkpoint(tmp_path):
    """The fine-tuning harness calls AutoModelFor….from_pretrained directly: same conversion."""
    from transformers import AutoModelForSequenceClassification

    test_loads_a_checkpoint_laid_out_like_the_published_one(tmp_path, "masked_lm")
    register()
    model = AutoModelForSequenceClassification.from_pretrained(str(tmp_path), num_labels=3)
    assert isinstance(model, NeoBERTForSequenceClassification) and model.config.num_labels == 3
    reference = NeoBERTForMaskedLM.from_pretrained(str(tmp_path))
    torch.testing.assert_close(model.neobert.layers[1].ffn.down.weight, reference.neobert.layers[1].ffn.down.weight)
    assert not torch.equal(model.neobert.embed.weight, NeoBERTModel(model.config).embed.weight)
    model.save_pretrained(tmp_path / "ours")  # converted once, saved in our names
    assert "auto_map" not in json.loads((tmp_path / "ours" / "config.json").read_text())
    again = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "ours"))
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
