"""Metric values against hand-computed ones (PROTOCOL.md's paper and standard metrics)."""

import math

import pytest

from aveyb.evaluation.metrics import (
    classification_metrics,
    paper_qa_f1,
    retrieval_metrics,
    sentence_macro_f1,
    squad_metrics,
    token_classification_metrics,
    token_set_f1,
)


def test_classification_by_hand():
    m = classification_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"], positive_label="b")
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(0.8)  # b: tp 2, fp 1, fn 0
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(1.0)
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)  # a: tp 1, fn 1 -> 2/3


def test_classification_errors():
    with pytest.raises(ValueError, match="2 gold labels but 1"):
        classification_metrics(["a", "b"], ["a"], ["a", "b"])


def test_sentence_macro_f1_by_hand():
    # O: tp 2, fp 1 -> 0.8; B-PER: 1.0; I-PER: missed -> 0
    assert sentence_macro_f1(["O", "B-PER", "I-PER", "O"], ["O", "B-PER", "O", "O"]) == pytest.approx(0.6)
    assert sentence_macro_f1(["O", "O"], ["O", "O"]) == 1.0


def test_token_classification_by_hand():
    gold = [["O", "B-PER", "I-PER", "O"], ["B-LOC", "O"]]
    pred = [["O", "B-PER", "O", "O"], ["B-LOC", "O"]]
    m = token_classification_metrics(gold, pred, bio=True)
    assert m["paper_macro_f1"] == pytest.approx((0.6 + 1.0) / 2)
    assert m["token_accuracy"] == pytest.approx(5 / 6)
    # seqeval entities: gold {PER(1-2), LOC}, pred {PER(1-1), LOC} -> P = R = F1 = 1/2
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5) and m["f1"] == pytest.approx(0.5)
    assert "f1" not in token_classification_metrics(gold, pred, bio=False)


def test_token_set_f1_by_hand():
    assert token_set_f1({1, 2, 3}, {2, 3, 4, 5}) == pytest.approx(4 / 7)
    assert token_set_f1(set(), set()) == 1.0
    assert token_set_f1(set(), {1}) == 0.0 and token_set_f1({1}, set()) == 0.0
    # best gold per example, then the mean
    assert paper_qa_f1([{1, 2}, set()], [[{5}, {1, 2}], []]) == pytest.approx(1.0)
    assert paper_qa_f1([{1, 2}], [[{2}]]) == pytest.approx(2 / 3)


def test_squad_v1_by_hand():
    m = squad_metrics({"q1": "the cat", "q2": "a dog sat"}, {"q1": ["The cat!"], "q2": ["the dog"]})
    assert m["exact_match"] == pytest.approx(50.0)
    assert m["squad_f1"] == pytest.approx((100 + 200 / 3) / 2)  # "dog sat" vs "dog": P 1/2, R 1


def test_squad_v2_no_answer_like_the_official_script():
    preds = {"q1": "the cat", "q2": "a dog sat", "q3": "", "q4": "something"}
    refs = {"q1": ["The cat!"], "q2": ["the dog"], "q3": [], "q4": []}
    m = squad_metrics(preds, refs, v2=True)
    assert m["exact_match"] == pytest.approx(50.0)
    assert m["squad_f1"] == pytest.approx((100 + 200 / 3 + 100 + 0) / 4)
    assert m["HasAns_exact"] == pytest.approx(50.0) and m["HasAns_f1"] == pytest.approx((100 + 200 / 3) / 2)
    assert m["NoAns_exact"] == pytest.approx(50.0)
    # as in the official script, a prediction that normalises to "" counts as no answer
    assert squad_metrics({"q3": "The."}, {"q3": []}, v2=True)["exact_match"] == 100.0
    # an answerable question answered with nothing scores 0
    assert squad_metrics({"q1": ""}, {"q1": ["cat"]}, v2=True)["squad_f1"] == 0.0
    with pytest.raises(ValueError, match="without answers"):
        squad_metrics({"q3": ""}, {"q3": []}, v2=False)


def test_retrieval_by_hand():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 1}}
    run = {"q1": {"d0": 0.9, "d1": 0.8}, "q2": {"d2": 0.9, "d4": 0.8, "d3": 0.7}}
    m = retrieval_metrics(qrels, run)
    ndcg1 = 1 / math.log2(3)
    ndcg2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"] == pytest.approx((ndcg1 + ndcg2) / 2, abs=1e-4)
    assert m["mrr@10"] == pytest.approx(0.75)
    assert m["recall@1"] == pytest.approx(0.25)
    assert m["recall@10"] == pytest.approx(1.0) and m["recall@100"] == pytest.approx(1.0)


def test_retrieval_missing_query_counts_zero_and_mrr_is_cut_at_10():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    run = {"q1": {f"x{i}": 1 - i / 100 for i in range(10)} | {"d1": 0.5}}  # d1 at rank 11
    m = retrieval_metrics(qrels, run)
    assert m["mrr@10"] == 0.0 and m["recall@100"] == pytest.approx(0.5)
