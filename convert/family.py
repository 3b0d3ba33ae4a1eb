"""The family head: which known DGA family a flagged name most resembles.

    python -m convert.family --out runs/family            # trains, converts, writes family.tflite + .json

A small character CNN with a softmax over the DGA families (trained on DGA names only, same
encoder and cap as the detector). Serving runs it only for names the detector already flagged, and
logs `family_hint` with its probability: a lead for the analyst, never a reason to block.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from convert.data import DEFAULT_DATA_DIR, load
from convert.splits import TEST, TRAIN, VAL, cap_per_family, random_split
from resolverguard.encoding import NameEncoder
from resolverguard.model import METADATA_FORMAT

MIN_NAMES = 50  # families with fewer names are too small to learn a class from


def build(vocab: int, maxlen: int, classes: int):  # noqa: ANN201 - keras types
    import keras
    from keras import layers

    inp = keras.Input(shape=(maxlen,), dtype="int32", name="label")
    emb = layers.Embedding(vocab, 32)(inp)
    pooled = [layers.GlobalMaxPooling1D()(layers.Conv1D(64, w, activation="relu")(emb)) for w in (2, 3, 4)]
    x = layers.Dropout(0.3)(layers.Dense(128, activation="relu")(layers.Concatenate()(pooled)))
    return keras.Model(inp, layers.Dense(classes, activation="softmax", name="family")(x), name="family")


def main(argv: list[str] | None = None) -> None:
    import keras
    import tensorflow as tf

    p = argparse.ArgumentParser(prog="python -m convert.family", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--cap", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=20261123)
    a = p.parse_args(argv)
    keras.utils.set_random_seed(a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    data = load(a.data)
    data = data.subset(cap_per_family(data, a.cap, a.seed) & (data.y == 1))
    names, counts = np.unique(data.family, return_counts=True)
    families = sorted(str(f) for f, n in zip(names, counts, strict=True) if n >= MIN_NAMES)
    data = data.subset(np.isin(data.family, families))
    index = {f: i for i, f in enumerate(families)}
    y = np.array([index[f] for f in data.family.tolist()], dtype=np.int32)
    split = random_split(data, a.seed)
    encoder = NameEncoder()
    x = encoder.encode(data.labels.tolist())
    model = build(encoder.vocab_size, encoder.maxlen, len(families))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    tr, va, te = split.mask(TRAIN), split.mask(VAL), split.mask(TEST)
    model.fit(
        x[tr],
        y[tr],
        validation_data=(x[va], y[va]),
        batch_size=512,
        epochs=a.epochs,
        verbose=2,
        callbacks=[keras.callbacks.EarlyStopping("val_accuracy", patience=1, restore_best_weights=True)],
    )
    probs = model.predict(x[te], batch_size=4096, verbose=0)
    top1 = probs.argmax(axis=1) == y[te]
    per_family = {f: float(top1[y[te] == i].mean()) for i, f in enumerate(families)}
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    content = converter.convert()
    (a.out / "family.tflite").write_bytes(content)
    meta = {
        "format": METADATA_FORMAT,
        "model_version": f"family-{data.digest[:8]}",
        "architecture": "cnn-softmax",
        "input": {"form": "label", "charset": encoder.charset, "maxlen": encoder.maxlen, "padding": "pre"},
        "families": families,
        "thresholds": {},
        "test_top1_accuracy": float(top1.mean()),
        "test_top1_accuracy_per_family": per_family,
        "tflite_sha256": hashlib.sha256(content).hexdigest(),
    }
    (a.out / "family.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"family head: {len(families)} families, test top-1 accuracy {top1.mean():.3f}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
