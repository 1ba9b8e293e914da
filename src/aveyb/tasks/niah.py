"""Needle-in-a-haystack generator (PROTOCOL.md, "Needle-in-a-haystack").

Haystack: random words from a fixed vocabulary of about 130 common words. Needles: a random
8-12-character alphanumeric "word" (``niah1``) or a 7-digit number (``niah2``). An example
holds the target needle plus 0 or 1 distractor needles, placed at least 5% of the length
apart; the question asks for the n-th special word/number; the answer is that needle's span.
Train: 10,000 examples (0/1 distractor with probability 0.2/0.8); test: 1,000 (0.4/0.6);
seed 11; the length (in words) is a parameter.
"""

from __future__ import annotations

import itertools
import random
import string

HAYSTACK_WORDS = ["the", "be", "to", "of", "and", "a", "in", "that", "have", "it", "for", "not", "on", "with", "he", "as", "you", "do", "at", "this", "but", "his", "by", "from", "they", "we", "say", "her", "she", "or", "an", "will", "my", "one", "all", "would", "there", "their", "what", "so", "up", "out", "if", "about", "who", "get", "which", "go", "me", "when", "make", "can", "like", "time", "no", "just", "him", "know", "take", "people", "into", "year", "your", "good", "some", "could", "them", "see", "other", "than", "then", "now", "look", "only", "come", "its", "over", "think", "also", "back", "after", "use", "two", "how", "our", "work", "first", "well", "way", "even", "new", "want", "because", "any", "these", "give", "day", "most", "us", "day", "man", "find", "here", "thing", "many", "tell", "very", "great", "world", "still", "own", "through", "last", "long", "little", "house", "child", "water", "small", "room", "place", "door", "hand", "light", "river", "tree", "stone", "city", "road", "morning", "evening", "garden", "table", "window"]
HAYSTACK_WORDS = tuple(dict.fromkeys(HAYSTACK_WORDS))  # ~130 unique common words

ORDINALS = ("first", "second", "third", "fourth", "fifth")
KINDS = {"niah1": "word", "niah2": "number"}
TRAIN_DISTRACTOR_P = (0.2, 0.8)  # P(0 distractors), P(1 distractor)
TEST_DISTRACTOR_P = (0.4, 0.6)


def make_needle(kind: str, rng: random.Random) -> str:
    if kind == "niah1":
        alphabet = string.ascii_lowercase + string.digits
        while True:
            word = "".join(rng.choice(alphabet) for _ in range(rng.randint(8, 12)))
            # an alphanumeric word: at least one letter and one digit, so it is never a haystack word
            if any(c.isdigit() for c in word) and any(c.isalpha() for c in word):
                return word
    if kind == "niah2":
        return str(rng.randint(1_000_000, 9_999_999))
    raise ValueError(f"unknown needle-in-a-haystack task {kind!r}; choose one of {sorted(KINDS)}")


def _positions(n_needles: int, length: int, rng: random.Random) -> list[int]:
    """``n_needles`` word positions at least 5% of ``length`` apart (and >= 1 word)."""
    gap = max(1, round(0.05 * length))
    if (n_needles - 1) * gap >= length:
        raise ValueError(f"a haystack of {length} words cannot hold {n_needles} needles 5% apart")
    while True:
        pos = sorted(rng.sample(range(length), n_needles))
        if all(b - a >= gap for a, b in itertools.pairwise(pos)):
            return pos


def generate_example(kind: str, length: int, n_distractors: int, rng: random.Random, idx: int = 0) -> dict:
    """One QA example: ``length`` words with ``1 + n_distractors`` needles; asks for a random one."""
    if length < 2:
        raise ValueError(f"needle-in-a-haystack length must be >= 2 words, got {length}")
    n = 1 + n_distractors
    words = [rng.choice(HAYSTACK_WORDS) for _ in range(length)]
    needles = []
    while len(needles) < n:
        needle = make_needle(kind, rng)
        if needle not in needles:
            needles.append(needle)
    for p, needle in zip(_positions(n, length, rng), needles):
        words[p] = needle
    target = rng.randrange(n)
    context = " ".join(words)
    # character offset of the target: needles are unique words, so find the (target+1)-th needle
    order = [w for w in words if w in needles]
    answer = order[target]
    start = 0
    for w in words:
        if w == answer:
            break
        start += len(w) + 1
    assert context[start:start + len(answer)] == answer
    question = f"What is the {ORDINALS[target]} special {KINDS[kind]} in this passage?"
    return {"id": f"{kind}-{length}-{idx}", "context": context, "question": question,
            "answers": {"text": [answer], "answer_start": [start]}}


def generate(kind: str, length: int, n_examples: int, seed: int = 11, test: bool = False) -> list[dict]:
    """``n_examples`` examples; distractor counts follow the train (0.2/0.8) or test (0.4/0.6) mix."""
    rng = random.Random(f"{kind}-{length}-{seed}-{'test' if test else 'train'}")
    p0 = (TEST_DISTRACTOR_P if test else TRAIN_DISTRACTOR_P)[0]
    return [generate_example(kind, length, 0 if rng.random() < p0 else 1, rng, i) for i in range(n_examples)]
