"""Checkpoints behave as a transformers user expects: every head loads with remote code where aveyb
is not installed, run-time settings are not saved, dtypes are kept, corrupted weights and
left-padded or non-0/1 masks are refused with a clear error, and ``import aveyb`` is cheap."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

import aveyb
from aveyb.config import AveyBConfig

HEADS = {
    "AutoModel": (AutoModel, "last_hidden_state"),
    "AutoModelForMaskedLM": (AutoModelForMaskedLM, "logits"),
    "AutoModelForSequenceClassification": (AutoModelForSequenceClassification, "logits"),
    "AutoModelForTokenClassification": (AutoModelForTokenClassification, "logits"),
    "AutoModelForQuestionAnswering": (AutoModelForQuestionAnswering, "start_logits"),
}


def tiny_config(**kw):
    return AveyBConfig(**{"vocab_size": 64, "hidden_size": 16, "num_hidden_layers": 2, "split_size": 4,
                          "num_retrieved_splits": 1, "num_labels": 3, **kw})


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = "the cat sat on a mat dog ran far away".split()
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[MASK]", "[EOS]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]",
                                   eos_token="[EOS]")


def run_python(script: str, tmp_path: Path, isolated: bool = False) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter; ``isolated``: aveyb cannot be imported there."""
    blocker = "import sys\nsys.modules['aveyb'] = None  # makes every `import aveyb...` fail\n" if isolated else ""
    env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PATH": "/usr/bin:/bin",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", blocker + script], capture_output=True, text=True, timeout=300,
                          env=env)


# ---- remote code: every head and sentence-transformers without aveyb -------------------------
@pytest.mark.slow
def test_every_head_loads_with_remote_code_where_aveyb_is_not_installed(tmp_path):
    from sentence_transformers import SentenceTransformer, models

    torch.manual_seed(0)
    ids = torch.randint(0, 64, (2, 11))
    expected = {"ids": ids}
    for name, (auto_class, key) in HEADS.items():
        model = auto_class.from_config(tiny_config()).eval()
        model.save_pretrained(tmp_path / name)
        auto_map = json.loads((tmp_path / name / "config.json").read_text())["auto_map"]
        assert set(HEADS) | {"AutoConfig"} <= set(auto_map), auto_map
        with torch.no_grad():
            expected[name] = getattr(model(ids), key)
    tiny_tokenizer().save_pretrained(tmp_path / "AutoModel")
    encoder = models.Transformer(str(tmp_path / "AutoModel"))
    st = SentenceTransformer(modules=[encoder, models.Pooling(16, pooling_mode="mean")], device="cpu")
    st.save(str(tmp_path / "st"))
    with torch.no_grad():
        expected["st"] = st({"input_ids": ids, "attention_mask": torch.ones_like(ids)})["sentence_embedding"]
    torch.save(expected, tmp_path / "expected.pt")
    script = f"""
import torch, transformers
from sentence_transformers import SentenceTransformer
root = {str(tmp_path)!r}
data = torch.load(root + '/expected.pt')
for name, key in {[(n, k) for n, (_, k) in HEADS.items()]!r}:
    model = getattr(transformers, name).from_pretrained(root + '/' + name, trust_remote_code=True).eval()
    assert not type(model).__module__.startswith('aveyb'), type(model).__module__
    with torch.no_grad():
        torch.testing.assert_close(getattr(model(data['ids']), key), data[name])
    # an MLM checkpoint (a pretraining output) loads as every other head too
    other = getattr(transformers, name).from_pretrained(root + '/AutoModelForMaskedLM', trust_remote_code=True)
    assert type(other).__name__ == type(model).__name__
st = SentenceTransformer(root + '/st', trust_remote_code=True, device='cpu')
with torch.no_grad():
    ids = data['ids']
    emb = st({{'input_ids': ids, 'attention_mask': torch.ones_like(ids)}})['sentence_embedding']
torch.testing.assert_close(emb, data['st'])
print('REMOTE_OK')
"""
    result = run_python(script, tmp_path, isolated=True)
    assert "REMOTE_OK" in result.stdout, result.stderr[-3000:]


# ---- run-time settings are not saved; dtypes are kept ----------------------------------------
def test_pretraining_checkpoint_gives_dense_logits(tmp_path):
    from aveyb.pretrain.config import PretrainConfig
    from aveyb.pretrain.loop import pretrain

    cfg = PretrainConfig(arch="avey-b", model_preset="tiny", tokenizer="bundled:bpe-4k",
                         sources=[{"type": "bundled", "include": ["moby_dick"]}], seq_len=32,
                         global_batch_tokens=128, micro_batch_size=4, max_steps=2, log_every=1, eval_every=100,
                         checkpoint_every=100, val_sequences=4, progress_bar=False, tensorboard=False)
    assert pretrain(cfg, tmp_path) == 0
    saved = json.loads((tmp_path / "final" / "config.json").read_text())
    assert "sparse_prediction" not in saved and "kernel_backend" not in saved
    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "final").eval()
    ids = torch.randint(0, 100, (2, 10))
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    out = model(ids, labels=labels)
    assert out.logits.shape == (2, 10, model.config.vocab_size) and torch.isfinite(out.loss)


def test_run_time_settings_in_an_old_config_json_are_ignored(tmp_path):
    model = AutoModelForMaskedLM.from_config(tiny_config(sparse_prediction=True, kernel_backend="torch"))
    assert model.config.sparse_prediction and model.config.kernel_backend == "torch"  # still used at run time
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert "sparse_prediction" not in config
    config["sparse_prediction"] = True  # as checkpoints written before this change hold
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert loaded.config.sparse_prediction is False and loaded.config.kernel_backend == "auto"
    assert AutoModelForMaskedLM.from_pretrained(tmp_path, sparse_prediction=True).config.sparse_prediction


def test_a_config_json_with_the_old_top_k_loads(tmp_path):
    """k was called ``top_k`` (colliding with generation's top_k) until it became
    ``num_retrieved_splits``: a checkpoint whose config.json says ``top_k`` loads with that k and the
    same outputs, and saving it again writes only the new name. Next to ``num_retrieved_splits``, a
    ``top_k`` (generation's default, which transformers 4.x writes) is ignored."""
    torch.manual_seed(0)
    model = AutoModel.from_config(tiny_config(num_retrieved_splits=2)).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["num_retrieved_splits"] == 2 and "top_k" not in config
    config["top_k"] = config.pop("num_retrieved_splits")  # a config.json written before the rename
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert loaded.config.num_retrieved_splits == 2 and loaded.ranker.down_proj.shape == (4, 12)
    ids = torch.randint(0, 64, (2, 30))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).last_hidden_state, model(ids).last_hidden_state)
    loaded.save_pretrained(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["num_retrieved_splits"] == 2 and "top_k" not in again
    config.update(num_retrieved_splits=2, top_k=50)
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert AutoModel.from_pretrained(tmp_path).config.num_retrieved_splits == 2
    assert AveyBConfig(top_k=1).num_retrieved_splits == 1  # code written before the rename


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_load_official_keeps_the_checkpoint_dtype(dtype, tmp_path):
    from safetensors.torch import save_file

    from aveyb.convert import load_official

    state = {k: v.to(dtype) for k, v in aveyb.AveyBForMaskedLM(tiny_config()).state_dict().items()}
    save_file(state, tmp_path / "model.safetensors")
    model = load_official(tmp_path)
    assert {p.dtype for p in model.parameters()} == {dtype}
    torch.testing.assert_close(model.model.embed.weight, state["model.embed.weight"])
    assert {p.dtype for p in load_official(tmp_path, torch_dtype=torch.float32).parameters()} == {torch.float32}
    assert {p.dtype for p in load_official(state, torch_dtype="float32").parameters()} == {torch.float32}
    with pytest.raises(ValueError, match="torch_dtype"):
        load_official(state, torch_dtype="int8")


# ---- attention masks ----------------------------------------------------------------------------
def test_left_padding_is_refused_with_a_message_to_pad_right():
    model = aveyb.AveyBForSequenceClassification(tiny_config()).eval()
    ids = torch.randint(0, 64, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left-padded row
    with pytest.raises(ValueError, match=r"row 1 has padding before a real token.*pad on the right"):
        model(ids, attention_mask=mask)
    with pytest.raises(ValueError, match="row 1 has padding before"):
        model(ids, attention_mask=mask.bool())
    mask = torch.ones_like(ids)
    mask[0, 4] = 0  # a hole
    with pytest.raises(ValueError, match="row 0 has padding before"):
        model(ids, attention_mask=mask)
    right = torch.ones_like(ids)
    right[1, 6:] = 0
    model(ids, attention_mask=right)  # right padding is fine


@pytest.mark.parametrize("values", [[1, 1, 2, 0], [1.0, 0.5, 0.0, 0.0], [1, 1, -1, 0]])
def test_attention_mask_values_other_than_0_and_1_are_refused(values):
    model = aveyb.AveyBModel(tiny_config()).eval()
    ids = torch.randint(0, 64, (1, 4))
    with pytest.raises(ValueError, match="attention_mask must hold only 0"):
        model(ids, attention_mask=torch.tensor([values]))


# ---- corrupted weights ----------------------------------------------------------------------
def _overwrite_tail(path: Path, count: int = 256) -> None:
    data = bytearray(path.read_bytes())
    data[-count:] = b"\xff" * count  # 0xFF bytes are NaN in every float format
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("auto_class", [AutoModelForMaskedLM, AutoModel])
def test_overwritten_weights_are_refused_naming_the_file(auto_class, tmp_path):
    aveyb.AveyBForMaskedLM(tiny_config()).save_pretrained(tmp_path)
    _overwrite_tail(tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"model\.safetensors: weight '.+' holds NaN or infinite values"):
        auto_class.from_pretrained(tmp_path)


def test_overwritten_shard_is_named(tmp_path):
    aveyb.AveyBForMaskedLM(tiny_config()).save_pretrained(tmp_path, max_shard_size="10KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"]
    last_shard = sorted(set(index.values()))[-1]
    _overwrite_tail(tmp_path / last_shard)
    with pytest.raises(ValueError, match=f"{last_shard}: weight"):
        AutoModelForMaskedLM.from_pretrained(tmp_path)


def test_load_official_refuses_non_finite_weights(tmp_path):
    from aveyb.convert import load_official

    state = aveyb.AveyBForMaskedLM(tiny_config()).state_dict()
    state["model.layers.1.fuser.weight"][0, 0] = float("inf")
    with pytest.raises(ValueError, match="'model.layers.1.fuser.weight' holds NaN or infinite"):
        load_official(state)


# ---- import cost --------------------------------------------------------------------------------
def test_import_aveyb_and_the_cli_parser_import_no_torch(tmp_path):
    script = """
import sys
import aveyb
from aveyb.cli import build_parser
build_parser()
heavy = [m for m in ('torch', 'triton', 'torch._dynamo', 'transformers.modeling_utils') if m in sys.modules]
assert not heavy, heavy
print('LIGHT_OK')
"""
    result = run_python(script, tmp_path)
    assert "LIGHT_OK" in result.stdout, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("order", ["aveyb first", "transformers first"])
def test_import_aveyb_still_registers_the_auto_classes(order, tmp_path):
    aveyb.AveyBForTokenClassification(tiny_config()).save_pretrained(tmp_path / "model")
    imports = ("import aveyb\nfrom transformers import AutoConfig, AutoModelForTokenClassification"
               if order == "aveyb first" else
               "from transformers import AutoConfig, AutoModelForTokenClassification\nimport aveyb")
    script = f"""
{imports}
path = {str(tmp_path / 'model')!r}
assert type(AutoConfig.from_pretrained(path)).__module__ == 'aveyb.model.configuration_aveyb'
model = AutoModelForTokenClassification.from_pretrained(path)
assert type(model).__module__ == 'aveyb.model.modeling_aveyb', type(model)
print('REGISTERED_OK')
"""
    result = run_python(script, tmp_path)
    assert "REGISTERED_OK" in result.stdout, result.stderr[-3000:]
