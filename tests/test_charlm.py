"""The benign character language model (convert/charlm.py) on names this test makes: a proper
distribution, deterministic fit and scores, and random strings scored above word-like labels."""

from __future__ import annotations

import math
import random
import string

import numpy as np

from convert.charlm import BOS, CharLM

WORDS = ["shop", "news", "mail", "cloud", "green", "river", "blue", "city", "home", "garden", "book", "travel"]


def labels(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(WORDS) + rng.choice(["", "s", "online", "24", rng.choice(WORDS)]) for _ in range(n)]


def next_char_logprob(lm: CharLM, history: str, char: str) -> float:
    """log P(char | history) through the same backoff walk as `CharLM.logprob`."""
    padded = (BOS * (lm.order - 1) + history)[-(lm.order - 1) :] + char
    total = 0.0
    for k in range(lm.order, 0, -1):
        gram = padded[-k:]
        if k > 1 and gram[0] == BOS and gram[1] == BOS:
            continue
        if gram in lm.logp:
            return total + lm.logp[gram]
        total += lm.backoff.get(gram[:-1], 0.0)
    return total + lm.uniform


def test_next_character_distribution_sums_to_one() -> None:
    lm = CharLM(4).fit(labels(3000, 1))
    for history in ("", "sh", "gree", "qzx", "cloud"):
        mass = sum(math.exp(next_char_logprob(lm, history, c)) for c in lm.alphabet)
        assert abs(mass - 1.0) < 1e-9, history


def test_fit_and_scores_are_deterministic() -> None:
    names = labels(2000, 2)
    a, b = CharLM(5).fit(names), CharLM(5).fit(list(names))
    assert a.logp == b.logp and a.backoff == b.backoff
    probe = ["greenshop", "x7qk2zpv", "mail24", ""]
    for variant, values in a.scores(probe).items():
        np.testing.assert_array_equal(values, b.scores(probe)[variant])


def test_random_strings_score_above_word_labels() -> None:
    lm = CharLM(5).fit(labels(3000, 3))
    rng = random.Random(4)
    randoms = ["".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(14)) for _ in range(50)]
    words = labels(50, 5)  # same generator, other draws: mostly names never fitted on
    for variant in ("nll", "llr", "llr_sqrt", "llr_class"):
        assert lm.scores(randoms)[variant].min() > lm.scores(words)[variant].max(), variant
