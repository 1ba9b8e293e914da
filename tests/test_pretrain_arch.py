"""`aveyb pretrain --arch`: every architecture trains through the same pipeline and exports `final/`."""

import json

import pytest
import torch
from transformers import AutoModelForMaskedLM

from aveyb.architectures import architecture_names
from aveyb.pretrain.config import PretrainConfig
from aveyb.pretrain.loop import pretrain

ARCHITECTURES = architecture_names()

SMALL = dict(
    model_preset="tiny", tokenizer="bundled:bpe-4k", sources=[{"type": "bundled", "include": ["moby_dick"]}],
    seq_len=64, global_batch_tokens=512, micro_batch_size=4, max_steps=12, lr=3e-3, log_every=1,
    eval_every=100, checkpoint_every=100, holdout_every=0, progress_bar=False, tensorboard=False,
)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_pretrains_and_exports(tmp_path, arch):
    torch.manual_seed(0)
    assert pretrain(PretrainConfig(**SMALL, arch=arch), tmp_path) == 0
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3]), losses
    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "final")
    expected = {"avey-b": "aveyb"}.get(arch, arch)
    assert model.config.model_type.replace("_", "").replace("-", "") == expected.replace("-", "")


def one_variant_study(arch: str) -> dict:
    return {"name": "s", "reference": "a", "variants": [{"name": "a", "arch": arch}],
            "finetune": {"tasks": ["sentiment_rt-sample"], "lrs": [1e-3], "seeds": [0]}}


@pytest.mark.slow
def test_a_registered_architecture_builds_pretrains_and_joins_the_study_spec(tmp_path):
    """The registry is open: an architecture registered in user code is built by name, accepted by
    the pretraining config and the study spec, and an unknown name is refused naming the known ones."""
    from transformers import BertConfig

    from aveyb.architectures import _REGISTRY, build_masked_lm, register_architecture
    from aveyb.study.spec import Study, StudyError

    def shallow_bert(preset, vocab_size, **overrides):
        return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=128, **overrides)

    register_architecture("shallow-bert", shallow_bert, "one-layer BERT")
    try:
        assert "shallow-bert" in architecture_names()
        assert build_masked_lm("shallow-bert", "tiny", 300).config.num_hidden_layers == 1
        torch.manual_seed(0)
        assert pretrain(PretrainConfig(**{**SMALL, "max_steps": 2}, arch="shallow-bert"), tmp_path) == 0
        Study.from_dict(one_variant_study("shallow-bert")).validate()
    finally:
        _REGISTRY.pop("shallow-bert")
    with pytest.raises(ValueError, match=r"arch='shallow-bert' is not a registered architecture.*'avey-b'"):
        PretrainConfig(**SMALL, arch="shallow-bert")
    with pytest.raises(StudyError, match=r"arch.*must be one of \['avey-b'"):
        Study.from_dict(one_variant_study("shallow-bert")).validate()
