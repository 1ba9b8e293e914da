"""Own data in: task folders found by their meta.json, single files (JSONL, CSV, TSV, Parquet),
Hugging Face dataset ids with column flags, BEIR folders evaluated zero-shot, carved splits,
and errors that name the file, the row, the field, the value and what is allowed."""

import json
from pathlib import Path

import pytest

from aveyb.tasks.config import build_config
from aveyb.tasks.data import TaskDataError
from aveyb.tasks.registry import get_task, list_tasks
from aveyb.tasks.runner import run_finetune
from aveyb.tasks.testing import make_tiny_bert

KIT = Path("/work/shared/data")
QUIET = {"log": lambda *_: None}


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return str(make_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "model"))


def cfg(**kw):
    return build_config("ci", {"save_model": False, **kw})


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def movie_rows(n, start=0):
    return [{"id": f"movies-{i}", "text": f"a {'good' if i % 2 else 'bad'} film number {i}", "rating": 1.5,
             "label": "positive" if i % 2 else "negative"} for i in range(start, start + n)]


def kit_folder(root: Path, name: str, meta: dict | None, splits=("train", "validation", "test"), rows=movie_rows):
    folder = root / "tasks" / name
    for i, split in enumerate(splits):
        write_jsonl(folder / f"{split}.jsonl", rows(12 if split == "train" else 6, 100 * i))
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta))
    return folder


SENTIMENT_META = {"task_type": "sequence_classification", "labels": ["negative", "positive"],
                  "metric": "accuracy (also macro-F1); the rating column allows regression (Pearson r)"}


# ---- task folders are discovered by their meta.json ----------------------------------------------
def test_any_kit_folder_is_a_task_by_name(tmp_path):
    kit_folder(tmp_path, "sentiment_movies", SENTIMENT_META)
    kit_folder(tmp_path, "brand_new_task", {"task_type": "sentence_pair_classification (like QQP)",
                                            "labels": ["negative", "positive"],
                                            "metric": "accuracy and F1 of the positive class"})
    assert {"sentiment_movies", "brand_new_task"} <= set(list_tasks(tmp_path))
    assert "sentiment_movies" not in list_tasks(None)
    task = get_task("sentiment_movies", tmp_path)
    assert (task.family, task.main_metric, task.source, task.labels) == (
        "sequence_classification", "accuracy", "local", ["negative", "positive"])
    assert get_task("brand_new_task", tmp_path).options == {"positive_label": "positive"}


@pytest.mark.parametrize("meta,family,metric,options", [
    ({"task_type": "token_classification", "labels": ["NOUN", "VERB", "."], "metric": "token accuracy (all tokens)"},
     "token_classification", "token_accuracy", {"bio": False}),
    ({"task_type": "token_classification", "labels": ["O", "B-person", "I-person"], "metric": "entity-level F1"},
     "token_classification", "paper_macro_f1", {"bio": True}),
    ({"task_type": "sequence_classification", "labels": ["ham", "spam"], "metric": "F1 of spam class"},
     "sequence_classification", "accuracy", {"positive_label": "spam"}),
    ({"task_type": "extractive_qa (span extraction)", "metric": "exact match"}, "question_answering", "paper_f1", {}),
    ({"task_type": "sequence_classification", "labels": ["a", "b"], "main_metric": "macro_f1"},
     "sequence_classification", "macro_f1", {}),
])
def test_meta_json_gives_family_metric_and_options(tmp_path, meta, family, metric, options):
    kit_folder(tmp_path, "t", meta)
    task = get_task("t", tmp_path)
    assert (task.family, task.main_metric, task.options) == (family, metric, options)


@pytest.mark.parametrize("meta,match", [
    ({"task_type": "regression"}, r"meta.json: task_type = 'regression' is not a task family; allowed: "
                                  r"sequence_classification"),
    ({"task_type": "sequence_classification", "main_metric": "bleu"}, r"main_metric = 'bleu'; allowed"),
])
def test_bad_meta_json_is_a_clear_error(tmp_path, meta, match):
    kit_folder(tmp_path, "t", meta)
    with pytest.raises(TaskDataError, match=match):
        get_task("t", tmp_path)


def test_unknown_task_lists_what_exists(tmp_path):
    kit_folder(tmp_path, "sentiment_movies", SENTIMENT_META)
    with pytest.raises(TaskDataError, match=r"unknown task 'sentiment_moviez'.*Local tasks in .*: sentiment_movies"):
        get_task("sentiment_moviez", tmp_path)


def test_sentiment_movies_finetunes_by_name(bert, tmp_path):
    data = tmp_path / "data"
    kit_folder(data, "sentiment_movies", SENTIMENT_META)
    rec = run_finetune(bert, "sentiment_movies", tmp_path / "out", cfg(), data_dir=data, **QUIET)
    assert rec["task"] == "sentiment_movies" and rec["labels"] == ["negative", "positive"]
    assert "test/accuracy" in rec["metrics"] and rec["splits_carved"] == {}


@pytest.mark.skipif(not (KIT / "tasks" / "sentiment_movies").is_dir(), reason="offline data kit not here")
def test_the_kits_sentiment_movies_is_discovered():
    task = get_task("sentiment_movies", KIT)
    assert task.family == "sequence_classification" and task.labels == ["negative", "positive"]


def test_cli_tasks_lists_the_data_dir(tmp_path, capsys):
    from aveyb.cli import main

    kit_folder(tmp_path, "sentiment_movies", SENTIMENT_META)
    assert main(["tasks", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "sentiment_movies" in out and "sst2" in out and "sentiment_rt-sample" in out
