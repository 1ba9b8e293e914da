import pytest
import torch

from aveyb.config import DYNAMIC_NORMS, LAYER_ARRANGEMENTS, PRESETS, AveyBConfig, preset_config
from aveyb.model import AveyBForMaskedLM, AveyBModel


def count(model):
    return sum(p.numel() for p in model.parameters())


def build_on_meta(model_class, config):
    """Build without allocating or initialising weights: only shapes matter here."""
    with torch.device("meta"):
        return model_class(config)


def test_defaults_are_the_official_base_model():
    config = AveyBConfig()
    assert (config.hidden_size, config.num_hidden_layers, config.split_size, config.num_retrieved_splits) == (768, 30, 256, 3)
    assert (config.ranker_direction, config.split_weighting, config.compression) == ("left", "min", True)
    assert (config.layer_arrangement, config.dynamic_norm, config.eps) == ("interleaved_static_first", "sum", 1e-12)
    assert config.layer_kinds()[:3] == ["static", "dynamic", "static"]


def test_base_preset_has_the_published_parameter_count():
    # SPEC 6: 163.9M with vocabulary 50,368 (output head tied to the embedding).
    assert round(count(build_on_meta(AveyBForMaskedLM, preset_config("base"))) / 1e6, 1) == 163.9


def test_mini_preset_is_between_20_and_40m_parameters():
    assert 20e6 <= count(build_on_meta(AveyBModel, preset_config("mini", vocab_size=50304))) <= 40e6


@pytest.mark.parametrize("field,value,needle", [
    ("num_retrieved_splits", -1, "num_retrieved_splits"),
    ("split_size", 0, "split_size"),
    ("layer_arrangement", "zigzag", "interleaved_static_first"),
    ("dynamic_norm", "l2", "signed_sum"),
    ("ranker_direction", "right", "both"),
    ("split_weighting", "mean", "'min'"),
    ("compression", "yes", "compression"),
    ("hidden_size", 12.5, "hidden_size"),
    ("pad_token_id", 10**6, "pad_token_id"),
])
def test_impossible_values_name_the_field_and_the_allowed_values(field, value, needle):
    with pytest.raises(ValueError, match=field) as err:
        AveyBConfig(**{field: value})
    assert needle in str(err.value)


def test_unknown_keys_are_rejected():
    with pytest.raises(ValueError, match="unknown keys.*split_sz"):
        AveyBConfig(split_sz=128)


def test_a_saved_config_with_keys_of_a_newer_version_still_loads(tmp_path):
    """PretrainedConfig's convention: unknown keys of a saved config are kept, not refused."""
    import json

    preset_config("tiny", vocab_size=100).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "future_option": 3}))
    loaded = AveyBConfig.from_pretrained(tmp_path)
    assert loaded.future_option == 3 and loaded.split_size == 16
    assert AveyBConfig.from_dict(loaded.to_dict()).future_option == 3
    with pytest.raises(ValueError, match="AveyBConfig.dynamic_norm"):  # known keys are still checked
        AveyBConfig.from_dict({**saved, "dynamic_norm": "max"})


def test_presets_and_round_trip():
    assert set(PRESETS) == {"tiny", "micro", "mini", "base"}
    with pytest.raises(ValueError, match="unknown Avey-B preset"):
        preset_config("huge")
    config = preset_config("tiny", vocab_size=123, dynamic_norm="softmax")
    again = AveyBConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()


@pytest.mark.parametrize("arrangement", LAYER_ARRANGEMENTS)
def test_layer_kinds_follow_the_arrangement(arrangement):
    kinds = AveyBConfig(num_hidden_layers=4, layer_arrangement=arrangement).layer_kinds()
    expected = {
        "interleaved_static_first": ["static", "dynamic"] * 2,
        "interleaved_dynamic_first": ["dynamic", "static"] * 2,
        "static_only": ["static"] * 4, "dynamic_only": ["dynamic"] * 4, "coupled": ["coupled"] * 4,
    }[arrangement]
    assert kinds == expected


@pytest.mark.parametrize("norm", DYNAMIC_NORMS)
def test_softmax_alone_adds_a_temperature(norm):
    model = AveyBModel(AveyBConfig(vocab_size=10, hidden_size=8, num_hidden_layers=2, split_size=4, num_retrieved_splits=1,
                                   dynamic_norm=norm))
    has_tau = any(name.endswith(".tau") for name, _ in model.named_parameters())
    assert has_tau == (norm == "softmax")
