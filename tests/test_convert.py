import json

import pytest
import torch
from safetensors.torch import save_file

from aveyb.config import AveyBConfig
from aveyb.convert import infer_config, load_official
from aveyb.model import AveyBForMaskedLM, AveyBForSequenceClassification, AveyBModel


def official_state_dict(prefix="", **options):
    """A state dict in the official layout (SPEC 7): our encoder uses the same names."""
    torch.manual_seed(0)
    config = AveyBConfig(vocab_size=70, hidden_size=16, num_hidden_layers=4, split_size=8, num_retrieved_splits=3, **options)
    encoder = AveyBModel(config)
    return {prefix + k: v.clone() for k, v in encoder.state_dict().items()}, encoder


@pytest.mark.parametrize("prefix", ["", "model.", "avey._orig_mod."])
def test_shapes_give_the_architecture_and_outputs_match(prefix):
    state, encoder = official_state_dict(prefix)
    model = load_official(state)
    config = model.config
    assert isinstance(model, AveyBForMaskedLM)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (70, 16, 4)
    assert (config.split_size, config.num_retrieved_splits, config.layer_arrangement) == (8, 3, "interleaved_static_first")
    ids = torch.randint(0, 70, (2, 20))
    torch.testing.assert_close(model.model(ids).last_hidden_state, encoder(ids).last_hidden_state)


def test_arrangement_and_compression_are_inferred():
    state, _ = official_state_dict(layer_arrangement="interleaved_dynamic_first")
    assert infer_config({k: v for k, v in state.items()}).layer_arrangement == "interleaved_dynamic_first"
    state, _ = official_state_dict(layer_arrangement="dynamic_only")
    assert infer_config(state).layer_arrangement == "dynamic_only"
    state, _ = official_state_dict(layer_arrangement="static_only")
    with pytest.raises(ValueError, match="static_only' or 'coupled'"):
        infer_config(state)
    assert infer_config(state, layer_arrangement="coupled").layer_arrangement == "coupled"


def test_directory_with_official_config_and_a_classification_head(tmp_path):
    state, encoder = official_state_dict()
    torch.manual_seed(1)
    head = AveyBForSequenceClassification(AveyBConfig(vocab_size=70, hidden_size=16, num_hidden_layers=4,
                                                      split_size=8, num_retrieved_splits=3, num_labels=2))
    for key, value in head.state_dict().items():
        if key.startswith(("dense.", "classifier.")):
            state[key] = value
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"context_len": 512, "eps": 1e-6}))
    model = load_official(tmp_path, AveyBForSequenceClassification, num_labels=2)
    assert model.config.max_position_embeddings == 512 and model.config.eps == 1e-6
    torch.testing.assert_close(model.classifier.weight, head.classifier.weight)
    torch.testing.assert_close(model.model.ranker.down_proj, encoder.ranker.down_proj)


def test_mismatches_are_listed():
    state, _ = official_state_dict()
    del state["layers.1.fuser.bias"]
    state["layers.2.spatial_proj"] = torch.zeros(3, 3)
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        load_official(state)
    text = str(err.value)
    assert "missing: ['model.layers.1.fuser.bias']" in text
    assert "extra.weight" in text and "model.layers.2.spatial_proj: checkpoint (3, 3) vs model (8, 8)" in text


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_official(tmp_path)
