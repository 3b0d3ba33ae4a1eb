"""The linear stage's shape n-grams (#13 session 15): n-grams of the name's character classes.

Serving computes them four ways (numpy's reference `NgramHasher`, the batched `RowLinear`, the
pure-Python `unbound_gate.Featurizer` that the Unbound module runs, and C), the last three from a
table of their sums by window. A threshold calibrated on the reference's scores is only right if
every path gives the reference's float, so these tests hold them to it with `==`, on a stage the test
makes (random float16 weights: every bucket counts), and hold the reference to the definition.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

import numpy as np
import pytest

from resolverguard.config import load_config
from resolverguard.encoding import NameEncoder
from resolverguard.gatestage import GateModel, write_gate_snapshot
from resolverguard.model import _featurizer, linear_digest, load_model
from resolverguard.ngrams import DENSE, LinearWeights, NgramHasher, RowLinear, native_linear, shape_table
from resolverguard.pipeline import groups_for
from resolverguard.unbound_gate import Featurizer, native_linear_type, read_snapshot

MASK = (1 << 64) - 1
CLASSES = {**dict.fromkeys("aeiou", 1), **dict.fromkeys("tnshrdlcm", 2), **dict.fromkeys("0123456789", 4)}
CLASSES |= {"-": 5, ".": 6}


def stage_with_shapes(seed: int = 1, shapes: tuple[int, ...] = (3, 4, 5, 6)) -> LinearWeights:
    rng = np.random.default_rng(seed)
    hasher = NgramHasher(NameEncoder(maxlen=48), shapes=shapes)
    weights = rng.normal(0, 0.5, hasher.n_hashed).astype(np.float16).astype(np.float32)
    return LinearWeights(hasher, weights, rng.normal(0, 1, len(DENSE)).astype(np.float32), 0.25)


def texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    chars = string.ascii_lowercase + string.digits + "-._"
    out = ["".join(rng.choice(chars) for _ in range(rng.randint(0, 70))) for _ in range(n)]
    out += ["google.com", "xkq3vbh7tz.com", "", "a", "ab", "a.b", "-", "my-home.ddns.net", "UPPER.COM", "ünï.de"]
    return out + ["x" * k for k in range(45, 52)] + ["y" * k + ".com" for k in range(40, 48)]


def reference_shape_sum(stage: LinearWeights, text: str) -> float:
    """The definition, one n-gram at a time: the label's classes (others 3), a padding column before
    a name shorter than maxlen, the end mark 7; an n-gram counts when its second class (its only one
    for order 1) is not padding; hashed as a character n-gram of order + 16 into the shapes' block."""
    h = stage.hasher
    raw = text.encode("ascii", "replace")[: h.encoder.maxlen].decode("ascii")  # (upper case: not in the charset)
    classes = ([0] if len(raw) < h.encoder.maxlen else []) + [CLASSES.get(c, 3) for c in raw] + [7]
    total = 0.0
    for order in h.shapes:
        for i in range(len(classes) - order + 1):
            gram = classes[i : i + order]
            if gram[min(1, order - 1)] == 0:
                continue
            code = 0
            for c in gram:
                code = code * 8 + c
            salted = (code + (order + 16) * 0x632BE59BD9B4E019) & MASK
            index = ((salted * 0x9E3779B97F4A7C15) & MASK) >> (64 - h.shape_bits)
            total += float(stage.weights[(1 << h.bits) + index])
    return total


def test_the_shape_ngrams_are_what_the_definition_says() -> None:
    stage = stage_with_shapes()
    plain = LinearWeights(
        NgramHasher(NameEncoder(maxlen=48)), stage.weights[: 1 << 18], stage.dense, stage.bias
    )  # the same stage without its shapes
    names = texts(300, 2)
    got = stage.logits(names) - plain.logits(names)
    expected = np.array([reference_shape_sum(stage, t) for t in names])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert np.count_nonzero(expected) > 250  # not vacuous


def test_every_serving_path_gives_the_reference_float() -> None:
    stage = stage_with_shapes()
    names = texts(2000, 3)
    expected = stage.logits(names)
    alone = np.array([stage.logits([t])[0] for t in names[:200]])
    assert np.array_equal(alone, expected[:200])  # a batch's padding does not change a score
    rows = RowLinear(stage)
    assert rows.fast
    assert np.array_equal(rows.logits(names, stage.hasher.encoder.encode(names)), expected)
    featurizer = _featurizer(stage)
    raws = [stage.hasher.encoder.raw(t) for t in names]
    assert np.array_equal(np.array([featurizer.logit_of_raw(r) for r in raws]), expected)
    one = native_linear(stage, featurizer)
    assert np.array_equal(np.array([one(r) for r in raws]), expected)
    if native_linear_type() is not None:  # (the C extension is built: `one` must be it)
        assert one != featurizer.logit_of_raw


def test_the_pure_python_window_table_is_numpys() -> None:
    stage = stage_with_shapes(shapes=(2, 3, 4))
    h = stage.hasher
    weights = memoryview(stage.weights.tobytes()).cast("f")
    made = Featurizer(h.encoder.charset, h.encoder.maxlen, h.orders, h.bits, weights, (0.0,) * 5, 0.0, shapes=h.shapes)
    assert made.shape_table is not None
    assert np.array_equal(np.array(made.shape_table), np.frombuffer(shape_table(stage), dtype="<f8"))


def test_a_stage_keeps_its_shapes_through_its_file_and_older_files_still_load(tmp_path: Path) -> None:
    stage = stage_with_shapes(shapes=(3, 5))
    stage.save(tmp_path / "linear.npz")
    loaded = LinearWeights.load(tmp_path / "linear.npz")
    assert loaded.hasher.shapes == (3, 5) and loaded.hasher.shape_bits == 14
    assert np.array_equal(loaded.logits(texts(50, 4)), stage.logits(texts(50, 4)))
    with np.load(tmp_path / "linear.npz") as z:  # a file written before shapes existed
        older = {k: z[k] for k in z.files if k not in ("shapes", "shape_bits")}
    older["weights"] = older["weights"][: 1 << 18]
    np.savez(tmp_path / "older.npz", **older)
    assert LinearWeights.load(tmp_path / "older.npz").hasher.shapes == ()


def test_the_digest_a_shipped_ensemble_checks_tells_shape_orders_apart() -> None:
    a, b = stage_with_shapes(shapes=(3, 5)), stage_with_shapes(shapes=(4, 6))
    assert np.array_equal(a.weights, b.weights) and linear_digest(a) != linear_digest(b)
    # (a stage without shapes keeps the digest shipped models carry: tests/test_shipped_model.py loads one)


@pytest.mark.parametrize("native", [True, False])
def test_the_unbound_gate_scores_shapes_from_its_snapshot(tmp_path: Path, native: bool) -> None:
    """The service writes the shape table into the module's snapshot; the gate read back from it
    (in C where built, and in pure Python) gives the reference's float."""
    config = tmp_path / "policy.yaml"
    config.write_text("query_log: off\n")
    cfg = load_config(config)
    model = load_model(cfg.model)
    stage = stage_with_shapes(5)
    gate = GateModel(stage, 0.0, {})
    write_gate_snapshot(tmp_path / "s.gate", cfg, model, groups_for(cfg, model.metadata.thresholds), gate, log=False)
    found, why = read_snapshot(tmp_path / "s.gate", native=native)
    assert found is not None, why
    names = texts(500, 6)
    assert np.array_equal(np.array([found.featurizer.logit(t) for t in names]), stage.logits(names))
