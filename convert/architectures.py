"""The architectures, one small builder each, so the shape of every model is visible at a glance.

All take int32 rows from `resolverguard.encoding.NameEncoder`. The detectors end in one sigmoid
(P(DGA)); the family head ends in a softmax over the DGA families. Recurrent layers are unrolled:
LiteRT has no Flex ops, and an unrolled LSTM converts to builtins. `width` scales the main layer
(filters or units); 0 keeps each builder's default.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import layers, ops


def _inputs(maxlen: int) -> keras.KerasTensor:
    return keras.Input(shape=(maxlen,), dtype="int32", name="label")


def _head(x: keras.KerasTensor, dropout: float) -> keras.KerasTensor:
    x = layers.Dropout(dropout)(x)
    return layers.Dense(1, activation="sigmoid", name="p_dga")(x)


def lstm(vocab: int, maxlen: int, width: int = 0) -> keras.Model:
    """Endgame (Woodbridge et al. 2016): embedding -> LSTM(128) -> dropout -> dense sigmoid."""
    inp = _inputs(maxlen)
    x = layers.Embedding(vocab, 128)(inp)
    x = layers.LSTM(width or 128, unroll=True)(x)
    return keras.Model(inp, _head(x, 0.5), name="lstm")


def _ngram_features(emb: keras.KerasTensor, width: int, kernels: tuple[int, ...]) -> keras.KerasTensor:
    pooled = [layers.GlobalMaxPooling1D()(layers.Conv1D(width, w, activation="relu")(emb)) for w in kernels]
    return layers.Concatenate()(pooled)


def cnn(vocab: int, maxlen: int, width: int = 0) -> keras.Model:
    """Character CNN (Snowman / Farsight style): parallel Conv1D of widths 2-5, global max pool."""
    inp = _inputs(maxlen)
    emb = layers.Embedding(vocab, 32)(inp)
    x = layers.Dense(128, activation="relu")(_ngram_features(emb, width or 128, (2, 3, 4, 5)))
    return keras.Model(inp, _head(x, 0.3), name="cnn")


def shape_onehots(vocab: int) -> np.ndarray:
    """(vocab, 8): each encoder index's character class (`resolverguard.ngrams.SHAPE_CLASSES`, the
    linear stage's shape n-grams) one-hot; padding all zeros."""
    from resolverguard.encoding import NameEncoder
    from resolverguard.ngrams import SHAPE_BASE, NgramHasher

    encoder = NameEncoder()  # the charset convert.train encodes with; another would misclass every index
    if vocab != encoder.vocab_size:
        raise ValueError(f"cnn_shape needs the default charset's vocabulary ({encoder.vocab_size}), got {vocab}")
    lookup = NgramHasher(encoder).shape_lookup[:vocab].astype(np.int64)
    table = np.eye(SHAPE_BASE, dtype=np.float32)[lookup]
    table[lookup == 0] = 0.0
    return table


def cnn_shape(vocab: int, maxlen: int, width: int = 0) -> keras.Model:
    """The CNN with a second branch that sees only each character's class (vowel, common or rare
    consonant, digit, hyphen, dot: a fixed lookup, not learned), through convolutions of widths 3-6.
    What one random-string family shares with another it never saw is that rhythm, not its letters
    (the linear stage's shape n-grams: models/REPORT.md); the branch makes the CNN say it explicitly.
    Same input as `cnn`, so serving is unchanged."""
    inp = _inputs(maxlen)
    emb = layers.Embedding(vocab, 32)(inp)
    table = shape_onehots(vocab)
    shape = layers.Embedding(
        vocab, table.shape[1], embeddings_initializer=keras.initializers.Constant(table), trainable=False, name="shape"
    )(inp)
    chars = _ngram_features(emb, width or 128, (2, 3, 4, 5))
    rhythm = _ngram_features(shape, (width or 128) // 2, (3, 4, 5, 6))
    x = layers.Dense(128, activation="relu")(layers.Concatenate()([chars, rhythm]))
    return keras.Model(inp, _head(x, 0.3), name="cnn_shape")


@keras.saving.register_keras_serializable(package="resolverguard")
class HashedNgrams(layers.Layer):
    """A linear model over hashed character n-grams, inside the graph: one learned weight per bucket,
    summed over the n-grams of the name (padding excluded). Integer multiply, modulo and gather only,
    so it converts to LiteRT builtins and costs a few microseconds."""

    def __init__(self, n: int, vocab: int, buckets: int = 1 << 16, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.n, self.vocab, self.buckets = n, vocab, buckets

    def build(self, input_shape: tuple[int, ...]) -> None:
        self.table = self.add_weight(shape=(self.buckets,), initializer="zeros", name="table")

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        length = x.shape[1] - self.n + 1
        code = ops.zeros_like(x[:, :length])
        valid = ops.ones_like(x[:, :length])
        for i in range(self.n):
            part = x[:, i : i + length]
            code = code * self.vocab + part
            valid = valid * ops.cast(part > 0, "int32")
        weights = ops.take(self.table, ops.mod(code, self.buckets))
        return ops.sum(weights * ops.cast(valid, "float32"), axis=1, keepdims=True)

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "n": self.n, "vocab": self.vocab, "buckets": self.buckets}


def cnn_ngram(vocab: int, maxlen: int, width: int = 0) -> keras.Model:
    """Wide and deep: the CNN's logit plus hashed 3- and 4-gram linear terms, trained jointly (the
    n-gram + CNN ensembles of the DGA literature, in one graph so serving runs one model)."""
    inp = _inputs(maxlen)
    emb = layers.Embedding(vocab, 32)(inp)
    x = layers.Dense(128, activation="relu")(_ngram_features(emb, width or 128, (2, 3, 4, 5)))
    deep = layers.Dense(1, name="deep_logit")(layers.Dropout(0.3)(x))
    wide = [HashedNgrams(n, vocab, name=f"ngram{n}")(inp) for n in (3, 4)]
    logit = layers.Add(name="logit_sum")([deep, *wide])
    return keras.Model(inp, layers.Activation("sigmoid", name="p_dga")(logit), name="cnn_ngram")


def bilstm(vocab: int, maxlen: int, width: int = 0) -> keras.Model:
    """Bidirectional LSTM: reads the label from both ends (suffix-like patterns, e.g. banjori)."""
    inp = _inputs(maxlen)
    x = layers.Embedding(vocab, 32)(inp)
    x = layers.Bidirectional(layers.LSTM(width or 64, unroll=True))(x)
    return keras.Model(inp, _head(x, 0.5), name="bilstm")


def cnn_lstm(vocab: int, maxlen: int, width: int = 0) -> keras.Model:
    """Conv1D n-gram features, pooled by 2, then an LSTM over the shorter sequence."""
    inp = _inputs(maxlen)
    x = layers.Embedding(vocab, 32)(inp)
    x = layers.Conv1D(width or 64, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling1D(2)(x)
    x = layers.LSTM(width or 64, unroll=True)(x)
    return keras.Model(inp, _head(x, 0.5), name="cnn_lstm")


def family(vocab: int, maxlen: int, classes: int, width: int = 0) -> keras.Model:
    """The family head: the CNN's n-gram features (widths 2-4) under a softmax over DGA families."""
    inp = _inputs(maxlen)
    emb = layers.Embedding(vocab, 32)(inp)
    x = layers.Dropout(0.3)(layers.Dense(128, activation="relu")(_ngram_features(emb, width or 64, (2, 3, 4))))
    return keras.Model(inp, layers.Dense(classes, activation="softmax", name="family")(x), name="family")


BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "lstm": lstm,
    "cnn": cnn,
    "bilstm": bilstm,
    "cnn_lstm": cnn_lstm,
    "cnn_ngram": cnn_ngram,
    "cnn_shape": cnn_shape,
}


def build(arch: str, vocab: int, maxlen: int, width: int = 0) -> keras.Model:
    """A detector by name (the `--arch` of convert.train)."""
    return BUILDERS[arch](vocab, maxlen, width)
