"""``aveyb predict``: predictions of a model saved by ``aveyb finetune`` for new data.

The task family and the input settings (EOS, maximum length, QA windows and decoding, retrieval
prefixes) come from the saved config (``aveyb_task``, :mod:`aveyb.tasks.export`), so inputs are
built exactly as in fine-tuning. Input: JSON Lines or CSV with the family's columns
(:data:`COLUMNS`); output: one JSON object per input row, in input order, carrying its ``id``
(the row's own, else its 1-based row number).
"""

from __future__ import annotations

import csv
import json
import os
from functools import partial
from pathlib import Path
from typing import Any

from aveyb.tasks.export import FAMILIES, read_task_settings

COLUMNS = {
    "sequence_classification": "'text', or 'text_a' and 'text_b' (a pair)",
    "token_classification": "'tokens' (a list of words, or one string split on whitespace)",
    "question_answering": "'question' and 'context'",
    "retrieval": "'query' or 'document' (embedded with the prefix used in training), or 'text' (no prefix)",
}
_ARCHITECTURE_FAMILIES = {  # models saved by other tools: the family from the head class
    "ForSequenceClassification": "sequence_classification",
    "ForTokenClassification": "token_classification",
    "ForQuestionAnswering": "question_answering",
}


class PredictError(ValueError):
    """Bad input to ``aveyb predict``: the message names the file, the row and the column."""


# ---- reading ----------------------------------------------------------------------------------
def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a JSON Lines (``.jsonl``, ``.json``) or CSV (``.csv``, ``.tsv``) file."""
    path = Path(path)
    if not path.is_file():
        raise PredictError(f"{path}: no such input file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _read_jsonl(path)
    if suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
    raise PredictError(f"{path}: unknown input format {suffix!r}; use .jsonl, .json (JSON Lines), .csv or .tsv")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from aveyb.tasks.data import read_jsonl  # every malformed line reported at once, as for training data

    rows = read_jsonl(path)
    if not rows:
        raise PredictError(f"{path}: no rows")
    return rows


def _row_id(row: dict, number: int):
    return row.get("id", number)


def _text(row: dict, key: str, where: str, family: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        problem = "is missing" if value is None else ("is empty" if isinstance(value, str) else "is not a string")
        raise PredictError(f"{where}: column {key!r} {problem}; {family.replace('_', ' ')} needs {COLUMNS[family]}")
    return value


def _where(path, number: int, row: dict) -> str:
    rid = row.get("id")
    return f"{path}: row {number}" + (f" (id {rid!r})" if rid is not None else "")


# ---- the saved model ----------------------------------------------------------------------------
def saved_task(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The saved task settings, or for a model saved elsewhere, its family read from its head."""
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise PredictError(f"{model_dir}: no config.json; --model must be a folder saved by `aveyb finetune`")
    config = json.loads(config_path.read_text())
    settings = read_task_settings(config)
    if settings is None:
        if "modules.json" in os.listdir(model_dir):
            return {"family": "retrieval"}
        heads = [f for arch in config.get("architectures") or [] for suffix, f in _ARCHITECTURE_FAMILIES.items()
                 if arch.endswith(suffix)]
        if not heads:
            raise PredictError(f"{model_dir}: config.json records no fine-tuned task (no 'aveyb_task', and "
                               f"architectures {config.get('architectures')} have no task head); save the model "
                               "with `aveyb finetune`")
        settings = {"family": heads[0]}
    if settings.get("family") not in FAMILIES:
        raise PredictError(f"{config_path}: aveyb_task.family={settings.get('family')!r}; allowed: {list(FAMILIES)}")
    return settings


def _run_config(settings: dict, batch_size: int, device: str, progress: bool):
    from aveyb.tasks.config import FinetuneConfig

    known = {k: settings[k] for k in ("max_length", "append_eos", "tc_decoding", "qa_head", "doc_stride", "n_best",
                                      "max_answer_length", "query_prefix", "document_prefix") if k in settings}
    return FinetuneConfig(**known, eval_batch_size=batch_size, device=device, progress=progress)


# ---- families -------------------------------------------------------------------------------------
def _sequence_classification(model_dir, rows, where, cfg, device, settings) -> list[dict]:
    from aveyb.tasks.training import encode_text, load_model, load_tokenizer, pad_batch, predict_batches

    tokenizer, model = load_tokenizer(model_dir), load_model("sequence_classification", model_dir)
    max_len = _max_length(cfg, model, tokenizer)
    feats = []
    for number, row in enumerate(rows, 1):
        at = where(number, row)
        if "text_a" in row or "text_b" in row:
            a = _text(row, "text_a", at, "sequence_classification")
            b = _text(row, "text_b", at, "sequence_classification")
        else:
            a, b = _text(row, "text", at, "sequence_classification"), None
        feats.append({"input_ids": encode_text(tokenizer, a, b, max_len, cfg.append_eos)})
    id2label = model.config.id2label
    out: list[dict] = [{} for _ in rows]
    collate = partial(pad_batch, pad_id=tokenizer.pad_token_id)
    for idx, logits in predict_batches(model, feats, collate, cfg, device, desc="predict"):
        probs = logits.float().softmax(-1)
        for i, p in zip(idx, probs.tolist()):
            best = max(range(len(p)), key=p.__getitem__)
            out[i] = {"label": id2label[best], "score": p[best],
                      "scores": {id2label[j]: v for j, v in enumerate(p)}}
    return out


def _words(row: dict, at: str) -> list[str]:
    value = row.get("tokens")
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not value or not all(isinstance(w, str) and w.strip() for w in value):
        raise PredictError(f"{at}: column 'tokens' is missing or empty, or holds an empty word; "
                           f"token classification needs {COLUMNS['token_classification']}")
    return value


def _token_classification(model_dir, rows, where, cfg, device, settings) -> list[dict]:
    from aveyb.tasks.token_classification import decode_words, word_alignment
    from aveyb.tasks.training import load_model, load_tokenizer, pad_batch, predict_batches

    tokenizer, model = load_tokenizer(model_dir), load_model("token_classification", model_dir)
    max_len = _max_length(cfg, model, tokenizer)
    feats = []
    for number, row in enumerate(rows, 1):
        words = _words(row, where(number, row))
        ids, word_of = word_alignment(tokenizer, words, max_len, cfg.append_eos)
        feats.append({"input_ids": ids, "word_of": word_of, "words": words})
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    default = labels.index("O") if "O" in labels else 0
    out: list[dict] = [{} for _ in rows]
    collate = partial(pad_batch, pad_id=tokenizer.pad_token_id)
    for idx, logits in predict_batches(model, feats, collate, cfg, device, desc="predict"):
        arg = logits.float().argmax(-1).tolist()
        for row, i in enumerate(idx):
            f = feats[i]
            tags = decode_words(arg[row][: len(f["input_ids"])], f["word_of"], len(f["words"]), cfg.tc_decoding,
                                default)
            out[i] = {"tokens": f["words"], "tags": [labels[t] for t in tags]}
    return out


def _question_answering(model_dir, rows, where, cfg, device, settings) -> list[dict]:
    from aveyb.tasks import qa
    from aveyb.tasks.training import load_model, load_tokenizer, pad_batch, predict_batches

    in_span = cfg.qa_head == "in_span"
    tokenizer = load_tokenizer(model_dir)
    model = load_model("token_classification" if in_span else "question_answering", model_dir)
    max_len = _max_length(cfg, model, tokenizer)
    examples, feats = [], []
    for number, row in enumerate(rows, 1):
        at = where(number, row)
        question, context = (_text(row, key, at, "question_answering") for key in ("question", "context"))
        examples.append(context)
        for ids, offsets, seq in qa.make_windows(tokenizer, question, context, max_len, cfg.doc_stride,
                                                 cfg.append_eos):
            feats.append({"input_ids": ids, "offsets": offsets, "seq": seq, "example": number - 1})
    if in_span:
        output = lambda o: o.logits.float().softmax(-1)[..., 1].cpu()
    else:
        output = lambda o: (o.start_logits.float().cpu(), o.end_logits.float().cpu())
    windows: list[list[dict]] = [[] for _ in rows]
    collate = partial(pad_batch, pad_id=tokenizer.pad_token_id)
    for idx, res in predict_batches(model, feats, collate, cfg, device, desc="predict", output=output):
        for r, i in enumerate(idx):
            f, n = feats[i], len(feats[i]["input_ids"])
            w = {"offsets": f["offsets"], "seq": f["seq"]}
            if in_span:
                w["p_inside"] = res[r, :n].tolist()
            else:
                w["start"], w["end"] = res[0][r, :n], res[1][r, :n]
            windows[f["example"]].append(w)
    allow_empty = bool(settings.get("allow_no_answer"))  # SQuAD v2-style tasks: "" when no span wins
    out = []
    for context, ws in zip(examples, windows):
        if in_span:
            span = qa.decode_in_span(ws)[1]
        else:
            span = qa.decode_start_end(ws, cfg.n_best, cfg.max_answer_length, allow_empty)
        out.append({"answer": context[span[0]:span[1]], "start": span[0], "end": span[1]} if span
                   else {"answer": "", "start": None, "end": None})
    return out


def _retrieval(model_dir, rows, where, cfg, device, settings) -> list[dict]:
    from aveyb.tasks import retrieval

    texts = []
    for number, row in enumerate(rows, 1):
        at = where(number, row)
        present = [k for k in ("query", "document", "text") if row.get(k) not in (None, "")]
        if len(present) != 1:
            raise PredictError(f"{at}: {'columns ' + str(present) + ' are all set' if present else 'no text column'}; "
                               f"retrieval needs exactly one of {COLUMNS['retrieval']}")
        key = present[0]
        prefix = {"query": cfg.query_prefix, "document": cfg.document_prefix, "text": ""}[key]
        texts.append(prefix + _text(row, key, at, "retrieval"))
    model = retrieval.load_sentence_model(str(model_dir), cfg.max_length, device)
    embeddings = retrieval.encode(model, texts, cfg, device, desc="predict")
    return [{"embedding": e} for e in embeddings.tolist()]


_PREDICTORS = {
    "sequence_classification": _sequence_classification,
    "token_classification": _token_classification,
    "question_answering": _question_answering,
    "retrieval": _retrieval,
}


def _max_length(cfg, model, tokenizer) -> int:
    from aveyb.tasks.training import resolve_max_length

    return resolve_max_length(cfg, model.config, tokenizer)


# ---- entry points ---------------------------------------------------------------------------------
def predict(model_dir: str | os.PathLike, input_path: str | os.PathLike, batch_size: int = 64,
            device: str = "auto", progress: bool = True) -> list[dict[str, Any]]:
    """Predictions for every row of ``input_path`` (each with its ``id``), in input order."""
    from aveyb.tasks.training import select_device

    settings = saved_task(model_dir)
    rows = read_rows(input_path)
    cfg = _run_config(settings, batch_size, device, progress)
    where = partial(_where, input_path)
    results = _PREDICTORS[settings["family"]](str(model_dir), rows, where, cfg, select_device(cfg), settings)
    return [{"id": _row_id(row, n), **res} for n, (row, res) in enumerate(zip(rows, results), 1)]


def write_jsonl(records: list[dict], path: str | os.PathLike | None) -> None:
    """One JSON object per line to ``path`` (stdout when None)."""
    import sys

    if path is None:
        for rec in records:
            sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
