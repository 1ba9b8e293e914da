"""ONNX export (aveyb.export): ONNX Runtime against eager PyTorch on right-padded batches.

Each head is exported once (example: batch 2, length 2S+3) and the same .onnx file is run on
other batch sizes and lengths: shorter than S, exactly S, not multiples of S, single rows.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow  # each case exports a graph (seconds each)
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")  # the dynamo exporter's ONNX translation

import aveyb  # noqa: E402
from aveyb.export import HEAD_OUTPUTS, example_inputs, export_onnx, relative_error  # noqa: E402
from padded import right_padded_batch  # noqa: E402

VOCAB = 120
TOLERANCE = 1e-4  # relative, fp32
# (real length of each row): S = 16 in the tiny preset; every case differs from the export example.
CASES = [
    [37, 20],          # not multiples of S, one padded row
    [5, 16, 9],        # all shorter than or equal to S: a single split
    [64, 40, 1],       # a multiple of S, a 1-token row
    [100, 3, 33],      # many splits, more splits than k, very different lengths
    [7],               # batch 1, shorter than S
]
HEADS = ["AveyBModel", "AveyBForSequenceClassification", "AveyBForTokenClassification",
         "AveyBForQuestionAnswering"]
# Ablations whose graphs differ: uncompressed windows (zero rows in the layers), softmax/coupled
# mixers with the "both" ranker, no retrieval at all.
VARIANTS = {
    "uncompressed": dict(compression=False),
    "coupled_softmax_both": dict(layer_arrangement="coupled", dynamic_norm="softmax", ranker_direction="both",
                                 split_weighting="max"),
    "k_0": dict(num_retrieved_splits=0),
}


def _batch(lengths, seed=0):
    return right_padded_batch(lengths, VOCAB, seed)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """head name -> (eager model, session, output names), each exported once."""
    cache = {}

    def get(name, variant=None):
        key = (name, variant)
        if key not in cache:
            torch.manual_seed(0)
            config = aveyb.preset_config("tiny", vocab_size=VOCAB, num_labels=3, **VARIANTS.get(variant, {}))
            model = getattr(aveyb, name)(config).eval()
            src = tmp_path_factory.mktemp(f"{name}_{variant}")
            model.save_pretrained(src)
            path = export_onnx(src, src / "onnx", verify=False)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            cache[key] = model, session, HEAD_OUTPUTS[name]
        return cache[key]

    return get


@pytest.mark.parametrize("name, variant", [(head, None) for head in HEADS]
                         + [("AveyBForTokenClassification", v) for v in VARIANTS])
def test_onnx_matches_pytorch_on_padded_batches(exported, name, variant):
    model, session, outputs = exported(name, variant)
    assert [o.name for o in session.get_outputs()] == list(outputs)
    worst = 0.0
    for i, lengths in enumerate(CASES):
        ids, mask = _batch(lengths, seed=i)
        got = session.run(list(outputs), {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        with torch.no_grad():
            ref = model(input_ids=ids, attention_mask=mask)
        real = mask.numpy().astype(bool)
        for out_name, value in zip(outputs, got):
            expected = ref[out_name].numpy()
            assert value.shape == expected.shape, (out_name, lengths)
            per_token = name != "AveyBForSequenceClassification"
            error = relative_error(value, expected, real if per_token else None)
            worst = max(worst, error)
            assert error < TOLERANCE, f"{name}.{out_name} ({variant}) lengths {lengths}: relative error {error:.2e}"
    print(f"{name} ({variant or 'default'}): max relative error {worst:.2e}")


def test_dynamic_axes_in_graph_and_other_shapes(exported):
    """The graph's batch and sequence axes are symbolic, and a batch of 5 rows of 83 positions
    (neither used at export) runs and matches."""
    model, session, outputs = exported("AveyBModel")
    for value in session.get_inputs():
        assert [isinstance(d, str) for d in value.shape] == [True, True], value.shape
    export_ids, _ = example_inputs(model.config)
    lengths = [83, 2, 50, 17, 16]
    ids, mask = _batch(lengths, seed=9)
    assert ids.shape != export_ids.shape
    (hidden,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    assert hidden.shape == (5, 83, model.config.hidden_size)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    assert relative_error(hidden, ref, mask.numpy().astype(bool)) < TOLERANCE
    assert np.all(hidden[~mask.numpy().astype(bool)] == 0)  # padded positions are zeros, as in PyTorch


def test_padding_changes_nothing_for_real_tokens(exported):
    """A row alone and the same row inside a right-padded batch give the same ONNX outputs."""
    _, session, _ = exported("AveyBForTokenClassification")
    ids, mask = _batch([45, 12], seed=3)
    (batched,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    (alone,) = session.run(None, {"input_ids": ids[1:, :12].numpy(), "attention_mask": mask[1:, :12].numpy()})
    np.testing.assert_allclose(batched[1, :12], alone[0], rtol=1e-4, atol=1e-5)


def test_cli_export_masked_lm_with_tokenizer(tmp_path, capsys):
    """``aveyb export`` picks the class from ``architectures``, copies config and tokenizer, and
    the folder runs with tokenizers + onnxruntime alone."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    from aveyb.cli import main

    words = ["[PAD]", "[UNK]"] + [f"w{i}" for i in range(VOCAB - 2)]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    src = tmp_path / "mlm"
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(src)
    torch.manual_seed(0)
    model = aveyb.AveyBForMaskedLM(aveyb.preset_config("tiny", vocab_size=VOCAB)).eval()
    model.save_pretrained(src)

    out = tmp_path / "onnx"
    assert main(["export", str(src), "--format", "onnx", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max relative error" in printed
    assert (out / "model.onnx").exists()
    assert json.loads((out / "config.json").read_text())["architectures"] == ["AveyBForMaskedLM"]
    assert not list(out.glob("*.safetensors")) and not list(out.glob("*.py"))

    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # right padding
    enc = tokenizer.encode_batch([" ".join(f"w{i}" for i in range(1, 40)), "w5 w6 w7"])
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits"]
    (logits,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    assert logits.shape == (2, 39, VOCAB)
    assert relative_error(logits, ref, mask.astype(bool)) < TOLERANCE


def test_unknown_architecture_is_refused(tmp_path):
    model = aveyb.AveyBModel(aveyb.preset_config("tiny", vocab_size=VOCAB))
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["architectures"] = ["SomethingElse"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="architectures"):
        export_onnx(tmp_path, tmp_path / "onnx")


def test_a_length_fixed_by_the_exporter_is_refused(tmp_path, monkeypatch):
    """Without the ranker's export branches torch.export cannot keep the length symbolic and
    torch.onnx falls back to the example's length: export_onnx must say so, not save it silently."""
    import aveyb.model.ranker as ranker

    monkeypatch.setattr(ranker, "_exporting", lambda: False)
    model = aveyb.AveyBModel(aveyb.preset_config("tiny", vocab_size=VOCAB))
    model.save_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match="fixed axis"):
        export_onnx(tmp_path, tmp_path / "onnx", verify=False)
