"""Binned randomness statistics of the label, crossed with its length (an experiment, `--stats`; not served).

The linear stage's dense features (length, entropy, digit / vowel / hyphen shares) enter it linearly,
but what separates a random label from a human one depends on its length: a 7-letter label with
entropy 2.8 is ordinary, a 20-letter one is not. Each statistic here is binned and one-hot encoded,
alone and crossed with a length bucket, so a linear model can learn that curve per length. None of them
names a character: like the shape n-grams, they are what one random-string family shares with another
it never saw (the hope this experiment measures: models/REPORT.md, leave-family-out recall).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

VOWELS = frozenset("aeiou")
DIGITS = frozenset("0123456789")
LENGTH_EDGES = (6, 8, 10, 12, 15, 19, 25)  # bucket b holds lengths below LENGTH_EDGES[b]


def length_bucket(n: int) -> int:
    return next((b for b, edge in enumerate(LENGTH_EDGES) if n < edge), len(LENGTH_EDGES))


def longest_run(label: str, member: frozenset[str] | None) -> int:
    """The longest run of characters in `member` (None: consonants, the letters not in VOWELS)."""
    best = run = 0
    for c in label:
        inside = (c.isalpha() and c not in VOWELS) if member is None else c in member
        run = run + 1 if inside else 0
        best = max(best, run)
    return best


def switches(label: str) -> int:
    kinds = [c.isdigit() for c in label if c.isalnum()]
    return sum(a != b for a, b in zip(kinds, kinds[1:], strict=False))


def statistics(label: str) -> dict[str, int]:
    """Each statistic of the label (before the first dot, hyphens kept) as a small integer bin."""
    flat = label.split(".", 1)[0]
    n = len(flat)
    counts = Counter(flat)
    entropy = -sum(k / n * math.log2(k / n) for k in counts.values()) if n else 0.0
    letters = sum(c.isalpha() for c in flat)
    vowels = sum(c in VOWELS for c in flat)
    return {
        "entropy": min(int(entropy * 4), 20),
        "vowel_share": min(int(10 * vowels / letters), 10) if letters else 11,
        "digits": min(sum(c in DIGITS for c in flat), 4),
        "consonant_run": min(longest_run(flat, None), 8),
        "vowel_run": min(longest_run(flat, VOWELS), 4),
        "digit_run": min(longest_run(flat, DIGITS), 6),
        "switches": min(switches(flat), 5),
        "distinct": min(int(10 * len(counts) / n), 10) if n else 0,
        "hyphens": min(flat.count("-"), 3),
    }


class LabelStats:
    """texts -> sparse one-hot rows: every statistic's bin, alone and crossed with the length bucket,
    and the length itself (up to 32)."""

    NAMES = tuple(statistics("x"))
    SIZE = 32  # bins per statistic, more than any statistic has
    BUCKETS = len(LENGTH_EDGES) + 1

    @property
    def width(self) -> int:
        return self.SIZE + len(self.NAMES) * self.SIZE * (1 + self.BUCKETS)

    def columns(self, label: str) -> list[int]:
        flat = label.split(".", 1)[0]
        bucket = length_bucket(len(flat))
        cols = [min(len(flat), self.SIZE - 1)]
        for i, value in enumerate(statistics(label).values()):
            base = self.SIZE + i * self.SIZE * (1 + self.BUCKETS)
            cols.append(base + value)
            cols.append(base + self.SIZE * (1 + bucket) + value)
        return cols

    def __call__(self, texts: list[str]) -> Any:
        from scipy import sparse

        cols = np.array([self.columns(t) for t in texts], dtype=np.int64).reshape(len(texts), -1)
        n, k = cols.shape
        rows = np.repeat(np.arange(n), k)
        data = np.ones(n * k, dtype=np.float32)
        return sparse.csr_matrix((data, (rows, cols.reshape(-1))), shape=(n, self.width))
