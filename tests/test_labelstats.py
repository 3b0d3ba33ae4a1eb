"""The label-statistics experiment block (convert.labelstats): bins computed as defined, one column per
(statistic, bin) alone and per (statistic, bin, length bucket), none shared, and the block joins the
linear stage's design matrix after the served columns."""

from __future__ import annotations

import numpy as np
import pytest

from convert.labelstats import LENGTH_EDGES, LabelStats, length_bucket, statistics
from resolverguard.encoding import NameEncoder
from resolverguard.ngrams import NgramHasher


def test_statistics_of_hand_made_labels() -> None:
    assert statistics("aaaa.com") == {
        "entropy": 0,
        "vowel_share": 10,
        "digits": 0,
        "consonant_run": 0,
        "vowel_run": 4,
        "digit_run": 0,
        "switches": 0,
        "distinct": 2,
        "hyphens": 0,
    }
    s = statistics("ab1c2-d3.net")  # the suffix is not read
    assert s["digits"] == 3 and s["digit_run"] == 1 and s["switches"] == 5 and s["hyphens"] == 1
    assert s["consonant_run"] == 1 and s["entropy"] == 12  # 8 distinct of 8: 3 bits, * 4
    assert statistics("xkqvbhtz.biz")["consonant_run"] == 8
    assert statistics("1234.cn")["vowel_share"] == 11  # no letters: a bin of its own


def test_length_buckets_cover_every_length_once() -> None:
    buckets = [length_bucket(n) for n in range(60)]
    assert buckets == sorted(buckets) and buckets[0] == 0 and buckets[-1] == len(LENGTH_EDGES)
    assert all(length_bucket(edge) == length_bucket(edge - 1) + 1 for edge in LENGTH_EDGES)


def test_no_two_statistics_or_buckets_share_a_column() -> None:
    """Column 0 is the length; statistic i owns one range: its bins alone, then per length bucket."""
    stats = LabelStats()
    span = LabelStats.SIZE * (1 + LabelStats.BUCKETS)
    labels = ["google.com", "xkq3vbh7tz.com", "a-b-c-d.de", "q" * 40 + ".ru", "1.cn", ".com"]
    for label in labels:
        bins, bucket = list(statistics(label).values()), length_bucket(len(label.split(".")[0]))
        cols = stats.columns(label)
        assert cols[0] == min(len(label.split(".")[0]), LabelStats.SIZE - 1)
        for i, value in enumerate(bins):
            base = LabelStats.SIZE + i * span
            assert cols[1 + 2 * i] == base + value
            assert cols[2 + 2 * i] == base + LabelStats.SIZE * (1 + bucket) + value
        assert max(cols) < stats.width and max(bins) < LabelStats.SIZE
    matrix = stats(labels)
    assert matrix.shape == (len(labels), stats.width)
    np.testing.assert_array_equal(np.asarray(matrix.sum(axis=1)).ravel(), 1 + 2 * len(LabelStats.NAMES))


def test_the_block_follows_the_served_columns_in_the_design() -> None:
    pytest.importorskip("sklearn")
    from convert.ngram import design

    hasher = NgramHasher(NameEncoder(), bits=10)
    texts = ["google.com", "xkq3vbh7tz.com"]
    plain = design(hasher, texts)
    both = design(hasher, texts, [LabelStats()])
    assert both.shape == (2, hasher.n_features + LabelStats().width)
    np.testing.assert_array_equal(both[:, : hasher.n_features].toarray(), plain.toarray())
