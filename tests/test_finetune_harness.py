"""Fine-tuning harness end to end on tiny models and tiny data: every task type, with a tiny
random BERT (any AutoModelFor... checkpoint) and a tiny random Avey-B; results.json contents,
skip-on-rerun, crash leaves no results.json, sweeps, reports, CLI, and clear errors."""

import json
import math
from pathlib import Path

import pytest
import torch

from aveyb.tasks.config import build_config
from aveyb.tasks.data import TaskDataError
from aveyb.tasks.runner import run_finetune
from aveyb.tasks.testing import fixture_loader, make_tiny_bert
from aveyb.tasks.training import TaskError

HUB = Path(__file__).parent / "fixtures" / "tasks" / "hub"
LOAD = fixture_loader(HUB)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return str(make_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "model"))


@pytest.fixture(scope="module")
def aveyb_model(tmp_path_factory):
    """A random tiny Avey-B with the bundled byte-level BPE tokenizer (EOS, no SEP, no CLS)."""
    from importlib import resources

    from transformers import AutoModelForMaskedLM, AutoTokenizer

    import aveyb.model  # noqa: F401
    from aveyb.config import preset_config

    tok = AutoTokenizer.from_pretrained(str(resources.files("aveyb") / "resources" / "tokenizers" / "bpe-4k"))
    cfg = preset_config("tiny", vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                        max_position_embeddings=64)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-aveyb") / "model"
    AutoModelForMaskedLM.from_config(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def cfg(**kw):
    return build_config("ci", kw)


def run(model, task, out, **kw):
    return run_finetune(model, task, out, cfg(**kw), load_split=LOAD, log=lambda *_: None)


def check_record(rec, family, keys):
    assert rec["family"] == family
    for k in keys:
        assert f"validation/{k}" in rec["metrics"] and f"test/{k}" in rec["metrics"], k
    assert all(isinstance(v, float) for v in rec["metrics"].values())
    for k in ("config", "seed", "lr", "time_s", "git_commit", "versions", "main_metric"):
        assert k in rec


# ---- every task type, tiny BERT ---------------------------------------------------------------
@pytest.mark.parametrize("task", ["sst2", "mnli"])
def test_sequence_classification(bert, tmp_path, task):
    rec = run(bert, task, tmp_path)
    check_record(rec, "sequence_classification", ["accuracy", "macro_f1"])
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["metrics"] == rec["metrics"] and stored["config"]["lr"] == rec["lr"]


@pytest.mark.slow
@pytest.mark.parametrize("decoding", ["majority", "first"])
def test_token_classification(bert, tmp_path, decoding):
    rec = run(bert, "conll2003", tmp_path, tc_decoding=decoding)
    check_record(rec, "token_classification", ["paper_macro_f1", "f1", "token_accuracy"])


@pytest.mark.parametrize("task,head", [("squad_v2", "start_end"), ("squad", "in_span"), ("record", "start_end"),
                                       ("niah1", "start_end"), ("niah2", "in_span")])
def test_question_answering(bert, tmp_path, task, head):
    rec = run(bert, task, tmp_path, qa_head=head)
    check_record(rec, "question_answering", ["paper_f1", "exact_match", "squad_f1"])
    assert 0 <= rec["metrics"]["test/paper_f1"] <= 1


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["mnrl", "cached_mnrl"])
def test_retrieval(bert, tmp_path, loss):
    rec = run(bert, "nq", tmp_path, retrieval_loss=loss)
    check_record(rec, "retrieval", ["ndcg@10", "mrr@10", "recall@100", "paper_ndcg@10"])
    assert rec["metrics"]["test/recall@100"] == 1.0  # 5-document corpus


# ---- Avey-B through the same Auto classes --------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("task,kw", [("mnli", {}), ("conll2003", {}), ("squad_v2", {}), ("squad", {"qa_head": "in_span"}),
                                     ("msmarco", {})])
def test_aveyb_every_family(aveyb_model, tmp_path, task, kw):
    rec = run(aveyb_model, task, tmp_path, **kw)
    assert rec["metrics"] and not any(math.isnan(v) for v in rec["metrics"].values())  # no NaN


# ---- units: alignment, decoding, windows, EOS -----------------------------------------------
def test_word_alignment_and_votes(bert):
    from aveyb.tasks.token_classification import decode_words, word_alignment
    from aveyb.tasks.training import load_tokenizer

    tok = load_tokenizer(bert)
    ids, word_of = word_alignment(tok, ["Zwingmann", "spoke", "."], 32, append_eos=True)
    assert word_of[0] is None and word_of[-1] is None  # [CLS] ... [SEP]
    assert ids[-1] == tok.sep_token_id and ids.count(tok.sep_token_id) == 1  # EOS not doubled
    assert sorted({w for w in word_of if w is not None}) == [0, 1, 2]
    # word 0 has sub-tokens voting 1, 2, 2 -> 2 (majority) / 1 (first); word 1 is truncated -> default
    assert decode_words([5, 1, 2, 2, 5], [None, 0, 0, 0, None], 2, "majority", default=0) == [2, 0]
    assert decode_words([5, 1, 2, 2, 5], [None, 0, 0, 0, None], 2, "first", default=0) == [1, 0]
    assert decode_words([1, 2], [0, 0], 1, "majority", default=0) == [1]  # tie -> earliest sub-token


def test_word_alignment_byte_level_bpe(aveyb_model):
    from aveyb.tasks.token_classification import word_alignment
    from aveyb.tasks.training import load_tokenizer

    tok = load_tokenizer(aveyb_model)  # offsets of " world" include the space
    words = ["Peter", "Blackburn", "visited", "London", "."]
    ids, word_of = word_alignment(tok, words, 64, append_eos=True)
    owners = [w for w in word_of if w is not None]
    assert owners == sorted(owners) and set(owners) == set(range(len(words)))
    assert ids[-1] == tok.eos_token_id and word_of[-1] is None
    for w, word in enumerate(words):
        pieces = [i for i, o in zip(ids, word_of) if o == w]
        assert tok.decode(pieces).strip() == word


def test_pairs_get_a_separator_and_eos(aveyb_model, bert):
    from aveyb.tasks.training import encode_text, load_tokenizer

    tok = load_tokenizer(aveyb_model)  # byte-level BPE: no pair template
    a = tok("hello there", add_special_tokens=False)["input_ids"]
    b = tok("the world", add_special_tokens=False)["input_ids"]
    assert encode_text(tok, "hello there", "the world", 64, True) == a + [tok.eos_token_id] + b + [tok.eos_token_id]
    assert encode_text(tok, "hello there", None, 64, True) == a + [tok.eos_token_id]
    assert len(encode_text(tok, "word " * 200, "more " * 200, 32, True)) <= 32
    btok = load_tokenizer(bert)
    ids = encode_text(btok, "hello there", "the world", 64, True)
    assert ids[0] == btok.cls_token_id and ids.count(btok.sep_token_id) == 2 and ids[-1] == btok.sep_token_id


def test_qa_windows_stride_over_long_contexts(bert):
    from aveyb.tasks.niah import generate
    from aveyb.tasks.qa import encode
    from aveyb.tasks.training import load_tokenizer

    tok = load_tokenizer(bert)
    exs = generate("niah1", 150, 4, seed=3)
    c = cfg(doc_stride=16)
    feats = encode(exs, tok, 64, c, "start_end", train=True)
    assert len(feats) > 4 * 3  # several windows per example
    assert all(len(f["input_ids"]) <= 64 and f["input_ids"][-1] == tok.sep_token_id for f in feats)
    for n, ex in enumerate(exs):
        hits = [f for f in feats if f["example"] == n and f["start_positions"] > 0]
        assert hits, "the answer is inside at least one window"
        for f in hits:
            s, e = f["offsets"][f["start_positions"]][0], f["offsets"][f["end_positions"]][1]
            assert ex["context"][s:e] == ex["answers"]["text"][0]


def test_qa_windows_without_pair_template(aveyb_model):
    from aveyb.tasks.qa import make_windows
    from aveyb.tasks.training import load_tokenizer

    tok = load_tokenizer(aveyb_model)  # byte-level BPE: question EOS context EOS
    q = tok("Who?", add_special_tokens=False)["input_ids"]
    (ids, _offsets, seq), *rest = make_windows(tok, "Who?", "Ann met Bob " * 30, 48, 8, True)
    assert rest and ids[: len(q)] == q and ids[len(q)] == tok.eos_token_id and seq[len(q)] is None
    assert ids[-1] == tok.eos_token_id and len(ids) <= 48 and seq[len(q) + 1] == 1


def test_start_end_decoding_by_hand():
    from aveyb.tasks.qa import decode_start_end

    w = {"offsets": [(0, 0), (0, 3), (4, 7), (8, 11), (0, 0)], "seq": [None, 1, 1, 1, None],
         "start": torch.tensor([0.0, 1.0, 5.0, 0.0, 0.0]), "end": torch.tensor([0.0, 0.0, 1.0, 4.0, 0.0])}
    assert decode_start_end([w], n_best=3, max_answer_length=5, v2=False) == (4, 11)
    assert decode_start_end([w], n_best=3, max_answer_length=1, v2=False) == (4, 7)  # span length capped
    w["start"][0], w["end"][0] = 6.0, 6.0  # null score 12 > best span 9
    assert decode_start_end([w], n_best=3, max_answer_length=5, v2=True) is None
    assert decode_start_end([w], n_best=3, max_answer_length=5, v2=False) == (4, 11)


def test_in_span_decoding_by_hand():
    from aveyb.tasks.qa import decode_in_span

    w = {"offsets": [(0, 0), (0, 3), (4, 7), (8, 11), (12, 15)], "seq": [None, 1, 1, 1, 1],
         "p_inside": [0.9, 0.1, 0.8, 0.7, 0.2]}
    inside, best = decode_in_span([w])
    assert inside == [(4, 7), (8, 11)] and best == (4, 11)
    w["p_inside"] = [0.0, 0.1, 0.2, 0.3, 0.4]
    assert decode_in_span([w]) == ([], None)  # no answer


# ---- run bookkeeping -------------------------------------------------------------------------
def test_finished_run_is_skipped(bert, tmp_path):
    first = run(bert, "sst2", tmp_path)
    mtime = (tmp_path / "results.json").stat().st_mtime_ns
    logs = []
    again = run_finetune(bert, "sst2", tmp_path, cfg(), load_split=LOAD, log=logs.append)
    assert again == json.loads((tmp_path / "results.json").read_text()) and again["metrics"] == first["metrics"]
    assert (tmp_path / "results.json").stat().st_mtime_ns == mtime and "skipping" in logs[0] and len(logs) == 1
    run_finetune(bert, "sst2", tmp_path, cfg(lr=1e-4), load_split=LOAD, log=logs.append)
    assert "differs from this request in ['lr']" in logs[-1]


@pytest.mark.slow
def test_crash_leaves_no_results(bert, tmp_path, monkeypatch):
    import aveyb.tasks.classification as sc

    def boom(*a, **k):
        raise RuntimeError("evaluation crashed")

    monkeypatch.setattr(sc, "evaluate", boom)
    with pytest.raises(RuntimeError, match="evaluation crashed"):
        run(bert, "sst2", tmp_path)
    assert not list(tmp_path.iterdir()) or not (tmp_path / "results.json").exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_model_without_the_needed_head(bert, tmp_path):
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    path = tmp_path / "clip"
    CLIPTextModel(CLIPTextConfig(vocab_size=500, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2)).save_pretrained(path)
    AutoTokenizer.from_pretrained(bert).save_pretrained(path)
    with pytest.raises(TaskError, match="has no question answering head"):
        run(str(path), "squad", tmp_path / "out")
    assert not (tmp_path / "out" / "results.json").exists()


def _local(tmp_path, name, rows, labels=None, files=("train", "validation", "test")):
    folder = tmp_path / "tasks" / name
    folder.mkdir(parents=True)
    for f in files:
        (folder / f"{f}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if labels:
        (folder / "meta.json").write_text(json.dumps({"labels": labels}))
    return tmp_path


@pytest.mark.parametrize("name,rows,labels,match", [
    ("sentiment_rt", [{"id": "r1", "text": "fine", "label": "neutral"}], ["negative", "positive"],
     r"row 'r1' field 'label' = 'neutral' is not in the label set"),
    ("sms_spam", [{"id": "r2", "text": "   ", "label": "ham"}], ["ham", "spam"], r"row 'r2' field 'text' is empty"),
    ("ner_wnut", [{"id": "r3", "tokens": ["a", "b"], "tags": ["O", "B-nope"]}], ["O"],
     r"row 'r3' field 'tags'\[1\] = 'B-nope' is not in the label set"),
    ("ner_wnut", [{"id": "r4", "tokens": [], "tags": []}], ["O"], r"row 'r4' field 'tokens' is empty"),
    ("news_cloze", [{"id": "r5", "context": "Paris is big", "question": "@placeholder is big",
                     "answers": {"text": ["Rome"], "answer_start": [0]}}], None,
     r"row 'r5' answer 'Rome' not found in field 'context'"),
    ("news_cloze", [{"id": "r6", "context": "Paris", "question": "q"}], None,
     r"train.jsonl: no column 'answers' \(--answers-column\)"),
    ("news_cloze", [{"id": "r6", "context": "Paris", "question": "q", "answers": None}], None,
     r"row 'r6' field 'answers'"),
    ("trec_qc", [{"id": "r7", "label": "NUM"}], ["NUM"], r"no text column .* name it with --text-column"),
    ("trec_qc", [{"id": "r7", "label": "NUM", "text": None}, {"id": "r8", "label": "NUM", "text": "ok"}], ["NUM"],
     r"row 'r7' field 'text' is missing"),
])
def test_bad_input_is_a_clear_error(bert, tmp_path, name, rows, labels, match):
    data = _local(tmp_path, name, rows, labels)
    with pytest.raises(TaskDataError, match=match):
        run_finetune(bert, name, tmp_path / "out", cfg(), data_dir=data, log=lambda *_: None)
    assert not (tmp_path / "out" / "results.json").exists()


# ---- sweeps, selection, reports, CLI ---------------------------------------------------------------
def test_selection_by_hand():
    from aveyb.evaluation.sweep import select

    def rec(lr, seed, val, test):
        return {"model_name": "m", "task": "t", "family": "sequence_classification", "main_metric": "accuracy",
                "lr": lr, "seed": seed, "metrics": {"validation/accuracy": val, "test/accuracy": test}}

    recs = [rec(1e-4, 0, 0.5, 0.1), rec(1e-4, 1, 0.7, 0.2),                       # mean val 0.6
            rec(5e-4, 0, 0.6, 0.3), rec(5e-4, 1, 0.8, 0.9), rec(5e-4, 2, 0.7, 0.5)]  # mean val 0.7 -> best
    (row,) = select(recs)
    assert row["best_lr"] == 5e-4 and row["seeds"] == [0, 1, 2]
    assert row["score"]["median"] == 0.5 and row["score"]["min"] == 0.3 and row["score"]["max"] == 0.9
    assert row["score"]["mean"] == pytest.approx(17 / 30)


@pytest.mark.slow
def test_sweep_resume_and_report(bert, tmp_path):
    from aveyb.evaluation.report import write_report
    from aveyb.evaluation.sweep import collect, run_sweep, sweep_grid

    grid = sweep_grid([f"tiny={bert}"], ["sst2", "conll2003"], [1e-3, 5e-4], [0, 1])
    assert len(grid) == 8
    logs = []
    assert run_sweep(tmp_path, grid, cfg(), log=logs.append, load_split=LOAD) == []
    logs.clear()
    assert run_sweep(tmp_path, grid, cfg(), log=logs.append, load_split=LOAD) == []
    assert sum("skipping" in m for m in logs) == 8  # resumed: nothing re-run
    assert len(collect(tmp_path)) == 8
    files = write_report(tmp_path)
    md = files["markdown"].read_text()
    assert "| tiny |" in md and "sst2" in md and "conll2003" in md
    assert files["csv"].read_text().startswith("model,task,family,best_lr,metric")
    assert files["plot0"].stat().st_size > 0 and files["plot1"].stat().st_size > 0


def test_cli_finetune_and_report(bert, tmp_path, capsys):
    from aveyb.cli import main

    out = tmp_path / "runs" / "tiny" / "trec_qc-sample" / "lr1e-3" / "seed0"
    assert main(["finetune", "--model", bert, "--task", "trec_qc-sample", "--output-dir", str(out), "--preset", "ci",
                 "--lr", "1e-3", "--seed", "0", "--max-steps", "2", "--set", "max_eval_examples=5"]) == 0
    rec = json.loads((out / "results.json").read_text())
    assert rec["config"]["max_steps"] == 2 and rec["lr"] == 1e-3 and rec["config"]["max_eval_examples"] == 5
    assert main(["report", str(tmp_path / "runs"), "--no-plots"]) == 0
    assert "trec_qc-sample" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_sweep_writes_the_table(bert, tmp_path, capsys):
    from aveyb.cli import main

    root = tmp_path / "sweep"
    args = ["sweep", "--models", f"tiny={bert}", "--tasks", "sms_spam-sample", "--output-dir", str(root),
            "--preset", "ci", "--lrs", "1e-3", "5e-4", "--seeds", "0", "--set", "max_eval_examples=6"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "4 runs" not in out and "2 runs" in out and "| tiny |" in out
    summary = json.loads((root / "summary.json").read_text())
    assert summary[0]["task"] == "sms_spam-sample" and set(summary[0]["lr_scores"]) == {"1e-3", "5e-4"}
    assert (root / "table.csv").read_text().splitlines()[0] == "model,sms_spam-sample"
    assert not list(root.rglob("model")), "a sweep keeps scores only unless --save-models"


def test_cli_reports_bad_data_without_a_traceback(bert, tmp_path, capsys):
    from aveyb.cli import main

    data = _local(tmp_path, "trec_qc", [{"id": "q1", "text": "", "label": "NUM"}], ["NUM"])
    rc = main(["finetune", "--model", bert, "--task", "trec_qc", "--output-dir", str(tmp_path / "out"),
               "--preset", "ci", "--data-dir", str(data)])
    assert rc == 2 and "row 'q1' field 'text' is empty" in capsys.readouterr().err
