"""The linear n-gram stage: serving (numpy only) scores exactly what training fit, whatever the batch.

Training builds a sparse matrix from `NgramHasher` and fits it with scikit-learn; serving sums the
saved weights at the same indices. If the two drifted, every threshold calibrated on training-side
scores would be wrong at serving; these tests hold them together on names the test makes.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

import numpy as np
import pytest

from resolverguard.encoding import NameEncoder
from resolverguard.errors import ModelError
from resolverguard.ngrams import DENSE, LinearWeights, NgramHasher

WORDS = ["shop", "news", "mail", "cloud", "green", "river", "blue", "city", "home", "garden", "book", "travel"]


def names(seed: int) -> tuple[list[str], np.ndarray]:
    rng = random.Random(seed)
    benign = [f"{rng.choice(WORDS)}{rng.choice(WORDS)}.{rng.choice(['com', 'de', 'co.uk'])}" for _ in range(300)]
    alphabet = string.ascii_lowercase + string.digits
    dga = ["".join(rng.choice(alphabet) for _ in range(rng.randint(8, 30))) + ".net" for _ in range(300)]
    return benign + dga, np.array([0] * len(benign) + [1] * len(dga))


def test_batch_composition_does_not_change_a_score() -> None:
    """Serving trims the padding left of a batch's longest name: a name must score the same alone,
    beside a long name, and beside an empty one."""
    stage = LinearWeights(
        NgramHasher(bits=12), np.linspace(-1, 1, 1 << 12, dtype=np.float32), np.ones(len(DENSE), dtype=np.float32), 0.5
    )
    texts = ["google.com", "x" * 60 + ".ddns.net", "", "a.b", "mein-verein-1906.de", "UPPER.COM", "ünïcode.de"]
    together = stage.logits(texts)
    alone = np.array([stage.logits([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-9)
    assert len(set(np.round(together, 6).tolist())) == len(texts)  # the weights do tell these apart


def test_serving_scores_what_training_fit(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from convert.ngram import design, fit_linear

    hasher = NgramHasher(NameEncoder(), bits=14)
    texts, y = names(1)
    x = design(hasher, texts)
    assert x.shape == (len(texts), hasher.n_features)
    coef, bias = fit_linear(x, y, np.ones(len(y), dtype=np.float32), c=1.0, seed=1)
    n_hash = 1 << hasher.bits
    stored = coef[:n_hash].astype(np.float16).astype(np.float32)
    LinearWeights(hasher, stored, coef[n_hash:].astype(np.float32), bias).save(tmp_path / "linear.npz")
    loaded = LinearWeights.load(tmp_path / "linear.npz")

    test, y_test = names(2)  # names the fit never saw
    expected = design(hasher, test) @ np.concatenate([stored, coef[n_hash:]]) + bias
    np.testing.assert_allclose(loaded.logits(test), expected, rtol=0, atol=1e-4)
    scores = loaded.score(test)
    assert scores.dtype == np.float32
    assert scores[y_test == 1].min() > scores[y_test == 0].max()  # random strings above word pairs


def test_a_file_that_is_not_a_linear_stage_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, format=np.array("something-else"))
    with pytest.raises(ModelError, match="not a resolverguard linear stage"):
        LinearWeights.load(bad)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="cannot read"):
        LinearWeights.load(tmp_path / "junk.npz")
    stage = LinearWeights(
        NgramHasher(bits=10), np.zeros(1 << 10, dtype=np.float32), np.zeros(len(DENSE), dtype=np.float32), 0.0
    )
    stage.save(tmp_path / "ok.npz")
    with np.load(tmp_path / "ok.npz") as z:
        parts = dict(z)
    parts["weights"] = parts["weights"][:-1]
    np.savez(tmp_path / "short.npz", **parts)
    with pytest.raises(ModelError, match="shapes"):
        LinearWeights.load(tmp_path / "short.npz")


def test_cascade_hands_the_cnn_only_names_above_the_linear_gate() -> None:
    """The cascade's first stage passes every name under its own FPR-q threshold (calibrated on the
    calibration benign names only); the rest keep the CNN's score, and the shares say how many."""
    from convert.data import BENIGN, BENIGN_DNS_ONLY
    from convert.ensemble import FLOOR, combined, logit
    from convert.evaluate import Scores
    from convert.splits import TEST, VAL

    rng = np.random.default_rng(3)
    n_benign, n_dga = 2000, 200
    family = np.array([BENIGN] * n_benign + ["held"] * n_dga, dtype="<U20")
    family[:400] = BENIGN_DNS_ONLY
    y = np.array([0] * n_benign + [1] * n_dga, dtype=np.int8)
    part = np.where(y == 0, VAL, TEST).astype(np.int8)
    labels = np.array([f"name{i}.com" for i in range(len(y))])
    linear = rng.random(len(y)).astype(np.float32)
    linear[y == 1] = np.linspace(0.0, 1.0, n_dga, dtype=np.float32)  # half of the DGA names under any gate
    cnn = rng.random(len(y)).astype(np.float32)
    a = Scores(labels, y, family, part, cnn, ("held",))
    b = Scores(labels, y, family, part, linear, ("held",))

    value, facts = combined("cascade-0.1", a, b)
    reach = linear >= facts["gate"]
    assert np.all(value[~reach] == FLOOR)
    np.testing.assert_allclose(value[reach], np.log(cnn[reach] / (1 - cnn[reach])), rtol=1e-5)
    assert facts["reach_calibration_benign"] == pytest.approx(0.1, abs=0.01)
    assert facts["reach_unseen_dga"] == pytest.approx(float(reach[y == 1].mean()))
    assert facts["reach_long_tail"] == pytest.approx(float(reach[a.long_tail()].mean()))
    assert 100 < a.long_tail().sum() < 300
    mean, _ = combined("mean", a, b)
    assert mean[0] == pytest.approx((np.log(cnn[0] / (1 - cnn[0])) + np.log(linear[0] / (1 - linear[0]))) / 2, rel=1e-5)
    plain, _ = combined("cascade-mean-0.1", a, b)
    weighted, wfacts = combined("cascade-wmean-0.1-0.8", a, b)
    assert wfacts["linear_weight"] == 0.8 and wfacts["gate"] == facts["gate"]
    assert np.array_equal(combined("cascade-wmean-0.1-0.5", a, b)[0], plain)  # 0.5: the shipped mean itself
    la, lb = logit(a), logit(b)  # (clipped: one linear score is 1.0)
    np.testing.assert_allclose(weighted[reach], 0.2 * la[reach] + 0.8 * lb[reach], rtol=1e-12)
    assert np.all(weighted[~reach] == FLOOR)


def test_random_names_use_the_suffix_pool_and_the_alphabets() -> None:
    from convert.augment import RANDOM_ALPHABETS, random_names, suffix_pool

    names = random_names(300, np.random.default_rng(5), lengths=(7, 12))
    suffixes = {s for group in suffix_pool() for s in group}
    allowed = set("".join(RANDOM_ALPHABETS))
    for name in names.tolist():
        label, _, suffix = name.partition(".")
        assert suffix in suffixes and 1 <= len(label) <= 12 and set(label) <= allowed
        assert not label.startswith("-") and not label.endswith("-")
    assert len(set(names.tolist())) > 290  # random, not a handful of repeats


def reference_dense(hasher: NgramHasher, x: np.ndarray) -> np.ndarray:
    """`NgramHasher._dense` as it was before #17's serving rewrite (each class's columns summed, -inf masked)."""
    n, vocab = len(x), hasher.encoder.vocab_size
    label = (x != 0) & (np.cumsum(x == hasher._dot, axis=1) == 0)
    length = label.sum(axis=1)
    safe = np.maximum(length, 1).astype(np.float64)
    counts = np.bincount((np.arange(n)[:, None] * vocab + x)[label], minlength=n * vocab).reshape(n, vocab)
    p = counts / safe[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    out = np.zeros((n, len(DENSE)), dtype=np.float32)
    out[:, 0], out[:, 1] = length / 32.0, entropy / 5.0
    letters = np.maximum(counts[:, hasher._indices(string.ascii_lowercase)].sum(axis=1), 1)
    out[:, 2] = counts[:, hasher._indices(string.digits)].sum(axis=1) / safe
    out[:, 3] = counts[:, hasher._indices("aeiou")].sum(axis=1) / letters
    out[:, 4] = counts[:, hasher._indices("-")].sum(axis=1) / safe
    return out


def test_the_dense_features_are_what_they_were_before_the_rewrite() -> None:
    """Bit for bit (`==`): thresholds were calibrated on these floats."""
    hasher = NgramHasher()
    rng = random.Random(4)
    texts, _ = names(5)
    texts += ["".join(rng.choice(string.printable + "ü.-") for _ in range(rng.randint(0, 70))) for _ in range(2000)]
    texts += ["", ".", "a.", ".a", "-", "---.com", "a" * 60, "aeiou-12.x"]
    for size in (1, 5, 32, 64):
        for i in range(0, len(texts), size):
            x = hasher.encoder.encode(texts[i : i + size])
            assert (hasher._dense(x) == reference_dense(hasher, x)).all(), texts[i : i + size]
