"""A fine-tuned model comes out: saved next to results.json (unless save_model=false / --no-save),
loadable by transformers' pipelines and sentence-transformers, and by ``aveyb predict``."""

import json
from pathlib import Path

import pytest

from aveyb.tasks.config import build_config
from aveyb.tasks.runner import run_finetune
from aveyb.tasks.testing import fixture_loader, make_tiny_bert

HUB = Path(__file__).parent / "fixtures" / "tasks" / "hub"
LOAD = fixture_loader(HUB)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return str(make_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "model"))


def finetune(model, task, out, **kw):
    return run_finetune(model, task, out, build_config("ci", kw), load_split=LOAD, log=lambda *_: None)


def test_model_is_saved_by_default_and_not_with_save_model_false(bert, tmp_path):
    rec = finetune(bert, "sst2", tmp_path / "saved")
    saved = tmp_path / "saved" / "model"
    assert rec["model_dir"] == "model" and (saved / "model.safetensors").is_file()
    config = json.loads((saved / "config.json").read_text())
    assert config["finetuning_task"] == "sst2" and config["aveyb_task"]["family"] == "sequence_classification"
    assert set(config["label2id"]) == set(rec["labels"])
    assert (saved / "tokenizer.json").is_file()
    assert not list(tmp_path.glob("saved/.*"))  # no temporary folder left behind

    rec = finetune(bert, "sst2", tmp_path / "unsaved", save_model=False)
    assert rec["model_dir"] is None and not (tmp_path / "unsaved" / "model").exists()
    assert sorted(p.name for p in (tmp_path / "unsaved").iterdir()) == ["results.json"]


def test_cli_no_save(bert, tmp_path):
    from aveyb.cli import main

    out = tmp_path / "run"
    assert main(["finetune", "--model", bert, "--task", "trec_qc-sample", "--output-dir", str(out), "--preset", "ci",
                 "--max-steps", "1", "--set", "max_eval_examples=4", "--no-save"]) == 0
    assert (out / "results.json").is_file() and not (out / "model").exists()
    assert json.loads((out / "results.json").read_text())["config"]["save_model"] is False


def test_save_model_must_be_a_boolean():
    with pytest.raises(ValueError, match="save_model"):
        build_config(None, {"save_model": "yes"})


# ---- corrupted weights at the command line ------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_cli_finetune_names_a_damaged_weights_file_in_one_line(bert, tmp_path, capsys, damage):
    import shutil

    from aveyb.cli import main

    model = tmp_path / "model"
    shutil.copytree(bert, model)
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:  # the first tensors after the JSON header, with NaN (0xFF bytes in every float format)
        start = 8 + int.from_bytes(data[:8], "little")
        data[start:start + 4096] = b"\xff" * 4096
    weights.write_bytes(bytes(data))
    rc = main(["finetune", "--model", str(model), "--task", "trec_qc-sample", "--output-dir", str(tmp_path / "out"),
               "--preset", "ci", "--max-steps", "1"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert lines[0].startswith(f"aveyb finetune: error: {weights}:"), lines[0]
    assert ("truncated" if damage == "truncated" else "NaN") in lines[0]
