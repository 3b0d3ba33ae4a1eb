"""Train the linear stage: logistic regression over hashed character n-grams (scikit-learn, CPU minutes).

    python -m convert.ngram --out runs/n-lr-lfo0 --holdout-fold 0 --form registrable --suffix-dropout 0.5

Same data, split, exclusions and augmentations as `convert.train` (it reuses `prepare`,
`training_rows` and `training_texts`), same `scores.npz` + `run.json`, so `convert.experiments`
and `convert.evaluate` read its runs like the CNN's. The features come from
`resolverguard.ngrams.NgramHasher`, the one featurizer serving uses too; the scores written are those
of the saved weights (float16, as shipped), so the file and the figures agree.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from convert.data import Dataset, dga_families
from convert.labelstats import LabelStats
from convert.splits import TEST, TRAIN, Split
from convert.train import (
    TrainConfig,
    parse_args,
    prepare,
    sample_weights,
    save_scores,
    training_rows,
    training_texts,
)
from resolverguard.encoding import NameEncoder
from resolverguard.ngrams import DENSE, LinearWeights, NgramHasher

Extra = Callable[[list[str]], Any]  # an experiment's feature block: texts -> (n, k) dense or sparse rows


class WordFeatures:
    """Word-segmentation features of the label (an experiment, `--words FILE`; not served): how much
    of the label splits into words of a dictionary of >= 3 letters, and into how many. Benign compound
    names are the negatives that teach the model a name of words can be benign."""

    NAMES = ("covered", "full", "full2", "full3", "longest")

    def __init__(self, path: Path) -> None:
        import gzip

        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            self.words = {w.strip().lower() for w in handle if len(w.strip()) >= 3 and w.strip().isalpha()}
        self.longest = max(map(len, self.words))

    def one(self, label: str) -> tuple[float, ...]:
        flat = label.split(".", 1)[0].replace("-", "")
        n = len(flat)
        if not n:
            return (0.0,) * len(self.NAMES)
        covered, fewest, longest = [0] * (n + 1), [0] + [99] * n, 0
        for i in range(1, n + 1):
            covered[i] = covered[i - 1]
            for j in range(max(0, i - self.longest), i - 2):
                if flat[j:i] in self.words:
                    covered[i] = max(covered[i], covered[j] + i - j)
                    fewest[i] = min(fewest[i], fewest[j] + 1)
                    longest = max(longest, i - j)
        words = fewest[n] if fewest[n] < 99 else 0
        return (covered[n] / n, float(words > 0), float(words >= 2), float(words >= 3), longest / n)

    def __call__(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return np.array([self.one(t) for t in texts], dtype=np.float32).reshape(len(texts), len(self.NAMES))


def design(hasher: NgramHasher, texts: list[str], extras: Sequence[Extra] = ()) -> Any:
    """The sparse (n, n_features) matrix of n-gram counts (characters', then shapes') and dense
    features (then each experiment's block: word features, label statistics)."""
    from scipy import sparse

    idx, valid = hasher.hashed(texts)
    n, k = idx.shape
    rows = np.repeat(np.arange(n), k)[valid.reshape(-1)]
    grams = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, idx.reshape(-1)[valid.reshape(-1)])),
        shape=(n, hasher.n_hashed),
    )
    parts = [grams, sparse.csr_matrix(hasher.dense(texts))]
    parts.extend(sparse.csr_matrix(block(texts)) for block in extras)
    return sparse.hstack(parts, format="csr")


def fit_linear(x: Any, y: npt.NDArray[Any], w: npt.NDArray[np.float32], c: float, seed: int) -> tuple[Any, Any]:
    """(coef, intercept) of an L2 logistic regression; `c` is scikit-learn's inverse regularisation."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, solver="liblinear", max_iter=200, random_state=seed)
    model.fit(x, y, sample_weight=w / w.mean())
    return model.coef_.reshape(-1), float(model.intercept_[0])


def train(
    cfg: TrainConfig,
    c: float,
    bits: int,
    words: Path | None = None,
    shapes: tuple[int, ...] = (),
    orders: tuple[int, ...] = (1, 2, 3, 4, 5),
    stats: bool = False,
) -> None:
    cfg.out.mkdir(parents=True, exist_ok=True)
    data, split = prepare(cfg)
    hasher = NgramHasher(NameEncoder(maxlen=cfg.maxlen), orders=orders, bits=bits, shapes=shapes)
    rows = training_rows(cfg, data, split)
    texts, y_train, fam_train = training_texts(cfg, data, rows)
    segment = WordFeatures(words) if words else None
    extras: list[Extra] = [b for b in (segment, LabelStats() if stats else None) if b is not None]
    started = time.time()
    coef, bias = fit_linear(
        design(hasher, texts.tolist(), extras), y_train, sample_weights(y_train, fam_train, cfg.balance), c, cfg.seed
    )
    seconds = time.time() - started
    n_hash, n_dense = hasher.n_hashed, len(DENSE)
    stage = LinearWeights(
        hasher, coef[:n_hash].astype(np.float16).astype(np.float32), coef[n_hash : n_hash + n_dense], bias
    )
    stage.save(cfg.out / "linear.npz")
    write_scores(cfg.out, stage, data, split, (extras, coef[n_hash + n_dense :]) if extras else None)
    info = {
        **asdict(cfg),
        "arch": "ngram_lr",
        "out": str(cfg.out),
        "data_dir": str(cfg.data_dir),
        "cache": str(cfg.cache),
        "form": cfg.form.value,
        "width": bits,
        "C": c,
        "words": str(words) if words else None,
        "shapes": list(shapes),
        "word_weights": dict(zip(WordFeatures.NAMES, coef[n_hash + n_dense :].tolist(), strict=False)) if words else {},
        "stats": stats,
        "held_out": list(split.held_out),
        "trained_families": dga_families(fam_train),
        "train_rows": int(len(texts)),
        "test_rows": int(split.mask(TEST).sum()),
        "train_seconds": round(seconds, 1),
        "params": int(n_hash + len(stage.dense) + 1),
        "nonzero_weights": int(np.count_nonzero(stage.weights)),
        "data_digest": data.digest,
        "epochs_run": 0,
    }
    (cfg.out / "run.json").write_text(json.dumps(info, indent=2))


def write_scores(
    out: Path, stage: LinearWeights, data: Dataset, split: Split, extra: tuple[Sequence[Extra], Any] | None = None
) -> None:
    """Like `convert.train.write_scores`: every row not trained on, in the same order (with the
    experiment blocks' columns and weights, which no served file holds)."""
    rows = np.flatnonzero(split.part != TRAIN)
    texts = data.labels[rows].tolist()
    logits = np.concatenate([stage.logits(texts[i : i + 8192]) for i in range(0, len(texts), 8192)])
    if extra is not None:
        from scipy import sparse

        blocks = sparse.hstack([sparse.csr_matrix(block(texts)) for block in extra[0]], format="csr")
        logits = logits + blocks.astype(np.float64) @ extra[1].astype(np.float64)
    save_scores(out, data.labels[rows], data.y[rows], data.family[rows], split.part[rows], logits)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--C", type=float, default=1.0)
    p.add_argument("--bits", type=int, default=18)
    p.add_argument("--words", type=Path, help="word list (one word a line, .gz or plain): word-segmentation features")
    p.add_argument("--orders", default="1,2,3,4,5", help="orders of the hashed character n-grams")
    p.add_argument("--stats", action="store_true", help="binned label statistics x length (convert.labelstats)")
    p.add_argument("--shapes", default="", help="orders of the shape (character-class) n-grams, e.g. 3,4,5,6")
    own, rest = p.parse_known_args(argv)
    cfg = parse_args(["--arch", "cnn", *rest])
    shapes = tuple(int(o) for o in own.shapes.split(",") if o)
    train(cfg, own.C, own.bits, own.words, shapes, tuple(int(o) for o in own.orders.split(",")), own.stats)


if __name__ == "__main__":
    main()
