"""A fine-tuned model comes out: saved next to results.json (unless save_model=false / --no-save),
loadable by transformers' pipelines and sentence-transformers, and by ``aveyb predict``."""

import json
from pathlib import Path

import pytest
import torch

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


@pytest.fixture(scope="module")
def avey(tmp_path_factory):
    """A random tiny Avey-B masked LM with the bundled byte-level BPE tokenizer (it has a mask token)."""
    from importlib import resources

    from transformers import AutoTokenizer

    import aveyb

    tok = AutoTokenizer.from_pretrained(str(resources.files("aveyb") / "resources" / "tokenizers" / "bpe-4k"))
    cfg = aveyb.preset_config("tiny", vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                              eos_token_id=tok.eos_token_id, mask_token_id=tok.mask_token_id, max_position_embeddings=64)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-avey") / "model"
    aveyb.AveyBForMaskedLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def finetuned(avey, tmp_path_factory):
    """``finetuned(task, **options)``: (saved model folder, results record) of Avey-B fine-tuned on
    ``task`` by run_finetune, built once per module."""
    cache = {}

    def get(task, **kw):
        key = (task, tuple(sorted(kw.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(task)
            cache[key] = (out / "model", finetune(avey, task, out, **kw))
        return cache[key]

    return get


@pytest.mark.slow
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


# ---- transformers pipelines and sentence-transformers load the saved folder -------------------
def test_text_classification_pipeline_gives_label_names(finetuned):
    from transformers import pipeline

    path, rec = finetuned("sst2")
    clf = pipeline("text-classification", model=str(path), device="cpu")
    out = clf(["a great film", "an awful movie"], top_k=None)
    for scores in out:
        assert {s["label"] for s in scores} == set(rec["labels"])
        assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-5)


def test_token_classification_pipeline_aggregates_words_by_offsets(finetuned):
    from transformers import pipeline

    path, rec = finetuned("conll2003")
    tagger = pipeline("token-classification", model=str(path), aggregation_strategy="simple", ignore_labels=[],
                      device="cpu")
    text = "John lives in Paris and London"
    groups = tagger(text)
    names = {tag.split("-", 1)[-1] for tag in rec["labels"]}
    assert groups and all(g["entity_group"] in names for g in groups)
    for g in groups:  # every group is a span of the text, found through the tokenizer's offsets
        assert 0 <= g["start"] < g["end"] <= len(text)
        assert text[g["start"]:g["end"]].strip() == g["word"].strip()
    covered = "".join(text[g["start"]:g["end"]] for g in groups)
    assert covered.split() == text.split()  # together the groups cover every word once


@pytest.mark.slow
def test_question_answering_pipeline_returns_a_span_of_the_context(finetuned):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipelines

    path, _ = finetuned("squad")
    context = "The president visited Paris in the spring, then went on to London."
    question = "Which city did the president visit?"
    if "question-answering" not in getattr(pipelines, "REMOVED_TASKS", {}):  # transformers < 5.x
        out = pipelines.pipeline("question-answering", model=str(path), device="cpu")(question=question,
                                                                                      context=context)
        assert out["answer"] and context[out["start"]:out["end"]] == out["answer"]
        return
    # transformers 5 removed the pipeline: what it did, by hand (best span of the context, by offsets)
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForQuestionAnswering.from_pretrained(path).eval()
    enc = tok(question, context, return_offsets_mapping=True, return_tensors="pt")
    offsets, in_context = enc.pop("offset_mapping")[0], torch.tensor([s == 1 for s in enc.sequence_ids(0)])
    with torch.no_grad():
        out = model(**enc)
    start = out.start_logits[0].masked_fill(~in_context, -1e9).argmax()
    end = start + out.end_logits[0, start:].masked_fill(~in_context[start:], -1e9).argmax()
    answer = context[offsets[start, 0]:offsets[end, 1]]
    assert answer.strip() and answer in context


def test_fill_mask_pipeline(avey):
    from transformers import pipeline

    fill = pipeline("fill-mask", model=avey, device="cpu")
    out = fill("the quick brown <mask> jumps over the lazy dog", top_k=3)
    assert len(out) == 3 and all("<mask>" not in o["sequence"] and o["token_str"] for o in out)
    assert out[0]["score"] >= out[1]["score"] >= out[2]["score"]


@pytest.mark.slow
def test_retrieval_model_loads_in_sentence_transformers(finetuned):
    from sentence_transformers import SentenceTransformer

    path, _ = finetuned("msmarco")
    assert (path / "modules.json").is_file() and (path / "1_Pooling" / "config.json").is_file()
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    assert pooling.get("pooling_mode") == "mean" or pooling.get("pooling_mode_mean_tokens") is True  # ST 6 / 5
    model = SentenceTransformer(str(path), device="cpu")
    emb = model.encode(["Query: who is the president", "Document: the president is john"], convert_to_tensor=True)
    assert emb.shape == (2, 64) and torch.isfinite(emb).all()


# ---- aveyb predict ---------------------------------------------------------------------------
def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def predict_cli(args, capsys):
    from aveyb.cli import main

    rc = main(["predict", *map(str, args)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def read_out(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predict_sequence_classification_jsonl_and_csv(finetuned, tmp_path, capsys):
    path, rec = finetuned("sst2")
    data = write_jsonl(tmp_path / "in.jsonl", [{"id": "r1", "text": "a great film"}, {"text": "an awful movie"}])
    rc, _, err = predict_cli(["--model", path, "--input", data, "--output", tmp_path / "out.jsonl"], capsys)
    assert rc == 0, err
    out = read_out(tmp_path / "out.jsonl")
    assert [o["id"] for o in out] == ["r1", 2]
    for o in out:
        assert o["label"] in rec["labels"] and o["label"] == max(o["scores"], key=o["scores"].get)
        assert sum(o["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    (tmp_path / "in.csv").write_text('id,text\nr1,a great film\nr2,"an awful, awful movie"\n')
    rc, stdout, err = predict_cli(["--model", path, "--input", tmp_path / "in.csv"], capsys)
    assert rc == 0, err
    from_csv = [json.loads(line) for line in stdout.splitlines()]
    assert [o["id"] for o in from_csv] == ["r1", "r2"] and from_csv[0]["scores"] == pytest.approx(out[0]["scores"])


def test_predict_token_classification(finetuned, tmp_path, capsys):
    path, rec = finetuned("conll2003")
    data = write_jsonl(tmp_path / "in.jsonl", [{"tokens": ["John", "lives", "in", "Paris"]}, {"tokens": "Mary left"}])
    rc, _, err = predict_cli(["--model", path, "--input", data, "--output", tmp_path / "out.jsonl"], capsys)
    assert rc == 0, err
    out = read_out(tmp_path / "out.jsonl")
    assert out[1]["tokens"] == ["Mary", "left"]
    for o in out:
        assert len(o["tags"]) == len(o["tokens"]) and set(o["tags"]) <= set(rec["labels"])


@pytest.mark.parametrize("head", ["start_end", "in_span"])
def test_predict_question_answering_gives_spans_of_the_context(finetuned, tmp_path, capsys, head):
    path, _ = finetuned("squad", qa_head=head)
    context = "The president visited Paris in the spring, then went on to London."
    data = write_jsonl(tmp_path / "in.jsonl", [{"id": "q", "question": "Which city?", "context": context}])
    rc, _, err = predict_cli(["--model", path, "--input", data, "--output", tmp_path / "out.jsonl"], capsys)
    assert rc == 0, err
    (o,) = read_out(tmp_path / "out.jsonl")
    if o["answer"]:
        assert context[o["start"]:o["end"]] == o["answer"]
    else:  # in-span tagging may tag no token of an untrained model
        assert head == "in_span" and o["start"] is None


def test_predict_retrieval_embeddings(finetuned, tmp_path, capsys):
    path, _ = finetuned("msmarco")
    data = write_jsonl(tmp_path / "in.jsonl", [{"query": "who is the president"}, {"document": "the president"}])
    rc, _, err = predict_cli(["--model", path, "--input", data, "--output", tmp_path / "out.jsonl"], capsys)
    assert rc == 0, err
    out = read_out(tmp_path / "out.jsonl")
    for o in out:
        emb = torch.tensor(o["embedding"])
        assert emb.shape == (64,) and torch.linalg.norm(emb) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("task,rows,match", [
    ("sst2", [{"text": "fine"}, {"id": "b", "txt": "typo"}],
     r"in\.jsonl: row 2 \(id 'b'\): column 'text' is missing; sequence classification needs 'text'"),
    ("sst2", [{"text_a": "a", "text_b": ""}], r"row 1: column 'text_b' is empty"),
    ("conll2003", [{"tokens": []}], r"row 1: column 'tokens' is missing or empty"),
    ("squad", [{"question": "q?", "context": "c"}, {"question": "q?"}], r"row 2: column 'context' is missing"),
    ("msmarco", [{"query": "q", "document": "d"}], r"row 1: columns \['query', 'document'\] are all set"),
])
def test_predict_names_the_row_and_the_missing_column(finetuned, tmp_path, capsys, task, rows, match):
    import re

    path, _ = finetuned(task)
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    rc, _, err = predict_cli(["--model", path, "--input", data], capsys)
    lines = [line for line in err.splitlines() if "error" in line]
    assert rc == 2 and len(lines) == 1 and re.search(match, lines[0]), err[-2000:]


def test_predict_refuses_a_model_without_a_task_and_a_bad_file(avey, finetuned, tmp_path, capsys):
    data = write_jsonl(tmp_path / "in.jsonl", [{"text": "x"}])
    rc, _, err = predict_cli(["--model", avey, "--input", data], capsys)
    assert rc == 2 and "records no fine-tuned task" in err
    path, _ = finetuned("sst2")
    (tmp_path / "in.txt").write_text("x")
    rc, _, err = predict_cli(["--model", path, "--input", tmp_path / "in.txt"], capsys)
    assert rc == 2 and "unknown input format '.txt'" in err
    (tmp_path / "bad.jsonl").write_text('{"text": "x"}\n{"text": \n')
    rc, _, err = predict_cli(["--model", path, "--input", tmp_path / "bad.jsonl"], capsys)
    assert rc == 2 and "line 2 is not valid JSON" in err


@pytest.mark.parametrize("task, rows", [
    ("sst2", [{"text": "a great film"}, {"text": "an awful, awful movie that goes on"}]),
    ("conll2003", [{"tokens": ["John", "lives", "in", "Paris"]}, {"tokens": "Mary left"}]),
    ("squad", [{"question": "Which city?", "context": "The president visited Paris, then London."}]),
])
def test_predict_serving_cpu_fast_matches_the_reference_and_int8_runs(finetuned, tmp_path, capsys, monkeypatch,
                                                                      task, rows):
    import aveyb.serving

    path, _ = finetuned(task)
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    served = []
    optimize = aveyb.serving.optimize_for_cpu
    monkeypatch.setattr(aveyb.serving, "optimize_for_cpu",
                        lambda model, **kw: served.append(kw) or optimize(model, **kw))
    outputs = {}
    for serving in ("reference", "cpu-fast", "cpu-int8"):
        out = tmp_path / f"{serving}.jsonl"
        rc, _, err = predict_cli(["--model", path, "--input", data, "--output", out, "--device", "cpu",
                                  "--serving", serving], capsys)
        assert rc == 0, err
        outputs[serving] = read_out(out)
    for ref, fast in zip(outputs["reference"], outputs["cpu-fast"]):
        assert fast.keys() == ref.keys()
        for key, value in ref.items():  # same labels, tags and spans; the same scores to float rounding
            assert fast[key] == (pytest.approx(value, rel=1e-5) if key == "scores" else value), key
    assert len(outputs["cpu-int8"]) == len(rows)
    assert served == [{"int8": False}, {"int8": True}]  # the reference run took the model as saved


def test_predict_serving_names_what_it_cannot_serve(finetuned, bert, tmp_path, capsys):
    path, _ = finetuned("msmarco")
    data = write_jsonl(tmp_path / "in.jsonl", [{"query": "who is the president"}])
    rc, _, err = predict_cli(["--model", path, "--input", data, "--device", "cpu", "--serving", "cpu-fast"], capsys)
    assert rc == 2 and "retrieval embeds through sentence-transformers" in err
    sst2, _ = finetuned("sst2")
    data = write_jsonl(tmp_path / "text.jsonl", [{"text": "a great film"}])
    from aveyb.tasks.predict import PredictError, load_predictor

    with pytest.raises(PredictError, match="add --device cpu"):
        load_predictor("sequence_classification", sst2, torch.device("cuda"), "cpu-fast")
    bert_out = tmp_path / "bert"
    finetune(bert, "sst2", bert_out)
    rc, _, err = predict_cli(["--model", bert_out / "model", "--input", data, "--device", "cpu",
                              "--serving", "cpu-int8"], capsys)
    assert rc == 2 and "serves Avey-B" in err and "bert model" in err
