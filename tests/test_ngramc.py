"""The linear stage of one name in C (`resolverguard/_ngramc.c`, via `ngrams.native_linear`): the very
float the pure-Python featurizer gives, and a lone name's ensemble score the very float it was before.

Compared with `==` on the shipped stage: random labels (most reach the CNN), popular labels (most are
cleared by the gate), every length around `maxlen` (where the C code hands the name back), non-ASCII
and odd inputs, and names hypothesis makes. The tests of the C code itself skip where the extension
is not built (no C compiler at install time); the fallback is tested everywhere.
"""

from __future__ import annotations

import gzip
import random
import string
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolverguard.model import EnsembleScorer, TFLiteScorer, _featurizer, ensemble_scores, load_model
from resolverguard.ngrams import LinearWeights, native_linear

ROOT = Path(__file__).resolve().parent.parent
POPULAR = ROOT / "resolverguard" / "data" / "popular-labels.txt.gz"
ALPHABET = string.ascii_lowercase + string.digits


@pytest.fixture(scope="module")
def model() -> EnsembleScorer:
    found = load_model()
    assert isinstance(found, EnsembleScorer)
    return found


def random_labels(n: int, rng: random.Random) -> list[str]:
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(6, 24))) + ".com" for _ in range(n)]


def popular_labels(n: int, rng: random.Random) -> list[str]:
    with gzip.open(POPULAR, "rt", encoding="ascii") as handle:
        labels = [line.strip() for line in handle if line.strip()]
    return [f"{label}.{rng.choice(['com', 'de', 'co.uk', 'net'])}" for label in rng.sample(labels, n)]


def odd_names(maxlen: int, rng: random.Random) -> list[str]:
    out = ["", ".", "a", "ab", "abc", "a.", ".a", "-", "_", "a-b.c", "a.b.c.d.e.f", "UPPER.COM", "ünïcode.de"]
    out += ["x" * k for k in range(maxlen - 3, maxlen + 3)] + ["y" * k + ".com" for k in range(maxlen - 7, maxlen)]
    out += ["aaaaaaaabbbbccd.net", "e" * 20, "0123456789-_" * 3, "a" * 12 + "." + "b" * 30]
    chars = string.ascii_letters + string.digits + "-_.~ ü\x00\x7f"
    out += ["".join(rng.choice(chars) for _ in range(rng.randint(0, 70))) for _ in range(300)]
    return out


def needs_c() -> type:
    ngramc = pytest.importorskip("resolverguard._ngramc", reason="the C extension is not built (setup.py)")
    return ngramc.Linear  # type: ignore[no-any-return]


def test_the_shipped_scorer_uses_the_c_stage_and_it_gives_the_featurizers_float(model: EnsembleScorer) -> None:
    linear = needs_c()
    assert isinstance(getattr(model.linear_one, "__self__", None), linear)  # not silently the fallback
    rng = random.Random(13)
    texts = random_labels(3000, rng) + popular_labels(3000, rng) + odd_names(model.encoder.maxlen, rng)
    for text in texts:
        raw = model.encoder.raw(text)
        assert model.linear_one(raw) == model.featurizer.logit_of_raw(raw), text  # ==: bit for bit
    # and both are the reference numpy stage's figures (what convert.ship calibrated on)
    python = [model.featurizer.logit(t) for t in texts]
    np.testing.assert_allclose(python, model.linear.logits(texts), rtol=0, atol=1e-9)


@given(st.text(alphabet=string.ascii_lowercase + string.digits + "-_.ü", max_size=60))
def test_any_name_gets_the_featurizers_float(text: str) -> None:
    needs_c()
    model = _shared_model()
    raw = model.encoder.raw(text)
    assert model.linear_one(raw) == model.featurizer.logit_of_raw(raw)


def _shared_model() -> EnsembleScorer:
    """One model for every hypothesis example (a fixture cannot be used with @given per example)."""
    cached = getattr(_shared_model, "model", None)
    if cached is None:
        cached = load_model()
        assert isinstance(cached, EnsembleScorer)
        _shared_model.model = cached  # type: ignore[attr-defined]
    return cached


def test_a_batch_scored_with_the_c_stage_scores_what_numpys_stage_scored(model: EnsembleScorer) -> None:
    """The server's batches take the C stage one name at a time (`EnsembleScorer._score_raws`);
    `RowLinear`'s numpy batch gave the same scores, bit for bit, on every batch size."""
    needs_c()
    assert model._linear_c
    rng = random.Random(31)
    texts = random_labels(1500, rng) + popular_labels(1500, rng) + odd_names(model.encoder.maxlen, rng)
    rng.shuffle(texts)
    for size in (2, 3, 7, 32, 64):
        for i in range(0, len(texts), size):
            batch = texts[i : i + size]
            model._linear_c = True
            got = model.score(batch).tolist()
            model._linear_c = False
            assert got == model.score(batch).tolist(), batch
    model._linear_c = True


def test_a_lone_name_scores_what_it_scored_before(model: EnsembleScorer) -> None:
    """The old path of one name: the pure-Python featurizer from the text, then the CNN from the text
    through `TFLiteScorer.score`, combined by `ensemble_scores`. Random and popular labels, alone and
    alternating with batches (the interpreter resizes between them)."""
    rng = random.Random(29)
    texts = random_labels(500, rng) + popular_labels(500, rng) + odd_names(model.encoder.maxlen, rng)[:60]
    rng.shuffle(texts)
    reached = 0
    for i, text in enumerate(texts):
        linear = np.array([model.featurizer.logit(text)], dtype=np.float64)
        cnn = np.zeros(1, dtype=np.float32)
        if linear[0] >= model.gate:
            cnn = TFLiteScorer.score(model, [text])
            reached += 1
        expected = ensemble_scores(cnn, linear, model.gate, model.temperature)
        assert model.score([text]).tolist() == expected.tolist(), text
        if i % 50 == 0:
            model.score(texts[i : i + 7])  # a batch in between: the lone path resizes back
    assert 400 < reached < len(texts) - 400  # both kinds of name, on both sides of the gate


def test_without_the_extension_or_for_a_stage_being_fit_the_featurizer_itself_is_used(
    model: EnsembleScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "resolverguard._ngramc", None)  # as if it was never built
    fallback = native_linear(model.linear, model.featurizer)
    assert fallback == model.featurizer.logit_of_raw
    monkeypatch.undo()
    stage = model.linear
    # weights that are not float16 values: their float64 sums are not exact in every order
    fitted = LinearWeights(stage.hasher, stage.weights + np.float32(1e-7), stage.dense, stage.bias)
    featurizer = _featurizer(fitted)
    assert native_linear(fitted, featurizer) == featurizer.logit_of_raw


def test_the_c_stage_refuses_tables_of_the_wrong_size(model: EnsembleScorer) -> None:
    linear = needs_c()
    f = model.featurizer
    args = {
        "low": f.low,
        "weights": np.zeros(1 << 10, dtype=np.float32),  # the stage has 2**18
        "terms": np.zeros((49, 49)),
        "classes": f._classes,
        "dense": tuple(f.dense),
        "bias": f.bias,
        "maxlen": 48,
        "bits": 18,
        "end": f._end,
        "dot": f._dot,
        "fallback": f.logit_of_raw,
    }
    with pytest.raises(ValueError, match="weights"):
        linear(**args)
    with pytest.raises(ValueError, match="out of range"):
        linear(**(args | {"bits": 40}))
    with pytest.raises(RuntimeError, match="not initialised"):
        linear.__new__(linear).logit(b"ab")  # no tables: an error, never a crash


def test_a_c_stage_in_a_cycle_with_its_fallback_is_collected(model: EnsembleScorer) -> None:
    """The Unbound module's featurizer holds its C stage, whose fallback is the featurizer's own method
    (gate6): a cycle through the C object, reread with every new snapshot. The type takes part in GC,
    so the cycle (and its ~3 MB of copied tables) is freed, not leaked."""
    import gc
    import weakref

    linear = needs_c()
    f = model.featurizer

    class Holder:
        def fallback(self, raw: bytes) -> float:
            return f.logit_of_raw(raw)

    holder = Holder()
    width = f.maxlen + 1
    terms = np.zeros((width, width), dtype=np.float64)
    for length, row in enumerate(f._entropy_terms):
        terms[length, : len(row)] = row
    weights = memoryview(np.ascontiguousarray(model.linear.weights[: 1 << 18], dtype=np.float32).tobytes()).cast("f")
    holder.stage = linear(  # type: ignore[attr-defined]
        f.low,
        weights,
        terms.tobytes(),
        f._classes,
        tuple(f.dense),
        f.bias,
        f.maxlen,
        18,
        f._end,
        f._dot,
        holder.fallback,
    )
    raw = (
        b"\x05" * f.maxlen
    )  # maxlen codes, no padding column: the C code: its fallback, a method of the holder, answers
    assert holder.stage.logit(raw) == f.logit_of_raw(raw)  # type: ignore[attr-defined]
    gone = weakref.ref(holder)
    del holder
    gc.collect()
    assert gone() is None
