"""Sequence classification (single texts and pairs joined with separators), scored with
accuracy (paper) and accuracy / F1 / macro-F1 (standard)."""

from __future__ import annotations

from functools import partial

from aveyb.evaluation.metrics import classification_metrics
from aveyb.tasks.data import RowErrors
from aveyb.tasks.predict import input_text, load_predictor, max_length
from aveyb.tasks.training import (
    encode_text,
    load_tokenizer,
    pad_batch,
    predict_batches,
    run_labelled,
)


def encode(examples: list[dict], tokenizer, label2id: dict[str, int], max_length: int, append_eos: bool,
           where: str) -> list[dict]:
    feats, errors = [], RowErrors(where)
    for i, ex in enumerate(examples):
        rid = ex.get("id", i)
        pair = "text_a" in ex or "text_b" in ex
        keys = ("text_a", "text_b") if pair else ("text",)
        problems = [p for p in (_text_problem(key, ex.get(key)) for key in keys) if p]
        label = ex.get("label")
        if label not in label2id:
            problems.append(f"field 'label' = {label!r} is not in the label set {list(label2id)}")
        for problem in problems:
            errors.add(rid, problem)
        if problems:
            continue
        ids = encode_text(tokenizer, ex[keys[0]], ex["text_b"] if pair else None, max_length, append_eos)
        feats.append({"input_ids": ids, "labels": label2id[label]})
    errors.raise_if_any()
    return feats


def _text_problem(key: str, value) -> str | None:
    if not isinstance(value, str):
        return f"field {key!r} is missing or not a string (allowed: a non-empty string)"
    if not value.strip():
        return f"field {key!r} is empty (allowed: a non-empty string)"
    return None


def evaluate(model, feats, labels, tokenizer, cfg, device, positive_label, desc) -> dict[str, float]:
    collate = partial(pad_batch, pad_id=tokenizer.pad_token_id)
    preds = [None] * len(feats)
    for idx, logits in predict_batches(model, feats, collate, cfg, device, desc=desc):
        for i, p in zip(idx, logits.float().argmax(-1).tolist()):
            preds[i] = labels[p]
    golds = [labels[f["labels"]] for f in feats]
    return classification_metrics(golds, preds, labels, positive_label)


def run(task, splits, labels: list[str], model_path: str, cfg, device, save_dir=None) -> dict[str, float]:
    scorer = partial(evaluate, positive_label=task.options.get("positive_label"))
    return run_labelled("sequence_classification", task, splits, labels, model_path, cfg, device, save_dir,
                        encode, scorer)


def predict_rows(model_dir, rows, where, cfg, device, settings, serving="reference") -> list[dict]:
    """Predicted label and class probabilities of every input row (``aveyb predict``)."""
    tokenizer, model = load_tokenizer(model_dir), load_predictor("sequence_classification", model_dir, device, serving)
    max_len = max_length(cfg, model, tokenizer)
    feats = []
    for number, row in enumerate(rows, 1):
        at = where(number, row)
        if "text_a" in row or "text_b" in row:
            a = input_text(row, "text_a", at, "sequence_classification")
            b = input_text(row, "text_b", at, "sequence_classification")
        else:
            a, b = input_text(row, "text", at, "sequence_classification"), None
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
