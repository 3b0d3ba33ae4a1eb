"""Train one architecture on one split; write the model, its history and its scores.

    python -m convert.train --arch cnn --out runs/cnn
    python -m convert.train --arch cnn --out runs/cnn-lfo0 --holdout-fold 0

Class weights balance benign against DGA; early stopping watches validation AUC and restores the
best weights. Scores on the validation and test rows are written to `scores.npz`, so evaluation,
threshold calibration and the report need numpy only, never a second pass through TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convert.data import DEFAULT_DATA_DIR, Dataset, load
from convert.splits import TEST, TRAIN, VAL, Split, cap_per_family, family_folds, leave_family_out, random_split
from resolverguard.encoding import NameEncoder
from resolverguard.names import InputForm


@dataclass(frozen=True)
class TrainConfig:
    arch: str
    out: Path
    data_dir: Path = DEFAULT_DATA_DIR
    form: InputForm = InputForm.LABEL
    cap: int = 10_000  # DGA names kept per family
    seed: int = 20261123
    epochs: int = 12
    patience: int = 3
    batch_size: int = 512
    max_train: int = 0  # 0 = all training rows; >0 subsamples (CPU budget for the recurrent models)
    folds: int = 5
    holdout_fold: int = -1  # -1 = random split; k = leave the families of fold k out
    maxlen: int = 48
    # Families never trained on (still evaluated, and reported as not caught). charbot is a benign
    # name with two characters changed; the wordlist DGAs (gozi, suppobox, nymaim2, bigviktor) glue
    # dictionary words together. Both are lexically benign by construction: measured on the first
    # run, training on them bought almost no recall at usable thresholds (<= 0.09 at FPR 1e-3) and
    # taught the model to distrust word-compound names ("heavyduty", "includehelp"), which is what
    # long-tail benign names look like. Users would pay for that in false positives.
    exclude: tuple[str, ...] = ("charbot", "gozi", "suppobox", "nymaim2", "bigviktor")


def prepare(cfg: TrainConfig) -> tuple[Dataset, Split]:
    """Loads, caps and splits the data exactly the same way for every architecture with one seed."""
    data = load(cfg.data_dir, cfg.form)
    data = data.subset(cap_per_family(data, cfg.cap, cfg.seed))
    split = random_split(data, cfg.seed)
    if cfg.holdout_fold >= 0:
        held = family_folds(data, cfg.folds, cfg.seed)[cfg.holdout_fold]
        split = leave_family_out(data, split, held)
    return data, split


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Weights that make both classes count the same in the loss."""
    n, pos = len(y), int(y.sum())
    return {0: n / (2 * (n - pos)), 1: n / (2 * pos)}


def train(cfg: TrainConfig) -> None:
    import keras

    from convert.architectures import BUILDERS

    keras.utils.set_random_seed(cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    data, split = prepare(cfg)
    encoder = NameEncoder(maxlen=cfg.maxlen)
    x = encoder.encode(data.labels.tolist())
    train_rows = np.flatnonzero(split.mask(TRAIN) & ~np.isin(data.family, cfg.exclude))
    if cfg.max_train and len(train_rows) > cfg.max_train:
        train_rows = np.sort(np.random.default_rng(cfg.seed).choice(train_rows, cfg.max_train, replace=False))
    val_rows = np.flatnonzero(split.mask(VAL) & ~np.isin(data.family, cfg.exclude))
    model = BUILDERS[cfg.arch](encoder.vocab_size, encoder.maxlen)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(num_thresholds=2000, name="auc")],
    )
    callbacks = [
        keras.callbacks.EarlyStopping("val_auc", mode="max", patience=cfg.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau("val_auc", mode="max", factor=0.3, patience=1, min_lr=1e-5),
        keras.callbacks.ModelCheckpoint(str(cfg.out / "model.keras"), "val_auc", mode="max", save_best_only=True),
        keras.callbacks.CSVLogger(str(cfg.out / "history.csv")),
    ]
    started = time.time()
    model.fit(
        x[train_rows],
        data.y[train_rows],
        validation_data=(x[val_rows], data.y[val_rows]),
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        class_weight=class_weights(data.y[train_rows]),
        callbacks=callbacks,
        verbose=2,
    )
    seconds = time.time() - started
    model.save(cfg.out / "model.keras")
    rows = np.flatnonzero(split.part != TRAIN)  # excluded families too: their recall is reported
    scores = model.predict(x[rows], batch_size=4096, verbose=0).reshape(-1)
    np.savez_compressed(
        cfg.out / "scores.npz",
        labels=data.labels[rows],
        y=data.y[rows],
        family=data.family[rows],
        part=split.part[rows],
        score=scores.astype(np.float32),
    )
    info = {
        **asdict(cfg),
        "out": str(cfg.out),
        "data_dir": str(cfg.data_dir),
        "form": cfg.form.value,
        "held_out": list(split.held_out),
        "train_rows": int(len(train_rows)),
        "val_rows": int(len(val_rows)),
        "test_rows": int(split.mask(TEST).sum()),
        "train_seconds": round(seconds, 1),
        "params": int(model.count_params()),
        "data_digest": data.digest,
        "charset": encoder.charset,
        "epochs_run": len(model.history.history.get("loss", [])),
    }
    (cfg.out / "run.json").write_text(json.dumps(info, indent=2))


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(prog="python -m convert.train", description=__doc__.split("\n")[0])
    p.add_argument("--arch", required=True, choices=["lstm", "cnn", "bilstm", "cnn_lstm"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--form", choices=[f.value for f in InputForm], default=InputForm.LABEL.value)
    defaults = TrainConfig("cnn", Path("."))
    for name in ("cap", "seed", "epochs", "patience", "batch_size", "max_train", "folds", "holdout_fold", "maxlen"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    p.add_argument("--exclude", default=",".join(defaults.exclude), help="comma-separated families never trained on")
    a = p.parse_args(argv)
    ints = {
        name: getattr(a, name)
        for name in ("cap", "seed", "epochs", "patience", "batch_size", "max_train", "folds", "holdout_fold", "maxlen")
    }
    excluded = tuple(f for f in a.exclude.split(",") if f)
    return TrainConfig(a.arch, a.out, a.data, InputForm(a.form), exclude=excluded, **ints)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    train(parse_args())
