"""Makes tests/data/digits.tflite + digits.json: a tiny hand-weighted model for the serving tests.

It is a real TFLite model in the shipped model's input format, but its behaviour is known exactly:
a label containing a digit scores ~0.99995, any other label ~0.0000454. The serving tests use it to
show the chain's decisions without depending on what the trained default model learned.

Also tests/data/family2.tflite + .json, a family head in the shipped format with two "families":
`with-digits` (~0.99995 when the label has a digit) and `letters-only`.

    python tests/data/make_digits_model.py     (needs the `train` extra; the outputs are committed)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from resolverguard.encoding import NameEncoder

HERE = Path(__file__).resolve().parent


def main() -> None:
    import keras
    import tensorflow as tf

    encoder = NameEncoder()
    inp = keras.Input(shape=(encoder.maxlen,), dtype="int32")
    emb = keras.layers.Embedding(encoder.vocab_size, 1)
    x = keras.layers.GlobalMaxPooling1D()(emb(inp))
    dense = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(inp, dense(x))
    table = np.zeros((encoder.vocab_size, 1), dtype=np.float32)
    for index, char in enumerate(encoder.charset, start=2):
        table[index, 0] = 1.0 if char.isdigit() else 0.0
    emb.set_weights([table])
    dense.set_weights([np.array([[20.0]], dtype=np.float32), np.array([-10.0], dtype=np.float32)])

    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    (HERE / "digits.tflite").write_bytes(content)
    meta = {
        "format": "resolverguard-model/1",
        "model_version": "test-digits-1",
        "architecture": "hand-weighted: max over chars of [char is digit] -> sigmoid(20x - 10)",
        "input": {"form": "label", "charset": encoder.charset, "maxlen": encoder.maxlen, "padding": "pre"},
        "thresholds": {"log": 0.5, "sinkhole": 0.9, "fpr_1e-3": 0.9},
        "tflite_sha256": hashlib.sha256(content).hexdigest(),
    }
    (HERE / "digits.json").write_text(json.dumps(meta, indent=2) + "\n")
    family_head(encoder, table)


def family_head(encoder: NameEncoder, table: np.ndarray) -> None:
    import keras
    import tensorflow as tf

    inp = keras.Input(shape=(encoder.maxlen,), dtype="int32")
    emb = keras.layers.Embedding(encoder.vocab_size, 1)
    dense = keras.layers.Dense(2, activation="softmax")
    model = keras.Model(inp, dense(keras.layers.GlobalMaxPooling1D()(emb(inp))))
    emb.set_weights([table])
    dense.set_weights([np.array([[10.0, -10.0]], dtype=np.float32), np.array([-5.0, 5.0], dtype=np.float32)])
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    (HERE / "family2.tflite").write_bytes(content)
    meta = {
        "format": "resolverguard-model/1",
        "model_version": "test-family-1",
        "architecture": "hand-weighted softmax: [has digit, has no digit]",
        "input": {"form": "label", "charset": encoder.charset, "maxlen": encoder.maxlen, "padding": "pre"},
        "families": ["with-digits", "letters-only"],
        "thresholds": {},
        "tflite_sha256": hashlib.sha256(content).hexdigest(),
    }
    (HERE / "family2.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
