"""A killed fine-tuning run resumes from its last checkpoint and ends exactly as an uninterrupted
run; checkpoints are atomic, belong to one run's options, and are removed after results.json."""

import json
import os
from pathlib import Path

import pytest

from aveyb.tasks import checkpoint
from aveyb.tasks.config import build_config
from aveyb.tasks.runner import run_finetune
from aveyb.tasks.testing import make_tiny_bert

QUIET = {"log": lambda *_: None}


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return str(make_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "model"))


@pytest.fixture
def task_file(tmp_path):
    rows = [{"id": f"r{i}", "text": f"{'good' if i % 2 else 'bad'} film {i}", "label": "pos" if i % 2 else "neg"}
            for i in range(40)]
    path = tmp_path / "films.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def cfg(**kw):
    return build_config("ci", {"save_model": False, "max_steps": 6, "checkpoint_every": 2, "batch_size": 2, **kw})


def kill_after(monkeypatch, step_to_die: int):
    real_save = checkpoint.save

    def save_then_die(folder, step, state, keep=1):
        path = real_save(folder, step, state, keep)
        if step == step_to_die:
            raise KeyboardInterrupt("killed")
        return path

    monkeypatch.setattr(checkpoint, "save", save_then_die)


@pytest.mark.slow
def test_a_killed_run_resumes_and_matches_an_uninterrupted_one(bert, task_file, tmp_path, monkeypatch, capsys):
    reference = run_finetune(bert, task_file, tmp_path / "ref", cfg(), **QUIET)
    out = tmp_path / "run"
    kill_after(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(bert, task_file, out, cfg(), **QUIET)
    ckpts = sorted(p.name for p in (out / checkpoint.CHECKPOINTS_DIR).iterdir())
    assert ckpts == ["step-4"] and not (out / "results.json").exists()  # only the newest is kept
    monkeypatch.undo()
    resumed = run_finetune(bert, task_file, out, cfg(), **QUIET)
    assert "resumed fine-tuning from" in capsys.readouterr().out
    assert resumed["metrics"] == reference["metrics"]
    assert not (out / checkpoint.CHECKPOINTS_DIR).exists()  # removed once results.json is written


@pytest.mark.slow
def test_a_checkpoint_of_other_options_is_not_resumed(bert, task_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    kill_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(bert, task_file, out, cfg(), **QUIET)
    monkeypatch.undo()
    run_finetune(bert, task_file, out, cfg(lr=1e-4), **QUIET)
    assert "starting from step 0" in capsys.readouterr().out


def test_half_written_checkpoints_are_ignored(tmp_path):
    folder = tmp_path / "checkpoints"
    checkpoint.save(folder, 2, {"step": 2})
    (folder / "step-4.tmp").mkdir()  # a kill while writing step 4
    (folder / "step-4.tmp" / checkpoint.STATE_FILE).write_bytes(b"partial")
    assert checkpoint.latest(folder) == folder / "step-2"
    assert checkpoint.load(folder / "step-2")["step"] == 2


@pytest.mark.slow
def test_checkpoint_every_zero_writes_none(bert, task_file, tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(checkpoint, "save", lambda *a, **k: saved.append(a))
    run_finetune(bert, task_file, tmp_path / "run", cfg(checkpoint_every=0), **QUIET)
    assert saved == []


@pytest.mark.slow
def test_results_json_is_world_readable(bert, task_file, tmp_path):
    run_finetune(bert, task_file, tmp_path / "run", cfg(checkpoint_every=0), **QUIET)
    mask = os.umask(0)
    os.umask(mask)
    assert (Path(tmp_path / "run" / "results.json").stat().st_mode & 0o777) == 0o644 & ~mask


@pytest.mark.slow
def test_retrieval_resumes_too(bert, tmp_path, monkeypatch):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": f"document {i} about x{i}"}) + "\n"
                                                 for i in range(12)))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"x{i}"}) + "\n"
                                                  for i in range(12)))
    for split, ids in (("train", range(8)), ("test", range(8, 12))):
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                                       "".join(f"q{i}\td{i}\t1\n" for i in ids))
    c = cfg(retrieval_loss="mnrl", max_steps=4)
    reference = run_finetune(bert, str(folder), tmp_path / "ref", c, **QUIET)
    kill_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(bert, str(folder), tmp_path / "run", c, **QUIET)
    monkeypatch.undo()
    assert run_finetune(bert, str(folder), tmp_path / "run", c, **QUIET)["metrics"] == reference["metrics"]


def test_sweep_folders_of_path_and_hub_tasks(tmp_path):
    from aveyb.evaluation.sweep import task_dir_name

    data = tmp_path / "data" / "reviews.csv"
    data.parent.mkdir()
    data.write_text("text,label\n")
    assert task_dir_name(str(data)) == "reviews.csv"
    assert task_dir_name("org/name") == "org_name" and task_dir_name("sst2") == "sst2"
