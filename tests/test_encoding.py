from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolverguard.encoding import DEFAULT_CHARSET, PAD, UNKNOWN, NameEncoder

enc = NameEncoder()


def test_left_padding_and_indices() -> None:
    row = NameEncoder(maxlen=5).encode(["ab"])[0]
    assert row.tolist() == [PAD, PAD, PAD, 2, 3]


def test_unknown_characters_and_truncation() -> None:
    small = NameEncoder(maxlen=4)
    assert small.encode(["a`é"])[0].tolist() == [PAD, 2, UNKNOWN, UNKNOWN]
    assert small.encode(["abcdefgh"])[0].tolist() == [2, 3, 4, 5]  # keeps the first maxlen characters


def test_vocab_and_validation() -> None:
    assert enc.vocab_size == len(DEFAULT_CHARSET) + 2
    with pytest.raises(ValueError):
        NameEncoder(charset="aa")
    with pytest.raises(ValueError):
        NameEncoder(maxlen=0)


@given(st.lists(st.text(max_size=80), max_size=20))
def test_rows_in_range_and_one_by_one_equals_batch(labels: list[str]) -> None:
    batch = enc.encode(labels)
    assert batch.shape == (len(labels), enc.maxlen) and batch.dtype == np.int32
    assert batch.min(initial=0) >= 0 and batch.max(initial=0) < enc.vocab_size
    for label, row in zip(labels, batch, strict=True):
        single = np.zeros(enc.maxlen, dtype=np.int32)
        single[:] = 7  # stale contents of a reused row must be overwritten
        enc.encode_one(label, single)
        assert (single == row).all()
        assert int((row != PAD).sum()) == min(len(label.encode("ascii", "replace")), enc.maxlen)
