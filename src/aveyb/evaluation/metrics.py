"""Metrics: the paper's framework (EncodEval) and the standard ones (PROTOCOL.md, "Metrics").

| family | paper                                               | standard                                 |
|--------|-----------------------------------------------------|------------------------------------------|
| SC     | accuracy                                            | accuracy, F1 of the positive class       |
| TC     | mean per-sentence macro-F1 over tags (O included)   | entity micro P/R/F1 (seqeval, CoNLL)     |
| QA     | mean token-set F1 of predicted vs gold positions    | SQuAD EM/F1 (torchmetrics; v2 no-answer) |
| IR     | nDCG@10 with the corpus cut to judged documents     | nDCG@10, MRR@10, Recall@100 (pytrec_eval)|

Values are fractions in [0, 1] except the SQuAD ones, which are in [0, 100] like the
official script. seqeval, torchmetrics and pytrec_eval are imported lazily.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


# ---- sequence classification ----------------------------------------------------------------
def _class_counts(golds, preds, label) -> tuple[int, int, int]:
    """True positives, false positives and false negatives of ``label`` over aligned sequences."""
    tp = sum(g == label and p == label for g, p in zip(golds, preds))
    fp = sum(g != label and p == label for g, p in zip(golds, preds))
    fn = sum(g == label and p != label for g, p in zip(golds, preds))
    return tp, fp, fn


def _f1_from_counts(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0


def classification_metrics(golds: Sequence[str], preds: Sequence[str], labels: Sequence[str],
                           positive_label: str | None = None) -> dict[str, float]:
    """accuracy, macro-F1 over ``labels`` and, with ``positive_label``, P/R/F1 of that class."""
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} gold labels but {len(preds)} predictions")
    if not golds:
        raise ValueError("no examples to score")
    out = {"accuracy": sum(g == p for g, p in zip(golds, preds)) / len(golds)}
    f1s = []
    for lab in labels:
        tp, fp, fn = _class_counts(golds, preds, lab)
        f1s.append(_f1_from_counts(tp, fp, fn))
        if lab == positive_label:
            out["precision"] = tp / (tp + fp) if tp + fp else 0.0
            out["recall"] = tp / (tp + fn) if tp + fn else 0.0
            out["f1"] = f1s[-1]
    out["macro_f1"] = sum(f1s) / len(f1s)
    return out


# ---- token classification --------------------------------------------------------------------
def sentence_macro_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Macro-F1 over the tags present (gold or predicted) in one sentence, O included."""
    tags = sorted(set(gold) | set(pred))
    scores = []
    for t in tags:
        tp, fp, fn = _class_counts(gold, pred, t)
        scores.append(_f1_from_counts(tp, fp, fn))
    return sum(scores) / len(scores) if scores else 1.0


def token_classification_metrics(golds: Sequence[Sequence[str]], preds: Sequence[Sequence[str]],
                                 bio: bool = True) -> dict[str, float]:
    """``paper_macro_f1`` (mean per-sentence macro-F1), ``token_accuracy`` and, for BIO tag sets,
    seqeval's entity-level micro ``precision``/``recall``/``f1`` (CoNLL evaluation, default mode)."""
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} gold sentences but {len(preds)} predicted")
    for i, (g, p) in enumerate(zip(golds, preds)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
    if not golds:
        raise ValueError("no sentences to score")
    n_tok = sum(len(g) for g in golds)
    out = {
        "paper_macro_f1": sum(sentence_macro_f1(g, p) for g, p in zip(golds, preds)) / len(golds),
        "token_accuracy": sum(a == b for g, p in zip(golds, preds) for a, b in zip(g, p)) / max(1, n_tok),
    }
    if bio:
        from seqeval.metrics import f1_score, precision_score, recall_score

        golds_l, preds_l = [list(g) for g in golds], [list(p) for p in preds]
        out["precision"] = float(precision_score(golds_l, preds_l, zero_division=0))
        out["recall"] = float(recall_score(golds_l, preds_l, zero_division=0))
        out["f1"] = float(f1_score(golds_l, preds_l, zero_division=0))
    return out


# ---- question answering -------------------------------------------------------------------------
def token_set_f1(pred: Iterable[int], gold: Iterable[int]) -> float:
    """F1 between two sets of token positions; two empty sets (no answer, predicted so) give 1."""
    p, g = set(pred), set(gold)
    if not p and not g:
        return 1.0
    if not p or not g:
        return 0.0
    common = len(p & g)
    return 2 * common / (len(p) + len(g))


def paper_qa_f1(pred_positions: Sequence[set[int]], gold_positions: Sequence[Sequence[set[int]]]) -> float:
    """Mean over examples of the best token-set F1 against any gold span (paper's QA metric)."""
    if not pred_positions:
        raise ValueError("no QA examples to score")
    total = 0.0
    for pred, golds in zip(pred_positions, gold_positions):
        golds = list(golds) or [set()]
        total += max(token_set_f1(pred, g) for g in golds)
    return total / len(pred_positions)


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    import re
    import string

    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_metrics(predictions: dict[str, str], references: dict[str, list[str]], v2: bool = False) -> dict[str, float]:
    """Official SQuAD EM / F1 (0-100) through torchmetrics' SQuAD metric.

    ``references[id]`` lists the gold answer texts; an empty list means unanswerable (v2). As in
    the official v2 script, an unanswerable question scores 100 when the prediction is empty and
    0 otherwise, and answerable / unanswerable subsets are reported as ``HasAns_*`` / ``NoAns_*``.
    """
    from torchmetrics.functional.text import squad

    missing = set(references) - set(predictions)
    if missing:
        raise ValueError(f"no prediction for question(s) {sorted(missing)[:5]}")
    has = [q for q in references if references[q]]
    no = [q for q in references if not references[q]]
    if no and not v2:
        raise ValueError(f"questions without answers {no[:5]} in a SQuAD v1 evaluation")
    out: dict[str, float] = {}
    has_em = has_f1 = 0.0
    if has:
        res = squad([{"prediction_text": predictions[q], "id": q} for q in has],
                    [{"answers": {"text": references[q], "answer_start": [0] * len(references[q])}, "id": q}
                     for q in has])
        has_em, has_f1 = float(res["exact_match"]), float(res["f1"])
    # official v2: an unanswerable question's gold is "", compared after normalisation
    no_score = 100.0 * sum(not normalize_answer(predictions[q]) for q in no) / len(no) if no else 0.0
    n = len(has) + len(no)
    out["exact_match"] = (has_em * len(has) + no_score * len(no)) / n
    out["squad_f1"] = (has_f1 * len(has) + no_score * len(no)) / n
    if v2:
        if has:
            out["HasAns_exact"], out["HasAns_f1"] = has_em, has_f1
        if no:
            out["NoAns_exact"] = out["NoAns_f1"] = no_score
    return out


# ---- retrieval --------------------------------------------------------------------------------------
IR_MEASURES = {"ndcg_cut.10", "recall.1", "recall.10", "recall.100"}


def retrieval_metrics(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, float]:
    """nDCG@10, MRR@10, Recall@1/10/100 averaged over the judged queries (pytrec_eval, trec_eval
    definitions). Queries missing from ``run`` count as 0, as in BEIR."""
    import pytrec_eval

    if not qrels:
        raise ValueError("no judged queries to score")
    run = {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items()}
    top10 = {q: dict(sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))[:10]) for q, docs in run.items()}
    per_q = pytrec_eval.RelevanceEvaluator(qrels, IR_MEASURES).evaluate(run)
    per_q_rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    n = len(qrels)

    def mean(results, key):
        return sum(results.get(q, {}).get(key, 0.0) for q in qrels) / n

    return {
        "ndcg@10": mean(per_q, "ndcg_cut_10"),
        "mrr@10": mean(per_q_rr, "recip_rank"),
        "recall@1": mean(per_q, "recall_1"),
        "recall@10": mean(per_q, "recall_10"),
        "recall@100": mean(per_q, "recall_100"),
    }
