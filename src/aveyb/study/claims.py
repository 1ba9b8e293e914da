"""The paper's findings (SPEC.md section 9) as testable comparisons.

A claim is a list of comparisons "variant A scores above variant B" on a set of task
families. Each comparison is decided on the seeds: the difference of the mean score over
the claim's tasks, with a 95% bootstrap interval. A claim is *supported* when every
comparison's interval lies above zero, *contradicted* when any lies below zero, and
*inconclusive at this scale* otherwise: an interval that includes zero is never a finding.
"""

from __future__ import annotations

from dataclasses import dataclass

REFERENCE = "@reference"
OTHERS = "@others"


@dataclass(frozen=True)
class Claim:
    text: str
    better: tuple          # variant names (or REFERENCE)
    worse: tuple           # variant names (or OTHERS: every variant but the better ones and pretrained rows)
    families: tuple = ()   # task families the claim is about; empty: every task of the study

    def comparisons(self, reference: str, trained: list[str]) -> list[tuple[str, str]]:
        better = [reference if b == REFERENCE else b for b in self.better]
        worse = [w for w in trained if w not in better] if self.worse == (OTHERS,) else list(self.worse)
        return [(b, w) for b in better for w in worse if b != w]


ARRANGEMENTS = ("interleaved_static_first", "interleaved_dynamic_first", "static_only", "dynamic_only", "coupled")
NORMS = ("sum", "softmax", "none", "signed_sum")

CLAIMS: dict[str, Claim] = {
    "static_first_interleaving_is_best": Claim(
        "Interleaved static/dynamic layers with a static front layer are the best arrangement",
        ("interleaved_static_first",), tuple(a for a in ARRANGEMENTS if a != "interleaved_static_first")),
    "dynamic_only_is_worst": Claim(
        "A purely dynamic stack is the worst arrangement",
        tuple(a for a in ARRANGEMENTS if a != "dynamic_only"), ("dynamic_only",)),
    "decoupled_beats_coupled": Claim(
        "Decoupled static and dynamic layers beat the coupled design",
        ("interleaved_static_first",), ("coupled",)),
    "divide_by_sum_is_best": Claim(
        "Divide-by-sum normalisation beats softmax, no normalisation and the signed sum",
        ("sum",), tuple(n for n in NORMS if n != "sum")),
    "masking_20_to_30_is_best": Claim(
        "Masking 20-30% of tokens is best (against 10% and 40%)",
        ("mask20", "mask30"), ("mask10", "mask40")),
    "default_sequence_length_is_best": Claim(
        "The default training length N (2,048 at base) is the best of those tried, at a fixed token budget",
        (REFERENCE,), (OTHERS,)),
    "default_split_size_and_k_are_best": Claim(
        "The default split size S and retrieved splits k (S=256, k=3 at base) are the best of those tried",
        (REFERENCE,), (OTHERS,)),
    "bidirectional_ranking_hurts_qa_and_ir": Claim(
        "Ranking in both directions hurts extractive QA and retrieval (look-ahead interference)",
        ("left",), ("both",), ("question_answering", "retrieval")),
    "avey_b_beats_the_transformers": Claim(
        "Avey-B outperforms the Transformer encoders trained under the same recipe",
        ("avey-b",), ("bert", "roberta", "modernbert", "neobert")),
}
