"""Size presets: every baseline matches Avey-B's width and context, and at micro, mini and base its
non-embedding parameter count is within ±10% of Avey-B's (counted on built models)."""

from __future__ import annotations

import json

import pytest

from aveyb.architectures import architecture_names, build_config
from aveyb.baselines import BASELINES
from aveyb.baselines.params import aveyb_counts_from_formula, build_on_meta, count_parameters, parameter_table
from aveyb.config import PRESETS

ARCHITECTURES = architecture_names()

VOCAB = 50368


@pytest.mark.parametrize("preset", ["micro", "mini", "base"])
def test_non_embedding_counts_within_ten_percent_of_avey_b(preset):
    from aveyb.model.modeling_aveyb import AveyBForMaskedLM

    assert isinstance(build_on_meta("avey-b", preset, VOCAB), AveyBForMaskedLM)
    table = parameter_table(preset, VOCAB)
    assert set(table) == set(ARCHITECTURES)
    reference = table["avey-b"]["non_embedding"]
    for arch in BASELINES:
        ratio = table[arch]["non_embedding"] / reference
        assert 0.9 <= ratio <= 1.1, f"{arch} at {preset}: {ratio:.3f}× Avey-B's non-embedding parameters"
    for counts in table.values():
        assert counts["total"] == counts["embedding"] + counts["non_embedding"]


@pytest.mark.parametrize("preset", ["tiny", "micro", "mini", "base"])
def test_avey_b_built_model_agrees_with_spec_formula(preset):
    assert count_parameters(build_on_meta("avey-b", preset, VOCAB)) == aveyb_counts_from_formula(preset, VOCAB)


@pytest.mark.parametrize("preset", ["tiny", "micro", "mini", "base"])
@pytest.mark.parametrize("arch", BASELINES)
def test_baselines_share_width_context_and_vocabulary(arch, preset):
    config = build_config(arch, preset, 1234)
    assert config.vocab_size == 1234
    assert config.hidden_size == PRESETS[preset]["hidden_size"]
    context = PRESETS[preset]["max_position_embeddings"]
    extra = config.pad_token_id + 1 if arch == "roberta" else 0  # RoBERTa's positions start after the pad id
    assert config.max_position_embeddings == context + extra


def test_neobert_base_is_28_layers_of_768():
    config = build_config("neobert", "base", VOCAB)
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (28, 768, 12)


def test_embedding_counts_are_what_the_docs_say():
    bert = count_parameters(build_on_meta("bert", "tiny", 100))
    d, context = PRESETS["tiny"]["hidden_size"], PRESETS["tiny"]["max_position_embeddings"]
    # tokens (tied with the output projection) + positions + 2 token types + output bias
    assert bert["embedding"] == 100 * d + context * d + 2 * d + 100
    neobert = count_parameters(build_on_meta("neobert", "tiny", 100))
    assert neobert["embedding"] == 100 * d + (100 * d + 100)  # untied decoder, as published


def test_overrides_reach_the_config_and_unknown_names_fail():
    assert build_config("modernbert", "tiny", 100, num_hidden_layers=5).num_hidden_layers == 5
    with pytest.raises(ValueError):
        build_config("gpt2", "tiny", 100)
    with pytest.raises(ValueError):
        build_config("bert", "huge", 100)


def test_cli_params_json(capsys):
    from aveyb.cli import main

    assert main(["params", "--preset", "tiny", "--json", "--vocab-size", "500"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert list(table) == list(ARCHITECTURES)
    assert set(table["bert"]) == {"total", "embedding", "non_embedding"}
    assert table["avey-b"]["embedding"] == 500 * PRESETS["tiny"]["hidden_size"]
    assert main(["params", "--preset", "tiny"]) == 0
    assert "non-embedding" in capsys.readouterr().out


def test_the_size_presets_are_avey_bs():
    from aveyb.architectures import SIZE_PRESETS
    from aveyb.config import PRESETS

    assert SIZE_PRESETS == tuple(PRESETS)
