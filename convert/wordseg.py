"""How word-like benign names and wordlist-DGA names are: the table behind the word-segmentation choice.

    python -m convert.wordseg --words runs/words/wordninja_words.txt.gz    # any word list, one a line

For each benign pool and each wordlist (and pronounceable) family, on names never trained on: the
share whose label splits entirely into >= 2 (>= 3) dictionary words of >= 3 letters, and the share
with >= 80% of its letters covered by such words. A feature can only lift a family over the sinkhole
threshold if fewer than ~1e-4 of the benign names share its value; this table shows whether a word
feature can be that feature.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from convert.data import BENIGN, BENIGN_DNS_ONLY, InputForm
from convert.ngram import WordFeatures
from convert.splits import TRAIN
from convert.train import WORDLIST, TrainConfig, prepare

OTHERS = ("pushdo", "simda", "symmi", "ngioweb", "banjori")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m convert.wordseg", description=__doc__.split("\n")[0])
    p.add_argument("--words", type=Path, required=True)
    p.add_argument("--per-group", type=int, default=3000, help="names sampled per pool or family")
    a = p.parse_args(argv)
    words = WordFeatures(a.words)
    data, split = prepare(TrainConfig("cnn", Path("."), form=InputForm.REGISTRABLE))
    rng = np.random.default_rng(0)
    print(f"dictionary: {a.words.name}, {len(words.words):,} words of >= 3 letters\n")
    print("| names | sampled | fully >= 2 words | fully >= 3 words | >= 80% of letters in words |")
    print("|---|---|---|---|---|")
    for group in (BENIGN, BENIGN_DNS_ONLY, *WORDLIST, *OTHERS):
        rows = np.flatnonzero((data.family == group) & (split.part != TRAIN))
        rows = rng.choice(rows, min(a.per_group, len(rows)), replace=False)
        f = words(data.labels[rows].tolist())
        covered, full2, full3 = f[:, 0], f[:, 2], f[:, 3]
        print(f"| {group} | {len(rows)} | {full2.mean():.3f} | {full3.mean():.3f} | {(covered >= 0.8).mean():.3f} |")


if __name__ == "__main__":
    main()
