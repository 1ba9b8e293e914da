"""Parity of ``AveyBModel`` with the naive float64 reference of SPEC.md (tests/naive_reference.py).

Every combination of ranker_direction x split_weighting x compression x layer_arrangement x
dynamic_norm (240) at a tiny size, on a length that is a multiple of S (no padding: the
official computation) and on one that is not (split padding, SPEC 8); plus right-padded
batches with an attention_mask, whose real rows must equal each sequence run alone.

Token ids are drawn without repetition so that no two splits tie in the ranker (the top-k
order of tied scores is not specified).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from aveyb.config import (
    DYNAMIC_NORMS,
    LAYER_ARRANGEMENTS,
    RANKER_DIRECTIONS,
    SPLIT_WEIGHTINGS,
    AveyBConfig,
)
from naive_reference import expected_parameter_names, naive_hidden_states, naive_layer_kinds

VOCAB, D, LAYERS, S, K = 37, 8, 3, 4, 2
LENGTHS = (20, 17)  # 5 splits (the first ones have fewer than k candidates); 5 splits, the last with 1 token
RTOL = ATOL = 1e-9

COMBOS = list(itertools.product(RANKER_DIRECTIONS, SPLIT_WEIGHTINGS, (True, False),
                                LAYER_ARRANGEMENTS, DYNAMIC_NORMS))


def _id(combo) -> str:
    direction, weighting, compression, arrangement, norm = combo
    return f"{direction}-{weighting}-{'comp' if compression else 'nocomp'}-{arrangement}-{norm}"


def _prefix(where: str):
    """An assert_close ``msg`` that says which configuration and input failed."""
    return lambda message: f"{where}: {message}"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: threads only add overhead (and contention on a 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(direction, weighting, compression, arrangement, norm) -> AveyBConfig:
    return AveyBConfig(
        vocab_size=VOCAB, hidden_size=D, num_hidden_layers=LAYERS, split_size=S, num_retrieved_splits=K,
        ranker_direction=direction, split_weighting=weighting, compression=compression,
        layer_arrangement=arrangement, dynamic_norm=norm, max_position_embeddings=64,
    )


def _model(config: AveyBConfig, seed: int):
    """Random model in float64 whose scalars, scales and biases are nowhere trivially 1 or 0."""
    from aveyb.model.modeling_aveyb import AveyBModel

    torch.manual_seed(seed)
    model = AveyBModel(config).double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("tau"):
                p.uniform_(0.5, 2.0)
            elif name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn_like(p))
    return model


def _state_dict(model, config) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    expected = expected_parameter_names(config)
    missing, extra = sorted(expected - set(sd)), sorted(set(sd) - expected)
    assert not missing and not extra, (
        f"state_dict keys differ from the official names (SPEC 7): missing {missing}, extra {extra}"
    )
    return sd


def _ids(length: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(VOCAB, generator=generator)[:length]


def test_layer_kinds_match_spec():
    for arrangement in LAYER_ARRANGEMENTS:
        config = _config("left", "min", True, arrangement, "sum")
        assert config.layer_kinds() == naive_layer_kinds(arrangement, LAYERS), arrangement


@pytest.mark.parametrize("combo", COMBOS, ids=[_id(c) for c in COMBOS])
def test_model_matches_naive_reference(combo):
    config = _config(*combo)
    seed = COMBOS.index(combo)
    model = _model(config, seed)
    sd = _state_dict(model, config)
    generator = torch.Generator().manual_seed(1000 + seed)
    for length in LENGTHS:
        ids = _ids(length, generator)
        with torch.no_grad():
            got = model(input_ids=ids[None]).last_hidden_state[0]
        expected = naive_hidden_states(sd, config, ids)
        assert got.shape == (length, D), f"T={length}: output shape {tuple(got.shape)}"
        torch.testing.assert_close(
            got, expected, rtol=RTOL, atol=ATOL,
            msg=_prefix(f"{_id(combo)}, T={length}, ids={ids.tolist()}"),
        )


BATCH_COMBOS = [
    (direction, "min", compression, arrangement, norm)
    for direction, compression, arrangement, norm in itertools.product(
        RANKER_DIRECTIONS, (True, False), ("interleaved_static_first", "coupled"), DYNAMIC_NORMS)
]


@pytest.mark.parametrize("combo", BATCH_COMBOS, ids=[_id(c) for c in BATCH_COMBOS])
def test_padded_batch_matches_each_sequence_alone(combo):
    """SPEC 8: two sequences (18 and 9 tokens) right-padded to 18 with an attention_mask."""
    config = _config(*combo)
    seed = 7 + BATCH_COMBOS.index(combo)
    model = _model(config, seed)
    sd = _state_dict(model, config)
    generator = torch.Generator().manual_seed(seed)
    lengths = (18, 9)
    seqs = [_ids(n, generator) for n in lengths]
    T = max(lengths)
    # Padding ids are arbitrary real tokens: only the mask may tell the model they are padding.
    input_ids = torch.randint(0, VOCAB, (len(seqs), T), generator=generator)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for b, seq in enumerate(seqs):
        input_ids[b, : len(seq)] = seq
        mask[b, : len(seq)] = 1
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    for b, seq in enumerate(seqs):
        expected = naive_hidden_states(sd, config, seq)
        torch.testing.assert_close(
            out[b, : len(seq)], expected, rtol=RTOL, atol=ATOL,
            msg=_prefix(f"{_id(combo)}, batch row {b} (length {len(seq)})"),
        )
