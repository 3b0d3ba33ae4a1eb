"""Splits: a random stratified train/validation/test split, and leave-family-out folds.

The random split says how well the model knows the families it trained on; the leave-family-out
folds say how it does on a family it has never seen, which is what a new malware release looks like.
Both are seeded and written next to the run, so a reported figure can be traced to its split.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from convert.data import BENIGN, BENIGN_DNS_ONLY, BENIGN_FAMILIES, Dataset

TRAIN, VAL, TEST = 0, 1, 2


@dataclass(frozen=True)
class Split:
    """`part[i]` is TRAIN, VAL or TEST for row i; `held_out` are families absent from TRAIN and VAL."""

    part: npt.NDArray[np.int8]
    held_out: tuple[str, ...] = ()

    def mask(self, which: int) -> npt.NDArray[np.bool_]:
        return self.part == which


def cap_per_family(data: Dataset, cap: int, seed: int) -> npt.NDArray[np.bool_]:
    """Keeps at most `cap` names of each DGA family (all benign names), so that a handful of
    prolific generators do not decide what "DGA" means for the model."""
    rng = np.random.default_rng(seed)
    keep = data.y == 0
    for family in np.unique(data.family[data.y == 1]):
        rows = np.flatnonzero(data.family == family)
        keep[rng.permutation(rows)[:cap]] = True
    return keep


# Half of the trusted benign names are kept for calibration (VAL): a 1e-4 threshold then rests on
# ~12 names instead of ~3, at the price of training on 35% of them (see models/REPORT.md).
BENIGN_VAL = 0.50


def random_split(
    data: Dataset, seed: int, val: float = 0.15, test: float = 0.15, benign_val: float = BENIGN_VAL
) -> Split:
    """Stratified by family (benign is one stratum), so every family appears in every part."""
    rng = np.random.default_rng(seed)
    part = np.full(len(data), TRAIN, dtype=np.int8)
    for family in np.unique(data.family):
        rows = rng.permutation(np.flatnonzero(data.family == family))
        share = benign_val if family == BENIGN else val
        n_test, n_val = round(len(rows) * test), round(len(rows) * share)
        part[rows[:n_test]] = TEST
        part[rows[n_test : n_test + n_val]] = VAL
    part[np.isin(data.family, BENIGN_FAMILIES[1:])] = TEST  # evaluation only, see convert.data
    return Split(part)


def tail_hash(texts: npt.NDArray[np.str_]) -> npt.NDArray[np.uint32]:
    """A fixed hash of each name's label (the part before the first dot), the same in every run and
    input form: its parity halves the long tail (calibration / test, `convert.evaluate.Scores`), and
    `% 4 == 0`, a half of the calibration half, is what `--tail-train` trains on."""
    return np.array([zlib.crc32(t.split(".", 1)[0].encode()) for t in texts.tolist()], dtype=np.uint32)


TAIL_EIGHTHS = (0, 4, 2)  # `tail_hash % 8` of the eighths --tail-train takes, in order: all even (calibration half)


def with_tail_trained(data: Dataset, split: Split, eighths: int = 2) -> Split:
    """The split with `eighths` eighths of the long tail (all from its calibration half; 2, the
    default, is a quarter: `tail_hash % 4 == 0`) moved to TRAIN: benign variety the trusted lists lack
    (CDN, API, regional names), at the cost of calibrating on the rest of the half. The long-tail test
    half is untouched."""
    if not 1 <= eighths <= len(TAIL_EIGHTHS):
        raise ValueError(f"tail eighths must be 1..{len(TAIL_EIGHTHS)} (the calibration half keeps one), got {eighths}")
    part = split.part.copy()
    tail = np.flatnonzero(data.family == BENIGN_DNS_ONLY)
    part[tail[np.isin(tail_hash(data.labels[tail]) % 8, TAIL_EIGHTHS[:eighths])]] = TRAIN
    return Split(part, split.held_out)


def family_folds(data: Dataset, n_folds: int, seed: int) -> list[tuple[str, ...]]:
    """Deals the DGA families into `n_folds` groups, in a seeded random order."""
    families = sorted(set(np.unique(data.family).tolist()) - set(BENIGN_FAMILIES))
    order = np.random.default_rng(seed).permutation(len(families))
    return [tuple(sorted(families[i] for i in order[k::n_folds])) for k in range(n_folds)]


def leave_family_out(data: Dataset, base: Split, held_out: tuple[str, ...]) -> Split:
    """The random split with every name of the held-out families moved to TEST."""
    part = base.part.copy()
    part[np.isin(data.family, held_out)] = TEST
    return Split(part, held_out)
