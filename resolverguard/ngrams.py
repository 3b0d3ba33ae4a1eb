"""The hashed character n-gram features of the linear stage, shared by training and serving.

A linear model over hashed n-grams costs a few microseconds per name in a batch, with numpy alone
(no TensorFlow, no scikit-learn at serving), so it could answer the confident names before the CNN.
Training (`convert/ngram.py`) builds its sparse matrix from `NgramHasher.hashed`, and `LinearWeights`
sums the saved weights at the same indices: the two cannot drift, and a parity test holds them to it.
It ships beside the CNN (`models/default.gate.npz`): the Unbound module's gate, and since #13 session 7
half of the shipped scorer (`resolverguard.model.EnsembleScorer`: at full size the mean of the two
logits beat the CNN alone, models/REPORT.md); for one name serving uses the pure-Python twin in
`resolverguard.unbound_gate.Featurizer`, held to this one by a parity test.

A name goes through the model's `NameEncoder` first (same charset, left padding, truncation), then:

* every n-gram of order 1..5 of `label.suffix` plus an end mark, hashed into `2**bits` buckets;
  an n-gram may start in the padding by one column, which marks the start of the name (`^ab`);
* the whole suffix as one hashed token (what follows the first dot);
* optionally (`shapes`, #13 session 15) every n-gram of the name's character CLASSES (vowel, common
  consonant, rare consonant, digit, hyphen, dot, end mark; `SHAPE_CLASSES`), hashed into a block of
  their own after the n-grams': an unseen random-letter family shares no 5-gram of letters with the
  families trained on, but it shares their rhythm of rare consonants and missing vowels
  (models/REPORT.md: +0.03 leave-family-out recall at the sinkhole threshold);
* a few dense shape features of the label (before the first dot): length, character entropy,
  digit, vowel and hyphen shares. They live in the columns after the hashed ones.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from resolverguard.encoding import PAD, NameEncoder
from resolverguard.errors import ModelError

_MULT = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits of code * this constant
_BASE = np.uint64(64)  # > every encoder index plus the end mark, so an n-gram's code is exact
_ORDER_SALT = np.uint64(0x632BE59BD9B4E019)
_SUFFIX_SALT = np.uint64(0x2545F4914F6CDD1D)
# _BASE ** (253 - j): a row's polynomial takes its last columns' powers (253 = the longest name).
_POWERS = np.array([pow(64, 253 - j, 1 << 64) for j in range(254)], dtype=np.uint64)
DENSE = ("length", "entropy", "digits", "vowels", "hyphens")
LINEAR_FORMAT = "resolverguard-linear/1"
# Character classes of the shape n-grams (0: padding, 7: the end mark; anything else: 3, rare). The
# common consonants are the nine most frequent in English text.
SHAPE_CLASSES = (("aeiou", 1), ("tnshrdlcm", 2), ("bfgjkpqvwxyz", 3), ("0123456789", 4), ("-", 5), (".", 6))
SHAPE_OTHER, SHAPE_END, SHAPE_BASE = 3, 7, 8
SHAPE_SALT = 16  # a shape n-gram of order k is salted as a character n-gram of order k + 16 would be


@dataclass(frozen=True)
class NgramHasher:
    """Maps names to bucket indices (one per n-gram) and dense shape features."""

    encoder: NameEncoder = field(default_factory=NameEncoder)
    orders: tuple[int, ...] = (1, 2, 3, 4, 5)
    bits: int = 18
    shapes: tuple[int, ...] = ()  # orders of the shape n-grams; () for none
    shape_bits: int = 14

    @property
    def n_hashed(self) -> int:
        """Columns of the hashed n-grams: the characters' block, then the shapes' when there are any."""
        return (1 << self.bits) + ((1 << self.shape_bits) if self.shapes else 0)

    @property
    def n_features(self) -> int:
        return self.n_hashed + len(DENSE)

    def hashed(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """(indices, valid), both (n, k): bucket of every n-gram slot and whether the slot holds one."""
        idx, valid, _ = self.features(texts)
        return idx, valid

    def dense(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """(n, len(DENSE)) shape features of the label, each scaled to about [0, 1]."""
        return self.features(texts)[2]

    def features(
        self, texts: Sequence[str]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.float32]]:
        """Hashed n-gram slots (indices, valid) and the dense features, from one encoding pass.
        Columns of padding left of the batch's longest name are cut first (one is kept: the start
        mark), so a batch of short names costs what short names cost."""
        encoded = self.encoder.encode(texts)
        n, width = encoded.shape
        first = int(np.argmax(encoded.any(axis=0))) if n else width
        encoded = encoded[:, max(0, first - 1) :]
        dense = self._dense(encoded)
        end = np.full((n, 1), self.encoder.vocab_size, dtype=encoded.dtype)
        x: npt.NDArray[np.uint64] = np.concatenate([encoded, end], axis=1).astype(np.uint64)
        shift, cols, masks = np.uint64(64 - self.bits), [], []
        code = np.zeros((n, x.shape[1]), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for order in range(1, max(self.orders) + 1):
                span = x.shape[1] + 1 - order
                code = code[:, :span] * _BASE + x[:, order - 1 : order - 1 + span]
                if order in self.orders:
                    hashed = (code + np.uint64(order) * _ORDER_SALT) * _MULT
                    cols.append((hashed >> shift).astype(np.int64))
                    # Valid: the n-gram's second column (for unigrams its only one) is a character.
                    lead = min(1, order - 1)
                    masks.append(x[:, lead : lead + span] != PAD)
            suffix = self._suffix_code(x[:, :-1])
            cols.append(((suffix * _MULT) >> shift).astype(np.int64)[:, None])
        masks.append(np.ones((n, 1), dtype=bool))
        if self.shapes:
            self._shape_grams(self.shape_lookup[x.astype(np.intp)], cols, masks)
        return np.concatenate(cols, axis=1), np.concatenate(masks, axis=1), dense

    def _shape_grams(self, x: npt.NDArray[np.uint64], cols: list[Any], masks: list[Any]) -> None:
        """The shape n-grams' columns (after the characters' block) and validity, as the characters'."""
        shift, offset = np.uint64(64 - self.shape_bits), 1 << self.bits
        code = np.zeros(x.shape, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for order in range(1, max(self.shapes) + 1):
                span = max(x.shape[1] + 1 - order, 0)  # (a batch of one short name has fewer columns)
                code = code[:, :span] * np.uint64(SHAPE_BASE) + x[:, order - 1 : order - 1 + span]
                if order in self.shapes:
                    hashed = (code + np.uint64(order + SHAPE_SALT) * _ORDER_SALT) * _MULT
                    cols.append((hashed >> shift).astype(np.int64) + offset)
                    lead = min(1, order - 1)
                    masks.append(x[:, lead : lead + span] != 0)

    @functools.cached_property
    def shape_lookup(self) -> npt.NDArray[np.uint64]:
        """Encoder index (and the end mark, `vocab_size`) -> shape class."""
        out = np.full(self.encoder.vocab_size + 1, SHAPE_OTHER, dtype=np.uint64)
        out[PAD] = 0
        for chars, klass in SHAPE_CLASSES:
            out[self._indices(chars)] = klass
        out[self.encoder.vocab_size] = SHAPE_END
        return out

    def _suffix_code(self, x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
        """A code of everything after the first dot (0 when there is none), salted: the suffix is
        the rows' last columns, so its polynomial is the masked row times powers of the base."""
        after = np.cumsum(x == np.uint64(self._dot), axis=1) > 0
        powers = _POWERS[-x.shape[1] :]
        code: npt.NDArray[np.uint64] = (np.where(after, x, np.uint64(0)) * powers).sum(axis=1, dtype=np.uint64)
        return code + _SUFFIX_SALT

    @property
    def _dot(self) -> int:
        return self.encoder.charset.index(".") + 2 if "." in self.encoder.charset else -1

    def _dense(self, x: npt.NDArray[np.int32]) -> npt.NDArray[np.float32]:
        """Length, entropy, digit, vowel and hyphen shares of the label (before the first dot).
        (The class counts come from one integer product with `_classes`, and log2 never sees a 0:
        the same floats as summing each class's columns and masking -inf, in a third of the time.)"""
        n = len(x)
        label = (x != PAD) & ~np.logical_or.accumulate(x == self._dot, axis=1)
        length = label.sum(axis=1)
        safe = np.maximum(length, 1).astype(np.float64)
        vocab = self.encoder.vocab_size
        counts = np.bincount((np.arange(n)[:, None] * vocab + x)[label], minlength=n * vocab).reshape(n, vocab)
        p = counts / safe[:, None]
        entropy = -(p * np.log2(np.where(p > 0, p, 1.0))).sum(axis=1)
        out = np.zeros((n, len(DENSE)), dtype=np.float32)
        out[:, 0] = length / 32.0
        out[:, 1] = entropy / 5.0
        letters, digits, vowels, hyphens = (counts @ self._classes).T
        out[:, 2] = digits / safe
        out[:, 3] = vowels / np.maximum(letters, 1)
        out[:, 4] = hyphens / safe
        return out

    @functools.cached_property
    def _classes(self) -> npt.NDArray[np.int64]:
        """(vocab, 4): which codes are letters, digits, vowels, hyphens (a column each)."""
        out = np.zeros((self.encoder.vocab_size, 4), dtype=np.int64)
        for column, chars in enumerate((string.ascii_lowercase, string.digits, "aeiou", "-")):
            out[self._indices(chars), column] = 1
        return out

    def _indices(self, chars: str) -> list[int]:
        return [self.encoder.charset.index(c) + 2 for c in chars if c in self.encoder.charset]


@dataclass(frozen=True)
class LinearWeights:
    """The linear stage's file: hashed weights, dense weights, bias, and the hasher's settings."""

    hasher: NgramHasher
    weights: npt.NDArray[np.float32]  # hasher.n_hashed: 2**bits, then 2**shape_bits with shapes
    dense: npt.NDArray[np.float32]  # len(DENSE)
    bias: float

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            format=np.array(LINEAR_FORMAT),
            charset=np.array(self.hasher.encoder.charset),
            maxlen=np.array(self.hasher.encoder.maxlen),
            orders=np.array(self.hasher.orders, dtype=np.int64),
            bits=np.array(self.hasher.bits),
            shapes=np.array(self.hasher.shapes, dtype=np.int64),
            shape_bits=np.array(self.hasher.shape_bits),
            weights=self.weights.astype(np.float16),
            dense=self.dense.astype(np.float32),
            bias=np.array(self.bias, dtype=np.float64),
        )

    @classmethod
    def load(cls, path: Path) -> LinearWeights:
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != LINEAR_FORMAT:
                    raise ModelError(f"{path}: not a resolverguard linear stage (format != {LINEAR_FORMAT!r})")
                encoder = NameEncoder(str(z["charset"]), int(z["maxlen"]))
                shapes = tuple(int(o) for o in z["shapes"]) if "shapes" in z else ()  # (none before session 15)
                shape_bits = int(z["shape_bits"]) if "shape_bits" in z else 14
                hasher = NgramHasher(encoder, tuple(int(o) for o in z["orders"]), int(z["bits"]), shapes, shape_bits)
                weights = z["weights"].astype(np.float32)
                dense, bias = z["dense"].astype(np.float32), float(z["bias"])
        except (OSError, KeyError, ValueError) as err:
            raise ModelError(f"{path}: cannot read the linear stage: {err}") from None
        if weights.shape != (hasher.n_hashed,) or dense.shape != (len(DENSE),):
            raise ModelError(f"{path}: weight shapes do not match the hasher's settings")
        return cls(hasher, weights, dense, bias)

    def logits(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        """The linear stage's logit per name (float64: no ties near a saturated sigmoid)."""
        if not texts:
            return np.zeros(0, dtype=np.float64)
        idx, valid, dense = self.hasher.features(texts)
        total: npt.NDArray[np.float64] = np.where(valid, self.weights[idx], np.float32(0)).sum(axis=1, dtype=np.float64)
        return total + dense_dot(dense, self.dense) + self.bias

    def score(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """P(DGA) per name, the `Scorer` protocol."""
        return (1.0 / (1.0 + np.exp(-self.logits(texts)))).astype(np.float32)


def dense_dot(dense: npt.NDArray[np.float32], weights: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Each row's dense features times their weights, added left to right in float64 as the C stage
    and the pure-Python featurizer add them. Not `@`: BLAS picks its order by the batch's size, so a
    name's logit moved by an ulp with the names batched beside it (seen on the session-15 stage)."""
    d, w = dense.astype(np.float64), weights.astype(np.float64)
    out: npt.NDArray[np.float64] = d[:, 0] * w[0]
    for i in range(1, d.shape[1]):
        out = out + d[:, i] * w[i]
    return out


def gram_tables(stage: LinearWeights) -> bytes:
    """The stage's weight of every n-gram code of order 1, 2 and 3 (64**order codes each), so the
    module looks these up instead of hashing them (`unbound_gate.Featurizer`)."""
    shift = np.uint64(64 - stage.hasher.bits)
    out = []
    with np.errstate(over="ignore"):
        for order in (1, 2, 3):
            codes = np.arange(64**order, dtype=np.uint64)
            index = ((codes + np.uint64(order) * _ORDER_SALT) * _MULT) >> shift
            out.append(stage.weights[index.astype(np.int64)].astype("<f4"))
    return np.concatenate(out).tobytes()


def shape_table(stage: LinearWeights) -> bytes:
    """The stage's shape n-grams summed by the window of the last `max(shapes)` classes they end in
    (`SHAPE_BASE ** width` float64 entries, the newest class in the lowest digit; an n-gram whose
    second class is padding, as in `NgramHasher`, adds nothing), so serving sums one lookup per
    position. Empty without shapes. Float64: the float16 weights add exactly."""
    h = stage.hasher
    if not h.shapes:
        return b""
    width = max(h.shapes)
    codes = np.arange(SHAPE_BASE**width, dtype=np.uint64)
    digits = [(codes // np.uint64(SHAPE_BASE**k)) % np.uint64(SHAPE_BASE) for k in range(width)]  # [0]: newest
    out = np.zeros(len(codes), dtype=np.float64)
    shift, offset = np.uint64(64 - h.shape_bits), 1 << h.bits
    with np.errstate(over="ignore"):
        for order in h.shapes:
            gram = codes % np.uint64(SHAPE_BASE**order)
            index = ((gram + np.uint64(order + SHAPE_SALT) * _ORDER_SALT) * _MULT) >> shift
            valid = digits[order - 1 - min(1, order - 1)] != 0  # the gram's second class (its only one for order 1)
            out += np.where(valid, stage.weights[index.astype(np.int64) + offset].astype(np.float64), 0.0)
    return bytes(out.astype("<f8").tobytes())


def low_table(tables: bytes) -> bytes:
    """`unbound_gate.low_table` in numpy: orders 1-3 summed by trigram code, float64."""
    flat = np.frombuffer(tables, dtype="<f4").astype(np.float64)
    t1, t2, t3 = flat[:64], flat[64 : 64 + 64**2], flat[64 + 64**2 :]
    codes = np.arange(64**3)
    out = t1[codes & 63] + t2[codes & 4095] + np.where(codes >> 6 != 0, t3, 0.0)
    return bytes(out.astype("<f8").tobytes())


class RowLinear:
    """`LinearWeights.logits` from rows the CNN's encoder already made, for serving's batches where
    the C stage (`native_linear`) is not built, or for a batch with a name of `maxlen` characters or
    more: with it, `model.EnsembleScorer._score_raws` calls it name by name, the same floats, 5-25x
    faster at batches of 64 to 4 (bench/results/miss_rd12b.md).

    Why (#17): at the server's batches (~32 names, one per datagram uvloop reads in a turn) the
    reference path cost as much as the CNN, re-encoding every name and hashing orders 1-3 that a
    table can answer. Here orders 1-3 are one lookup per character in `low_table` (by trigram code;
    its entry 0, all padding, made 0), orders 4 and 5 are hashed as in `NgramHasher.features`, and
    the dense features and the suffix token are `NgramHasher`'s own functions on the same rows.
    The float is the reference's bit for bit: the stored weights are float16 values, so every one
    is a multiple of 2**-24 under 2**16 and any sum of a few hundred of them in float64 is exact,
    in whatever order or grouping. A stage whose weights are not float16 values (one being fit,
    not loaded), a name of `maxlen` characters or more (no padding column: no start mark) and
    other orders take the reference path. A test compares both on many names with `==`."""

    def __init__(self, stage: LinearWeights, shapes_table: bytes | None = None) -> None:
        """`shapes_table`: `shape_table(stage)` when the caller has it already."""
        self.stage = stage
        h = stage.hasher
        exact = bool(np.array_equal(stage.weights.astype(np.float16).astype(np.float32), stage.weights))
        shapes_ok = max(h.shapes, default=0) <= 6  # (the window table has 8**width entries)
        self.fast = exact and h.orders == (1, 2, 3, 4, 5) and h.encoder.vocab_size < 63 and shapes_ok
        if h.shapes and shapes_table is None:
            shapes_table = shape_table(stage)
        self._shapes = np.frombuffer(shapes_table, dtype="<f8") if h.shapes and shapes_table is not None else None
        low = np.frombuffer(low_table(gram_tables(stage)), dtype="<f8").copy()
        low[0] = 0.0  # (pad, pad, pad): no n-gram; a padding column never follows a character
        self._low = low
        self._shift = np.uint64(64 - h.bits)
        self._k4, self._k5 = (np.uint64((o * int(_ORDER_SALT) * int(_MULT)) % (1 << 64)) for o in (4, 5))
        self._dense = stage.dense.astype(np.float64)

    def logits(self, texts: Sequence[str], rows: npt.NDArray[np.int32]) -> npt.NDArray[np.float64]:
        """The logit of each text; `rows` = `stage.hasher.encoder.encode(texts)`."""
        full = rows[:, 0] != PAD if len(rows) else np.zeros(0, dtype=bool)
        if not self.fast or full.all():
            return self.stage.logits(texts)
        if full.any():  # (rare: names of maxlen characters or more) each kind its own way
            out = np.empty(len(texts), dtype=np.float64)
            out[full] = self.stage.logits([t for t, f in zip(texts, full.tolist(), strict=True) if f])
            out[~full] = self.logits([t for t, f in zip(texts, full.tolist(), strict=True) if not f], rows[~full])
            return out
        return self._padded(rows)

    def _padded(self, rows: npt.NDArray[np.int32]) -> npt.NDArray[np.float64]:
        h = self.stage.hasher
        n, width = rows.shape
        used = rows.any(axis=0)
        first = int(np.argmax(used)) if used.any() else width  # >= 1: every row has a padding column
        x = np.zeros((n, width - first + 3), dtype=np.uint64)  # two padding columns, the row, the end mark
        x[:, 2:-1] = rows[:, first:]
        x[:, -1] = h.encoder.vocab_size
        c2 = (x[:, :-1] << np.uint64(6)) | x[:, 1:]
        c3 = (c2[:, :-1] << np.uint64(6)) | x[:, 2:]
        total = self._low[c3.astype(np.intp)].sum(axis=1)
        c4 = (c3[:, 1:-1] << np.uint64(6)) | x[:, 4:]  # 4-grams from one padding column on (the start mark)
        c5 = (c4[:, :-1] << np.uint64(6)) | x[:, 5:]
        weights, shift = self.stage.weights, self._shift
        with np.errstate(over="ignore"):
            for code, salt, lead in ((c4, self._k4, 1 << 12), (c5, self._k5, 1 << 18)):
                # valid: the second column is a character, i.e. the code is at least 64**(order-2)
                found = weights[((code * _MULT + salt) >> shift).astype(np.intp)]
                total += np.where(code >= np.uint64(lead), found, np.float32(0)).sum(axis=1, dtype=np.float64)
            suffix = h._suffix_code(x[:, 1:-1])
            total += weights[((suffix * _MULT) >> shift).astype(np.intp)]
        if self._shapes is not None:
            total += self._shape_sums(x[:, 2:])
        out: npt.NDArray[np.float64] = total + dense_dot(h._dense(rows[:, first - 1 :]), self._dense) + self.stage.bias
        return out

    def _shape_sums(self, x: npt.NDArray[np.uint64]) -> npt.NDArray[np.float64]:
        """Each row's shape n-grams from `shape_table`: one lookup per column of the names and the
        end mark (`x`), by the window of classes ending there (padding before the row)."""
        h = self.stage.hasher
        assert self._shapes is not None
        width = max(h.shapes)
        n, m = x.shape
        classes = np.zeros((n, m + width - 1), dtype=np.int64)
        classes[:, width - 1 :] = h.shape_lookup[x.astype(np.intp)]
        code = np.zeros((n, m), dtype=np.int64)
        for j in range(width):
            code = code * SHAPE_BASE + classes[:, j : j + m]
        out: npt.NDArray[np.float64] = self._shapes[code].sum(axis=1)
        return out


def native_linear(stage: LinearWeights, featurizer: Any) -> Callable[[bytes], float]:
    """The linear stage's logit of one encoded name (`NameEncoder.raw`): `featurizer.logit_of_raw`
    (`resolverguard.unbound_gate.Featurizer` over this stage), in C where the extension is built.

    Why (#13): a lone random-looking name reaches both stages, and the pure-Python featurizer (~10 us)
    cost more than the CNN call (~7 us): batch 1 was 21-24 us per name against the 20 us target
    (bench/results/ensemble_ens6.md). `resolverguard._ngramc` gives the very same float (its file says
    why; a test compares the two with `==`), from the featurizer's own tables. It is used only when
    that holds: the stored weights are float16 values (a loaded stage, not one being fit), orders 1-5,
    codes under 64; names of `maxlen` characters or more go back to the featurizer. Without the
    extension (no C compiler at install time) the featurizer itself is returned."""
    try:
        from resolverguard._ngramc import Linear
    except ImportError:
        return cast(Callable[[bytes], float], featurizer.logit_of_raw)
    h = stage.hasher
    exact = bool(np.array_equal(stage.weights.astype(np.float16).astype(np.float32), stage.weights))
    if not exact or h.orders != (1, 2, 3, 4, 5) or h.encoder.vocab_size >= 63 or featurizer.low is None:
        return cast(Callable[[bytes], float], featurizer.logit_of_raw)
    if h.shapes and featurizer.shape_table is None:
        return cast(Callable[[bytes], float], featurizer.logit_of_raw)
    width = h.encoder.maxlen + 1
    terms = np.zeros((width, width), dtype=np.float64)
    for length, row in enumerate(featurizer._entropy_terms):  # the featurizer's floats, not recomputed
        terms[length, : len(row)] = row
    native = Linear(
        low=featurizer.low,
        weights=np.ascontiguousarray(stage.weights[: 1 << h.bits], dtype=np.float32),
        terms=terms,
        classes=featurizer._classes,
        dense=tuple(featurizer.dense),
        bias=featurizer.bias,
        maxlen=h.encoder.maxlen,
        bits=h.bits,
        end=featurizer._end,
        dot=featurizer._dot,
        fallback=featurizer.logit_of_raw,
        **featurizer.native_shapes(),
    )
    return cast(Callable[[bytes], float], native.logit)
