"""Extractive question answering.

Two heads (``qa_head``):

* ``start_end``: ``AutoModelForQuestionAnswering`` (start/end logits). Long contexts are cut
  into overlapping windows with the tokenizer's overflow + offsets (``doc_stride``); answers
  are decoded from the ``n_best`` starts x ends of every window (``max_answer_length``); for
  SQuAD v2 the empty answer wins when the null score (first token) beats the best span.
* ``in_span``: the paper's framework: a 2-label token classifier tags every context token
  inside/outside the answer; unanswerable questions have no inside tokens.

Scores: the paper's mean token-set F1 over context-token positions, and the official SQuAD
EM / F1 (v2 with no-answer) through torchmetrics.
"""

from __future__ import annotations

from functools import partial

import torch

from aveyb.evaluation.metrics import paper_qa_f1, squad_metrics
from aveyb.tasks.data import RowErrors
from aveyb.tasks.export import save_finetuned, task_settings
from aveyb.tasks.predict import input_text, load_predictor, max_length
from aveyb.tasks.training import (
    TaskError,
    end_token_id,
    load_model,
    load_tokenizer,
    pad_batch,
    predict_batches,
    resolve_max_length,
    train_loop,
)


def check_examples(examples: list[dict], where: str, v2: bool) -> None:
    """Every malformed example of a split, reported together (see :class:`RowErrors`)."""
    errors = RowErrors(where)
    for i, ex in enumerate(examples):
        problem = _example_problem(ex, v2)
        if problem:
            errors.add(ex.get("id", i), problem)
    errors.raise_if_any()


def _example_problem(ex: dict, v2: bool) -> str | None:
    """What is wrong with one QA example (None: nothing); normalises one-text-many-starts answers."""
    for key in ("context", "question"):
        v = ex.get(key)
        if not isinstance(v, str):
            return f"field {key!r} = {str(v)[:40]!r} is missing or not a string (allowed: a non-empty string)"
        if not v.strip():
            return f"field {key!r} is empty (allowed: a non-empty string)"
    ans = ex.get("answers")
    if not isinstance(ans, dict) or not isinstance(ans.get("text"), list) or not isinstance(ans.get("answer_start"),
                                                                                              list):
        return (f"field 'answers' = {str(ans)[:60]!r} (allowed: {{\"text\": [answer, ...], \"answer_start\": "
                "[char offset, ...]}}, empty lists for no answer)")
    if len(ans["text"]) == 1 and len(ans["answer_start"]) > 1:  # one entity, every occurrence (news_cloze)
        ex["answers"] = ans = {"text": list(ans["text"]) * len(ans["answer_start"]),
                               "answer_start": list(ans["answer_start"])}
    if len(ans["text"]) != len(ans["answer_start"]):
        return f"field 'answers' has {len(ans['text'])} texts but {len(ans['answer_start'])} starts"
    if not ans["text"] and not v2:
        return "has no answer (only SQuAD v2-style tasks allow that)"
    for text, start in zip(ans["text"], ans["answer_start"]):
        if not isinstance(text, str) or not text:
            return "field 'answers.text' holds an empty answer (allowed: a non-empty string)"
        if not isinstance(start, int) or ex["context"][start:start + len(text)] != text:
            return f"answer {text!r} not found in field 'context' at answer_start {start!r}"
    return None


def gold_spans(ex: dict) -> list[tuple[int, int]]:
    return [(s, s + len(t)) for t, s in zip(ex["answers"]["text"], ex["answers"]["answer_start"])]


def make_windows(tokenizer, question: str, context: str, max_length: int, stride: int, append_eos: bool):
    """Windows over (question, context): list of (ids, offsets, sequence_ids), EOS appended."""
    if not getattr(tokenizer, "is_fast", False):
        raise TaskError("question answering needs a fast tokenizer (offset mappings)")
    eos = end_token_id(tokenizer) if append_eos else None
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    # no pair template (byte-level BPE): a separator goes between question and context
    sep = None if specials else (tokenizer.sep_token_id if tokenizer.sep_token_id is not None else end_token_id(tokenizer))
    budget = max_length - (1 if eos is not None else 0) - (1 if sep is not None else 0)
    q_ids = tokenizer(question, add_special_tokens=False, verbose=False)["input_ids"]
    if len(q_ids) > budget // 2:  # keep at least half the window for the context
        q_enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
        question = question[: q_enc["offset_mapping"][budget // 2 - 1][1]]
        q_ids = q_ids[: budget // 2]
    room = budget - len(q_ids) - specials
    stride = max(0, min(stride, room // 2))
    enc = tokenizer(question, context, truncation="only_second", max_length=budget, stride=stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    out = []
    for w in range(len(enc["input_ids"])):
        ids = list(enc["input_ids"][w])
        offsets = [tuple(o) for o in enc["offset_mapping"][w]]
        seq = list(enc.sequence_ids(w))
        if sep is not None and 1 in seq:
            j = seq.index(1)
            ids, offsets, seq = ids[:j] + [sep] + ids[j:], offsets[:j] + [(0, 0)] + offsets[j:], seq[:j] + [None] + seq[j:]
        if eos is not None and not (ids and ids[-1] == eos and seq[-1] is None):
            ids, offsets, seq = ids + [eos], offsets + [(0, 0)], seq + [None]
        out.append((ids, offsets, seq))
    return out


def _span_tokens(offsets, seq, s: int, e: int) -> tuple[int, int] | None:
    """First/last context token of char span [s, e) if the window holds it whole."""
    ctx = [i for i, q in enumerate(seq) if q == 1]
    if not ctx or offsets[ctx[0]][0] > s or offsets[ctx[-1]][1] < e:
        return None
    start = next(i for i in ctx if offsets[i][1] > s)
    end = max(i for i in ctx if offsets[i][0] < e)
    return start, end


def encode(examples, tokenizer, max_length, cfg, head: str, train: bool) -> list[dict]:
    feats = []
    for n, ex in enumerate(examples):
        spans = gold_spans(ex)
        for ids, offsets, seq in make_windows(tokenizer, ex["question"], ex["context"], max_length, cfg.doc_stride,
                                              cfg.append_eos):
            f = {"input_ids": ids, "offsets": offsets, "seq": seq, "example": n}
            if head == "start_end":
                f["start_positions"], f["end_positions"] = 0, 0
                for s, e in spans:
                    tok = _span_tokens(offsets, seq, s, e)
                    if tok:
                        f["start_positions"], f["end_positions"] = tok
                        break
            else:
                f["labels"] = [
                    -100 if q != 1 else int(any(offsets[i][0] < e and offsets[i][1] > s for s, e in spans))
                    for i, q in enumerate(seq)
                ]
            feats.append(f)
    return feats


def _context_positions(tokenizer, context: str, char_spans: list[tuple[int, int]]) -> set[int]:
    offsets = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    return {i for i, (a, b) in enumerate(offsets) if b > a and any(a < e and b > s for s, e in char_spans)}


def decode_start_end(windows: list[dict], n_best: int, max_answer_length: int, v2: bool):
    """Best (char_start, char_end) over the windows of one example, or None (no answer)."""
    best, best_score, null = None, float("-inf"), float("inf")
    for w in windows:
        start, end, offsets, seq = w["start"], w["end"], w["offsets"], w["seq"]
        null = min(null, float(start[0] + end[0]))
        ctx = torch.tensor([q == 1 for q in seq])
        if not ctx.any():
            continue
        s_logits = start.masked_fill(~ctx, float("-inf"))
        e_logits = end.masked_fill(~ctx, float("-inf"))
        k = min(n_best, int(ctx.sum()))
        for s in s_logits.topk(k).indices.tolist():
            for e in e_logits.topk(k).indices.tolist():
                if e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(s_logits[s] + e_logits[e])
                if score > best_score:
                    best, best_score = (offsets[s][0], offsets[e][1]), score
    if v2 and (best is None or null > best_score):
        return None
    return best


def decode_in_span(windows: list[dict]) -> tuple[list[tuple[int, int]], tuple[int, int] | None]:
    """Inside-tagged context tokens (char spans, windows averaged) and the best contiguous run."""
    probs: dict[tuple[int, int], list[float]] = {}
    for w in windows:
        for i, q in enumerate(w["seq"]):
            if q == 1:
                probs.setdefault(tuple(w["offsets"][i]), []).append(float(w["p_inside"][i]))
    toks = sorted((span, sum(p) / len(p)) for span, p in probs.items())
    inside = [(span, p) for span, p in toks if p > 0.5]
    runs, current, last = [], [], None
    for k, (span, p) in enumerate(toks):
        if p > 0.5 and current and last == k - 1:
            current.append((span, p))
        elif p > 0.5:
            if current:
                runs.append(current)
            current = [(span, p)]
        last = k if p > 0.5 else last
    if current:
        runs.append(current)
    best = max(runs, key=lambda r: sum(p for _, p in r) / len(r), default=None)
    return [span for span, _ in inside], ((best[0][0][0], best[-1][0][1]) if best else None)


def evaluate(model, examples, feats, tokenizer, cfg, device, head, v2, desc) -> dict[str, float]:
    collate = partial(pad_batch, pad_id=tokenizer.pad_token_id)
    per_example: list[list[dict]] = [[] for _ in examples]
    if head == "start_end":
        output = lambda out: (out.start_logits.float().cpu(), out.end_logits.float().cpu())
    else:
        output = lambda out: out.logits.float().softmax(-1)[..., 1].cpu()
    for idx, res in predict_batches(model, feats, collate, cfg, device, desc=desc, output=output):
        for row, i in enumerate(idx):
            f = feats[i]
            n = len(f["input_ids"])
            w = {"offsets": f["offsets"], "seq": f["seq"]}
            if head == "start_end":
                w["start"], w["end"] = res[0][row, :n], res[1][row, :n]
            else:
                w["p_inside"] = res[row, :n].tolist()
            per_example[f["example"]].append(w)
    preds, refs, pred_pos, gold_pos = {}, {}, [], []
    for n, ex in enumerate(examples):
        qid = str(ex.get("id", n))
        if head == "start_end":
            span = decode_start_end(per_example[n], cfg.n_best, cfg.max_answer_length, v2)
            tagged = [span] if span else []
        else:
            tagged, span = decode_in_span(per_example[n])
        preds[qid] = ex["context"][span[0]:span[1]] if span else ""
        refs[qid] = list(ex["answers"]["text"])
        pred_pos.append(_context_positions(tokenizer, ex["context"], tagged) if tagged else set())
        gold_pos.append([_context_positions(tokenizer, ex["context"], [g]) for g in gold_spans(ex)])
    out = {"paper_f1": paper_qa_f1(pred_pos, gold_pos)}
    out.update(squad_metrics(preds, refs, v2=v2))
    return out


def run(task, splits, labels, model_path: str, cfg, device, save_dir=None) -> dict[str, float]:
    v2 = bool(task.options.get("v2"))
    for name in ("train", "validation", "test"):
        data = getattr(splits, name)
        if data is not None:
            check_examples(data, f"{task.name}/{name}", v2)
    tokenizer = load_tokenizer(model_path)
    head = cfg.qa_head
    if head == "start_end":
        model = load_model("question_answering", model_path)
    else:
        model = load_model("token_classification", model_path, num_labels=2, id2label={0: "O", 1: "ANSWER"},
                           label2id={"O": 0, "ANSWER": 1})
    max_len = resolve_max_length(cfg, model.config, tokenizer)
    train = encode(splits.train, tokenizer, max_len, cfg, head, train=True)
    keys = ("start_positions", "end_positions") if head == "start_end" else ("labels",)
    torch.manual_seed(cfg.seed)
    stats = train_loop(model, train, partial(pad_batch, pad_id=tokenizer.pad_token_id, label_keys=keys), cfg, device,
                       desc=f"{task.name} train")
    out = dict(stats)
    for name in ("validation", "test"):
        data = getattr(splits, name)
        if data is None or (name == "test" and not cfg.evaluate_test):
            continue
        feats = encode(data, tokenizer, max_len, cfg, head, train=False)
        for k, v in evaluate(model, data, feats, tokenizer, cfg, device, head, v2, f"{task.name} {name}").items():
            out[f"{name}/{k}"] = v
    if save_dir is not None:
        save_finetuned(model, tokenizer, save_dir, task_settings(task, cfg, max_len))
    return out


def predict_rows(model_dir, rows, where, cfg, device, settings, serving="reference") -> list[dict]:
    """The predicted answer span of every input row (``aveyb predict``): text and character offsets."""
    in_span = cfg.qa_head == "in_span"
    tokenizer = load_tokenizer(model_dir)
    model = load_predictor("token_classification" if in_span else "question_answering", model_dir, device, serving)
    max_len = max_length(cfg, model, tokenizer)
    examples, feats = [], []
    for number, row in enumerate(rows, 1):
        at = where(number, row)
        question, context = (input_text(row, key, at, "question_answering") for key in ("question", "context"))
        examples.append(context)
        for ids, offsets, seq in make_windows(tokenizer, question, context, max_len, cfg.doc_stride,
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
            span = decode_in_span(ws)[1]
        else:
            span = decode_start_end(ws, cfg.n_best, cfg.max_answer_length, allow_empty)
        out.append({"answer": context[span[0]:span[1]], "start": span[0], "end": span[1]} if span
                   else {"answer": "", "start": None, "end": None})
    return out
