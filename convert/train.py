"""Train one architecture on one split; write the model, its history and its scores.

    python -m convert.train --arch cnn --out runs/cnn
    python -m convert.train --arch cnn --out runs/cnn-lfo0 --holdout-fold 0

Class weights balance benign against DGA (`--balance family`: every DGA family weighs the same);
early stopping watches validation AUC and restores the best weights. Scores (and logits) on the
validation and test rows are written to `scores.npz`, so evaluation, threshold calibration and the
report need numpy only, never a second pass through TensorFlow. `fit` is shared with the family
head (convert.family), so both models train through one path.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from convert.augment import compound_copies, drop_suffixes, random_names
from convert.data import BENIGN, CLEANING_RULES, DEFAULT_DATA_DIR, Dataset, InputForm, dga_families, load_cached
from convert.splits import (
    BENIGN_VAL,
    TEST,
    TRAIN,
    VAL,
    Split,
    cap_per_family,
    family_folds,
    leave_family_out,
    random_split,
    with_tail_trained,
)
from resolverguard.encoding import NameEncoder

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / "runs" / "cache"
# charbot is a benign name with two characters changed: lexically benign by construction, and
# training on it teaches the model to distrust every short brand name. The wordlist DGAs (gozi,
# suppobox, nymaim2, bigviktor) are a measured choice: see models/REPORT.md, "Experiments".
WORDLIST = ("gozi", "suppobox", "nymaim2", "bigviktor")


@dataclass(frozen=True)
class TrainConfig:
    arch: str
    out: Path
    data_dir: Path = DEFAULT_DATA_DIR
    form: InputForm = InputForm.LABEL
    cap: int = 10_000  # DGA names kept per family
    seed: int = 20261123  # the split, the folds, the subsample and the augmentation
    init_seed: int = 0  # the weights' initialisation and the batches' order; 0 = `seed` (several seeds, one split)
    epochs: int = 12
    patience: int = 3
    batch_size: int = 512
    max_train: int = 0  # 0 = all training rows; >0 subsamples (CPU budget)
    folds: int = 5
    holdout_fold: int = -1  # -1 = random split; k = leave the families of fold k out
    maxlen: int = 48
    width: int = 0  # filters / units of the architecture; 0 = its default
    balance: str = "class"  # "class": benign vs DGA; "family": and every DGA family weighs the same
    cleaning: str = "shape"  # the benign cleaning rule, convert.data.vetted_pools: one of CLEANING_RULES
    benign_val: float = BENIGN_VAL  # share of trusted benign names kept out of training for calibration
    suffix_dropout: float = 0.0  # form registrable: share of training names given a random suffix
    compounds: bool = False  # add hyphen-free copies of hyphenated benign training labels
    random_dga: int = 0  # add this many random names (convert.augment.random_names) as DGA rows
    exclude: tuple[str, ...] = ("charbot", *WORDLIST)  # families never trained on (still evaluated)
    tail_train: bool = False  # train on a quarter of the long tail (convert.splits.with_tail_trained)
    tail_eighths: int = 2  # how much of it with tail_train, in eighths of the long tail (2: the quarter)
    cache: Path | None = CACHE_DIR  # where the parsed data is kept between runs; None = parse again


def prepare(cfg: TrainConfig) -> tuple[Dataset, Split]:
    """Loads, caps and splits the data exactly the same way for every architecture with one seed."""
    data = load_cached(cfg.data_dir, cfg.form, cfg.cache, cfg.cleaning)
    data = data.subset(cap_per_family(data, cfg.cap, cfg.seed))
    split = random_split(data, cfg.seed, benign_val=cfg.benign_val)
    if cfg.holdout_fold >= 0:
        held = family_folds(data, cfg.folds, cfg.seed)[cfg.holdout_fold]
        split = leave_family_out(data, split, held)
    if cfg.tail_train:
        split = with_tail_trained(data, split, cfg.tail_eighths)
    return data, split


def class_weights(y: npt.NDArray[Any]) -> dict[int, float]:
    """Weights that make both classes count the same in the loss."""
    n, pos = len(y), int(y.sum())
    return {0: n / (2 * (n - pos)), 1: n / (2 * pos)}


def sample_weights(y: npt.NDArray[Any], family: npt.NDArray[np.str_], balance: str) -> npt.NDArray[np.float32]:
    """Per-row weights: both classes weigh half; with `family`, each DGA family weighs the same
    (a family of 300 names counts as much as one of 10,000: unseen families are more often small
    and odd than like the prolific generators)."""
    w = np.vectorize(class_weights(y).get)(y).astype(np.float32)
    if balance == "family":
        dga = np.flatnonzero(y == 1)
        names, inverse, counts = np.unique(family[dga], return_inverse=True, return_counts=True)
        w[dga] = len(y) / (2 * len(names) * counts[inverse])
    return w


def training_rows(cfg: TrainConfig, data: Dataset, split: Split) -> npt.NDArray[np.int64]:
    rows = np.flatnonzero(split.mask(TRAIN) & ~np.isin(data.family, cfg.exclude))
    if cfg.max_train and len(rows) > cfg.max_train:
        rows = np.sort(np.random.default_rng(cfg.seed).choice(rows, cfg.max_train, replace=False))
    return rows


def training_texts(cfg: TrainConfig, data: Dataset, rows: npt.NDArray[np.int64]) -> tuple[Any, Any, Any]:
    """(texts, y, family) of the training rows after the configured augmentations."""
    texts, y, family = data.labels[rows], data.y[rows], data.family[rows]
    if cfg.compounds:
        extra = compound_copies(texts[family == BENIGN])
        texts = np.concatenate([texts.astype(object), extra.astype(object)]).astype(np.str_)
        y = np.concatenate([y, np.zeros(len(extra), dtype=y.dtype)])
        family = np.concatenate([family.astype(object), np.full(len(extra), BENIGN, dtype=object)]).astype(np.str_)
    if cfg.random_dga:
        extra = random_names(cfg.random_dga, np.random.default_rng(cfg.seed + 2))
        if cfg.form is InputForm.LABEL:
            extra = np.array([t.split(".", 1)[0] for t in extra.tolist()], dtype=np.str_)
        texts = np.concatenate([texts.astype(object), extra.astype(object)]).astype(np.str_)
        y = np.concatenate([y, np.ones(len(extra), dtype=y.dtype)])
        family = np.concatenate([family.astype(object), np.full(len(extra), "random", dtype=object)]).astype(np.str_)
    if cfg.suffix_dropout and cfg.form is InputForm.REGISTRABLE:
        texts = drop_suffixes(texts, cfg.suffix_dropout, np.random.default_rng(cfg.seed + 1))
    return texts, y, family


def fit(
    model: Any,
    train: tuple[Any, Any],
    val: tuple[Any, Any],
    *,
    out: Path,
    epochs: int,
    patience: int,
    batch_size: int,
    monitor: str,
    sample_weight: Any = None,
) -> float:
    """The one fit loop (detector and family head): early stopping on `monitor` with the best
    weights restored, learning rate cut on a plateau, best checkpoint and history under `out`.
    Returns the seconds spent."""
    import keras

    callbacks = [
        keras.callbacks.EarlyStopping(monitor, mode="max", patience=patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor, mode="max", factor=0.3, patience=1, min_lr=1e-5),
        keras.callbacks.ModelCheckpoint(str(out / "model.keras"), monitor, mode="max", save_best_only=True),
        keras.callbacks.CSVLogger(str(out / "history.csv")),
    ]
    started = time.time()
    model.fit(
        train[0],
        train[1],
        sample_weight=sample_weight,
        validation_data=val,
        batch_size=batch_size,
        epochs=epochs,
        callbacks=callbacks,
        verbose=2,
        shuffle=True,
    )
    return time.time() - started


def train(cfg: TrainConfig) -> None:
    import keras

    from convert.architectures import build

    keras.utils.set_random_seed(cfg.init_seed or cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    data, split = prepare(cfg)
    encoder = NameEncoder(maxlen=cfg.maxlen)
    rows = training_rows(cfg, data, split)
    texts, y_train, fam_train = training_texts(cfg, data, rows)
    val_rows = np.flatnonzero(split.mask(VAL) & ~np.isin(data.family, cfg.exclude))
    model = build(cfg.arch, encoder.vocab_size, encoder.maxlen, cfg.width)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(num_thresholds=2000, name="auc")],
    )
    seconds = fit(
        model,
        (encoder.encode(texts.tolist()), y_train),
        (encoder.encode(data.labels[val_rows].tolist()), data.y[val_rows]),
        out=cfg.out,
        epochs=cfg.epochs,
        patience=cfg.patience,
        batch_size=cfg.batch_size,
        monitor="val_auc",
        sample_weight=sample_weights(y_train, fam_train, cfg.balance),
    )
    model.save(cfg.out / "model.keras")
    write_scores(cfg, model, encoder, data, split)
    info = {
        **asdict(cfg),
        "out": str(cfg.out),
        "data_dir": str(cfg.data_dir),
        "cache": str(cfg.cache),
        "form": cfg.form.value,
        "held_out": list(split.held_out),
        "trained_families": dga_families(fam_train),
        "train_rows": int(len(texts)),
        "val_rows": int(len(val_rows)),
        "test_rows": int(split.mask(TEST).sum()),
        "train_seconds": round(seconds, 1),
        "params": int(model.count_params()),
        "data_digest": data.digest,
        "charset": encoder.charset,
        "epochs_run": len(model.history.history.get("loss", [])),
    }
    (cfg.out / "run.json").write_text(json.dumps(info, indent=2))


def save_scores(
    out: Path,
    labels: npt.NDArray[Any],
    y: npt.NDArray[Any],
    family: npt.NDArray[Any],
    part: npt.NDArray[Any],
    logits: npt.NDArray[np.float64],
) -> None:
    """The one writer of a run's `scores.npz` (CNN, linear stage, ensembles), which convert.evaluate
    reads: the rows, their sigmoid score and the logit (clipped to ±700 before exp: no float64 overflow, and
    every float32 score the same as unclipped)."""
    np.savez_compressed(
        out / "scores.npz",
        labels=labels,
        y=y,
        family=family,
        part=part,
        score=(1.0 / (1.0 + np.exp(-np.clip(logits, -700, 700)))).astype(np.float32),
        logit=logits.astype(np.float32),
    )


def write_scores(cfg: TrainConfig, model: Any, encoder: NameEncoder, data: Dataset, split: Split) -> None:
    """Scores and logits of every row not trained on (excluded families too: their recall is
    reported). The logit keeps the order of names a saturated float32 sigmoid would tie at 1.0."""
    from convert.quantize import logit_model

    rows = np.flatnonzero(split.part != TRAIN)
    x = encoder.encode(data.labels[rows].tolist())
    logits = logit_model(model).predict(x, batch_size=4096, verbose=0).reshape(-1).astype(np.float64)
    save_scores(cfg.out, data.labels[rows], data.y[rows], data.family[rows], split.part[rows], logits)


INT_OPTIONS = ("cap", "seed", "epochs", "patience", "batch_size", "max_train", "folds", "holdout_fold", "maxlen")
INT_OPTIONS += ("random_dga", "init_seed")


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(prog="python -m convert.train", description=__doc__.split("\n")[0])
    p.add_argument("--arch", required=True, choices=["lstm", "cnn", "bilstm", "cnn_lstm", "cnn_ngram", "cnn_shape"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--form", choices=[f.value for f in InputForm], default=InputForm.LABEL.value)
    defaults = TrainConfig("cnn", Path("."))
    for name in (*INT_OPTIONS, "width"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    p.add_argument("--balance", choices=["class", "family"], default=defaults.balance)
    p.add_argument("--suffix-dropout", type=float, default=defaults.suffix_dropout)
    p.add_argument("--benign-val", type=float, default=defaults.benign_val)
    p.add_argument("--cleaning", choices=CLEANING_RULES, default=defaults.cleaning)
    p.add_argument("--compounds", action="store_true")
    p.add_argument("--tail-train", action="store_true", help="train on a quarter of the long tail as benign")
    p.add_argument("--tail-eighths", type=int, default=defaults.tail_eighths, help="with --tail-train: 1-3 eighths")
    p.add_argument("--exclude", default=",".join(defaults.exclude), help="comma-separated families never trained on")
    a = p.parse_args(argv)
    known = {f.name for f in fields(TrainConfig)}
    options = {k: v for k, v in vars(a).items() if k in known and k not in {"arch", "out", "form", "exclude"}}
    options["data_dir"] = a.data
    excluded = tuple(f for f in a.exclude.split(",") if f)
    return TrainConfig(a.arch, a.out, form=InputForm(a.form), exclude=excluded, **options)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    train(parse_args())
