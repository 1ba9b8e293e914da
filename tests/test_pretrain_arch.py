"""`aveyb pretrain --arch`: every architecture trains through the same pipeline and exports `final/`."""

import json

import pytest
import torch
from transformers import AutoModelForMaskedLM

from aveyb.architectures import ARCHITECTURES
from aveyb.pretrain.config import PretrainConfig
from aveyb.pretrain.loop import pretrain

SMALL = dict(
    model_preset="tiny", tokenizer="bundled:bpe-4k", sources=[{"type": "bundled", "include": ["moby_dick"]}],
    seq_len=64, global_batch_tokens=512, micro_batch_size=4, max_steps=12, lr=3e-3, log_every=1,
    eval_every=100, checkpoint_every=100, holdout_every=0, progress_bar=False, tensorboard=False,
)


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
