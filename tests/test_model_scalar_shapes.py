"""alpha and tau, one number per layer, have shape (1,) so FSDP2 can shard them; checkpoints
written when they were 0-dim (and the official ones) still load, with the same outputs."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from aveyb.config import preset_config
from aveyb.model.layers import upgrade_scalar_shapes
from aveyb.model.modeling_aveyb import AveyBForMaskedLM, AveyBModel

SCALARS = ("alpha", "tau")


def _model() -> AveyBForMaskedLM:
    torch.manual_seed(0)
    model = AveyBForMaskedLM(preset_config("tiny", vocab_size=128, dynamic_norm="softmax")).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(SCALARS):
                p.uniform_(0.5, 1.5)
    return model


def _legacy(state: dict) -> dict:
    """The state dict as it was saved before: alpha and tau 0-dim."""
    return {k: (v.reshape(()) if k.endswith(SCALARS) else v) for k, v in state.items()}


def _ids() -> torch.Tensor:
    return torch.randint(5, 128, (2, 40), generator=torch.Generator().manual_seed(1))


def test_one_number_parameters_are_vectors():
    model = _model()
    scalars = {n: p.shape for n, p in model.named_parameters() if n.endswith(SCALARS)}
    assert any(n.endswith("tau") for n in scalars) and set(scalars.values()) == {torch.Size([1])}
    assert not [n for n, p in model.named_parameters() if p.dim() == 0]  # nothing FSDP2 could not shard


def test_load_state_dict_takes_0dim_scalars():
    model = _model()
    fresh = AveyBForMaskedLM(model.config).eval()
    fresh.load_state_dict(_legacy(model.state_dict()))  # strict
    assert all(p.shape == (1,) for n, p in fresh.named_parameters() if n.endswith(SCALARS))
    torch.testing.assert_close(fresh(_ids()).logits, model(_ids()).logits, rtol=0, atol=0)


@pytest.mark.parametrize("shards", [False, True])
def test_a_save_pretrained_folder_with_0dim_scalars_loads(tmp_path, shards):
    from transformers import AutoModel, AutoModelForMaskedLM

    import aveyb  # noqa: F401  (registers Avey-B with the Auto classes)

    model = _model()
    model.save_pretrained(tmp_path, max_shard_size="200KB" if shards else "5GB")
    files = sorted(Path(tmp_path).glob("*.safetensors"))
    assert (len(files) > 1) == shards and (tmp_path / "model.safetensors.index.json").is_file() == shards
    for file in files:  # rewrite the folder as it was saved before the change
        save_file(_legacy(load_file(file)), file, metadata={"format": "pt"})
    index = tmp_path / "model.safetensors.index.json"
    if shards:
        assert any(k.endswith("alpha") for k in json.loads(index.read_text())["weight_map"])

    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert all(p.shape == (1,) for n, p in loaded.named_parameters() if n.endswith(SCALARS))
    torch.testing.assert_close(loaded(_ids()).logits, model(_ids()).logits, rtol=0, atol=0)
    base = AutoModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(base(_ids()).last_hidden_state, model.model(_ids()).last_hidden_state,
                               rtol=0, atol=0)
    # saved again, the folder has the current shapes and loads as any other
    loaded.save_pretrained(tmp_path / "again")
    again = load_file(tmp_path / "again" / "model.safetensors")
    assert {tuple(v.shape) for k, v in again.items() if k.endswith(SCALARS)} == {(1,)}
    assert isinstance(AutoModel.from_pretrained(tmp_path / "again"), AveyBModel)


def test_official_0dim_scalars_convert():
    from aveyb.convert import load_official

    model = _model()
    official = _legacy({f"encoder.{k}": v for k, v in model.model.state_dict().items()})
    converted = load_official(official, dynamic_norm="softmax").eval()
    torch.testing.assert_close(converted.model(_ids()).last_hidden_state, model.model(_ids()).last_hidden_state,
                               rtol=0, atol=0)


def test_upgrade_scalar_shapes_touches_only_0dim_alpha_and_tau():
    state = {"layers.0.alpha": torch.tensor(0.5), "layers.0.tau": torch.tensor([2.0]),
             "layers.0.fuser.bias": torch.zeros(3), "step": torch.tensor(4.0)}
    upgraded = upgrade_scalar_shapes(dict(state))
    assert upgraded["layers.0.alpha"].shape == (1,) and float(upgraded["layers.0.alpha"]) == 0.5
    assert upgraded["layers.0.tau"].shape == (1,) and upgraded["step"].shape == ()
