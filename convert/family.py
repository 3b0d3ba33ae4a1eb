"""The family head: which known DGA family a flagged name most resembles.

    python -m convert.family --out runs/family            # trains, converts, writes family.tflite + .json

A small character CNN with a softmax over the DGA families (trained on DGA names only, same
encoder and cap as the detector). Its builder lives with the detectors (`convert.architectures.family`),
it trains through the detector's fit loop (`convert.train.fit`) and its metadata is written by the
one writer serving reads (`resolverguard.model.ModelMetadata`). Serving runs it only for names the
detector already flagged, and logs `family_hint` with its probability: a lead for the analyst, never
a reason to block.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from convert.data import DEFAULT_DATA_DIR, InputForm, load_cached
from convert.splits import TEST, TRAIN, VAL, cap_per_family, random_split
from convert.train import CACHE_DIR, fit
from resolverguard.encoding import NameEncoder
from resolverguard.model import ModelMetadata

MIN_NAMES = 50  # families with fewer names are too small to learn a class from


def main(argv: list[str] | None = None) -> None:
    import keras
    import tensorflow as tf

    from convert.architectures import family

    p = argparse.ArgumentParser(prog="python -m convert.family", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--cap", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--maxlen", type=int, default=48)
    p.add_argument("--cache", default=str(CACHE_DIR), help="parsed-data cache directory; '' = none")
    a = p.parse_args(argv)
    keras.utils.set_random_seed(a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    data = load_cached(a.data, InputForm.LABEL, Path(a.cache) if a.cache else None)
    data = data.subset(cap_per_family(data, a.cap, a.seed) & (data.y == 1))
    names, counts = np.unique(data.family, return_counts=True)
    families = sorted(str(f) for f, n in zip(names, counts, strict=True) if n >= MIN_NAMES)
    data = data.subset(np.isin(data.family, families))
    index = {f: i for i, f in enumerate(families)}
    y = np.array([index[f] for f in data.family.tolist()], dtype=np.int32)
    split = random_split(data, a.seed)
    encoder = NameEncoder(maxlen=a.maxlen)
    x = encoder.encode(data.labels.tolist())
    model = family(encoder.vocab_size, encoder.maxlen, len(families))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    tr, va, te = split.mask(TRAIN), split.mask(VAL), split.mask(TEST)
    seconds = fit(
        model,
        (x[tr], y[tr]),
        (x[va], y[va]),
        out=a.out,
        epochs=a.epochs,
        patience=1,
        batch_size=512,
        monitor="val_accuracy",
    )
    probs = model.predict(x[te], batch_size=4096, verbose=0)
    top1 = probs.argmax(axis=1) == y[te]
    per_family = {f: float(top1[y[te] == i].mean()) for i, f in enumerate(families)}
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    content = converter.convert()
    (a.out / "family.tflite").write_bytes(content)
    meta = ModelMetadata(
        model_version=f"family-{data.digest[:8]}",
        architecture="cnn-softmax",
        encoder=encoder,
        input_form=InputForm.LABEL,
        thresholds={},
        extra={
            "families": families,
            "test_top1_accuracy": float(top1.mean()),
            "test_top1_accuracy_per_family": per_family,
            "training": {"seed": a.seed, "cap": a.cap, "train_rows": int(tr.sum()), "train_seconds": round(seconds, 1)},
        },
    )
    meta.write(a.out / "family.tflite", content)
    print(f"family head: {len(families)} families, test top-1 accuracy {top1.mean():.3f}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
