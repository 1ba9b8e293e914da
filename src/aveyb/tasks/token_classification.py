"""Token classification: word labels aligned to sub-tokens through the tokenizer's character
offsets (works for WordPiece, BPE and SentencePiece alike), decoded per word by majority vote
over its sub-tokens (paper) or by the first sub-token."""

from __future__ import annotations

from collections import Counter
from functools import partial

from aveyb.evaluation.metrics import token_classification_metrics
from aveyb.tasks.data import RowErrors
from aveyb.tasks.families import FAMILIES
from aveyb.tasks.predict import PredictError, load_predictor, max_length
from aveyb.tasks.training import (
    end_token_id,
    load_tokenizer,
    pad_batch,
    predict_batches,
    run_labelled,
)


def word_alignment(tokenizer, words: list[str], max_length: int, append_eos: bool) -> tuple[list[int], list[int | None]]:
    """Token ids of the words joined by spaces, and for each token the index of its word (None for
    special tokens). Truncated to ``max_length`` (EOS appended)."""
    text, spans, pos = "", [], 0
    for w in words:
        if text:
            text += " "
            pos += 1
        spans.append((pos, pos + len(w)))
        text += w
        pos += len(w)
    enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True, truncation=True, max_length=max_length)
    ids, word_of = [], []
    wi = 0
    for tid, (s, e) in zip(enc["input_ids"], enc["offset_mapping"]):
        owner = None
        if e > s:
            while wi < len(spans) and spans[wi][1] <= s:
                wi += 1
            if wi < len(spans) and spans[wi][0] < e:
                owner = wi
        ids.append(tid)
        word_of.append(owner)
    eos = end_token_id(tokenizer) if append_eos else None
    if eos is not None:
        if ids and ids[-1] == eos and word_of[-1] is None:
            ids, word_of = ids[:-1], word_of[:-1]
        ids, word_of = ids[: max_length - 1] + [eos], word_of[: max_length - 1] + [None]
    else:
        ids, word_of = ids[:max_length], word_of[:max_length]
    return ids, word_of


def encode(examples, tokenizer, label2id, max_length, append_eos, decoding, where) -> list[dict]:
    feats, errors = [], RowErrors(where)
    for i, ex in enumerate(examples):
        rid = ex.get("id", i)
        words, tags = ex.get("tokens"), ex.get("tags")
        problems = _row_problems(words, tags, label2id)
        for problem in problems:
            errors.add(rid, problem)
        if problems:
            continue
        ids, word_of = word_alignment(tokenizer, words, max_length, append_eos)
        labels, seen = [], set()
        for w in word_of:
            if w is None or (decoding == "first" and w in seen):
                labels.append(-100)
            else:
                labels.append(label2id[tags[w]])
            if w is not None:
                seen.add(w)
        feats.append({"input_ids": ids, "labels": labels, "word_of": word_of, "n_words": len(words),
                      "gold": [label2id[t] for t in tags]})
    errors.raise_if_any()
    return feats


def _row_problems(words, tags, label2id) -> list[str]:
    if not isinstance(words, list) or not isinstance(tags, list):
        return ["needs list fields 'tokens' and 'tags' (allowed: one tag per token)"]
    if not words:
        return ["field 'tokens' is empty (allowed: a non-empty list of words)"]
    if len(words) != len(tags):
        return [f"has {len(words)} tokens but {len(tags)} tags (allowed: one tag per token)"]
    problems = []
    for j, (w, t) in enumerate(zip(words, tags)):
        if not isinstance(w, str) or not w.strip():
            problems.append(f"field 'tokens'[{j}] is empty (allowed: a non-empty string)")
        if t not in label2id:
            problems.append(f"field 'tags'[{j}] = {t!r} is not in the label set {list(label2id)}")
    return problems


def decode_words(token_preds: list[int], word_of: list[int | None], n_words: int, decoding: str,
                 default: int) -> list[int]:
    """Per-word labels from per-token predictions: majority vote (ties: earliest sub-token's
    label among the tied) or the first sub-token. Words with no token (truncated) get ``default``."""
    votes: list[list[int]] = [[] for _ in range(n_words)]
    for p, w in zip(token_preds, word_of):
        if w is not None:
            votes[w].append(p)
    out = []
    for v in votes:
        if not v:
            out.append(default)
        elif decoding == "first":
            out.append(v[0])
        else:
            counts = Counter(v)
            best = max(counts.values())
            out.append(next(p for p in v if counts[p] == best))
    return out


def evaluate(model, feats, labels, tokenizer, cfg, device, bio, desc) -> dict[str, float]:
    collate = partial(pad_batch, pad_id=tokenizer.pad_token_id)
    default = labels.index("O") if "O" in labels else 0
    preds = [None] * len(feats)
    for idx, logits in predict_batches(model, feats, collate, cfg, device, desc=desc):
        arg = logits.float().argmax(-1).tolist()
        for row, i in enumerate(idx):
            f = feats[i]
            preds[i] = decode_words(arg[row][: len(f["input_ids"])], f["word_of"], f["n_words"], cfg.tc_decoding,
                                    default)
    golds = [[labels[t] for t in f["gold"]] for f in feats]
    return token_classification_metrics(golds, [[labels[t] for t in p] for p in preds], bio=bio)


def run(task, splits, labels: list[str], model_path: str, cfg, device, save_dir=None) -> dict[str, float]:
    return run_labelled("token_classification", task, splits, labels, model_path, cfg, device, save_dir,
                        partial(encode, decoding=cfg.tc_decoding), partial(evaluate, bio=task.options.get("bio", True)))


def input_words(row: dict, at: str) -> list[str]:
    """The words of an input row: a list, or one string split on whitespace."""
    value = row.get("tokens")
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not value or not all(isinstance(w, str) and w.strip() for w in value):
        raise PredictError(f"{at}: column 'tokens' is missing or empty, or holds an empty word; "
                           f"token classification needs {FAMILIES['token_classification'].input_columns}")
    return value


def predict_rows(model_dir, rows, where, cfg, device, settings, serving="reference") -> list[dict]:
    """Predicted tag of every word of every input row (``aveyb predict``)."""
    tokenizer, model = load_tokenizer(model_dir), load_predictor("token_classification", model_dir, device, serving)
    max_len = max_length(cfg, model, tokenizer)
    feats = []
    for number, row in enumerate(rows, 1):
        words = input_words(row, where(number, row))
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
