"""The four architectures, one small builder each, so the shape of every model is visible at a glance.

All take int32 rows from `resolverguard.encoding.NameEncoder` and end in one sigmoid (P(DGA)).
Recurrent layers are unrolled: LiteRT has no Flex ops, and an unrolled LSTM converts to builtins.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers


def _inputs(maxlen: int) -> keras.KerasTensor:
    return keras.Input(shape=(maxlen,), dtype="int32", name="label")


def _head(x: keras.KerasTensor, dropout: float) -> keras.KerasTensor:
    x = layers.Dropout(dropout)(x)
    return layers.Dense(1, activation="sigmoid", name="p_dga")(x)


def lstm(vocab: int, maxlen: int) -> keras.Model:
    """Endgame (Woodbridge et al. 2016): embedding -> LSTM(128) -> dropout -> dense sigmoid."""
    inp = _inputs(maxlen)
    x = layers.Embedding(vocab, 128)(inp)
    x = layers.LSTM(128, unroll=True)(x)
    return keras.Model(inp, _head(x, 0.5), name="lstm")


def cnn(vocab: int, maxlen: int) -> keras.Model:
    """Character CNN (Snowman / Farsight style): parallel Conv1D of widths 2-5, global max pool."""
    inp = _inputs(maxlen)
    emb = layers.Embedding(vocab, 32)(inp)
    pooled = [layers.GlobalMaxPooling1D()(layers.Conv1D(128, w, activation="relu")(emb)) for w in (2, 3, 4, 5)]
    x = layers.Dense(128, activation="relu")(layers.Concatenate()(pooled))
    return keras.Model(inp, _head(x, 0.3), name="cnn")


def bilstm(vocab: int, maxlen: int) -> keras.Model:
    """Bidirectional LSTM: reads the label from both ends (suffix-like patterns, e.g. banjori)."""
    inp = _inputs(maxlen)
    x = layers.Embedding(vocab, 32)(inp)
    x = layers.Bidirectional(layers.LSTM(64, unroll=True))(x)
    return keras.Model(inp, _head(x, 0.5), name="bilstm")


def cnn_lstm(vocab: int, maxlen: int) -> keras.Model:
    """Conv1D n-gram features, pooled by 2, then an LSTM over the shorter sequence."""
    inp = _inputs(maxlen)
    x = layers.Embedding(vocab, 32)(inp)
    x = layers.Conv1D(64, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling1D(2)(x)
    x = layers.LSTM(64, unroll=True)(x)
    return keras.Model(inp, _head(x, 0.5), name="cnn_lstm")


BUILDERS: dict[str, Callable[[int, int], keras.Model]] = {
    "lstm": lstm,
    "cnn": cnn,
    "bilstm": bilstm,
    "cnn_lstm": cnn_lstm,
}
