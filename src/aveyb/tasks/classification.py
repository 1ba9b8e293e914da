"""Sequence classification (single texts and pairs joined with separators), scored with
accuracy (paper) and accuracy / F1 / macro-F1 (standard)."""

from __future__ import annotations

from functools import partial

from aveyb.evaluation.metrics import classification_metrics
from aveyb.tasks.data import RowErrors
from aveyb.tasks.export import save_finetuned, task_settings
from aveyb.tasks.predict import input_text, max_length
from aveyb.tasks.training import (
    encode_and_train,
    encode_text,
    load_model,
    load_tokenizer,
    pad_batch,
    predict_batches,
    resolve_max_length,
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
    tokenizer = load_tokenizer(model_path)
    label2id = {l: i for i, l in enumerate(labels)}
    model = load_model("sequence_classification", model_path, num_labels=len(labels),
                       id2label=dict(enumerate(labels)), label2id=label2id)
    max_len = resolve_max_length(cfg, model.config, tokenizer)
    enc = partial(encode, tokenizer=tokenizer, label2id=label2id, max_length=max_len, append_eos=cfg.append_eos)
    stats, val, test = encode_and_train(model, tokenizer, enc, splits, task, cfg, device)
    out = dict(stats)
    pos = task.options.get("positive_label")
    for name, feats in (("validation", val), ("test", test)):
        if feats:
            for k, v in evaluate(model, feats, labels, tokenizer, cfg, device, pos, f"{task.name} {name}").items():
                out[f"{name}/{k}"] = v
    if save_dir is not None:
        save_finetuned(model, tokenizer, save_dir, task_settings(task, cfg, max_len))
    return out


def predict_rows(model_dir, rows, where, cfg, device, settings) -> list[dict]:
    """Predicted label and class probabilities of every input row (``aveyb predict``)."""
    tokenizer, model = load_tokenizer(model_dir), load_model("sequence_classification", model_dir)
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
