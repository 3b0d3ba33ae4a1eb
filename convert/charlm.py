"""A family-agnostic member: a character language model of BENIGN labels only (#13, session 12).

    python -m convert.charlm fit --out lm5        # runs/lm5-lfo0..4 and runs/lm5-rand, one fit
    python -m convert.charlm combine --members v-ng1,lm5-llr --how mean --out c-ng-lm

An interpolated Kneser-Ney character n-gram model (orders 1..`order`, start marks `^`, end mark `$`)
fitted on the trusted benign TRAINING labels of the split (the part of the name before the first dot;
never calibration, test, long-tail or DGA names). It never sees a DGA family, so a family held out
is as unseen to it as every other. A name's scores, all "higher = less like a benign label":

* `nll`: mean negative log-likelihood per symbol (nats, end mark included): length-normalised;
* `llr`: log P_uniform(label) - log P_lm(label), uniform over the model's alphabet: length-aware
  (a long random label collects more evidence than a short one; a short one is never flagged alone);
* `llr_sqrt`: `llr` / sqrt(symbols), between the two;
* `llr_class`: like `llr`, the uniform generator drawing from the label's own character classes
  (letters, digits, hyphen): a random all-letter label is not made to look benign by the digits
  it lacks.

The benign training rows are the same in every fold (the folds move DGA families only), so one fit
serves all folds; `fit` checks it. Each score is written as a run of its own (`scores.npz` +
`run.json`, scaled so its sigmoid never saturates), so `convert.experiments` calibrates it on each
fold's calibration pool like any trained model. `combine` mixes members like `convert.ensemble`:
`mean` of logits, the LM first mapped to a logit by a 2-parameter logistic fit (Platt) on the
fold's validation rows of the families it trained on (never the held-out ones); `max` / `rmean` of
the calibration rarities.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from convert.data import BENIGN
from convert.evaluate import Scores
from convert.splits import TRAIN, VAL
from convert.train import TrainConfig, parse_args, prepare, save_scores

BOS, EOS = "^", "$"
VARIANTS = ("nll", "llr", "llr_sqrt", "llr_class")
# Divisors that keep each variant's values within about +-30, where a float64 sigmoid keeps them apart.
SCALE = {"nll": 1.0, "llr": 4.0, "llr_sqrt": 1.0, "llr_class": 4.0}


def label_of(text: str) -> str:
    """The part the model reads: the label before the first dot."""
    return text.split(".", 1)[0]


class CharLM:
    """Interpolated Kneser-Ney over characters, stored in backoff form: `logp[gram]` for every
    n-gram seen in training (its interpolated log-probability), `backoff[history]` the log weight
    of the lower order for a history seen. Exactly the interpolated model, and a plain table lookup
    per order at scoring time (what a hashed C table would hold)."""

    def __init__(self, order: int = 5) -> None:
        self.order = order
        self.logp: dict[str, float] = {}
        self.backoff: dict[str, float] = {}
        self.alphabet: list[str] = []
        self.discounts: list[float] = []
        self.uniform = 0.0

    def fit(self, labels: list[str]) -> CharLM:
        n_max = self.order
        raw: list[Counter[str]] = [Counter() for _ in range(n_max + 1)]
        chars: set[str] = {EOS}
        for lab in labels:
            chars.update(lab)
            padded = BOS * (n_max - 1) + lab + EOS
            for i in range(n_max - 1, len(padded)):
                for k in range(1, n_max + 1):
                    gram = padded[i - k + 1 : i + 1]
                    if k > 1 and gram[0] == BOS and gram[1] == BOS:
                        continue  # only one start mark in front of a history shorter than the order
                    raw[k][gram] += 1
        self.alphabet = sorted(chars)
        # KN counts: the highest order and grams starting at the start mark keep raw counts; the
        # others count the distinct characters seen before them (continuation counts).
        counts: list[dict[str, int]] = [{} for _ in range(n_max + 1)]
        counts[n_max] = dict(raw[n_max])
        for k in range(1, n_max):
            cont: Counter[str] = Counter(g[1:] for g in raw[k + 1] if g[0] != BOS or g[1:2] != BOS)
            counts[k] = {g: (c if g[0] == BOS else cont.get(g, c)) for g, c in raw[k].items()}
        self.discounts = [0.0]
        for k in range(1, n_max + 1):
            n1 = sum(1 for c in counts[k].values() if c == 1)
            n2 = sum(1 for c in counts[k].values() if c == 2)
            self.discounts.append(n1 / (n1 + 2 * n2) if n1 + n2 else 0.5)
        uniform = 1.0 / len(self.alphabet)
        prob: list[dict[str, float]] = [{} for _ in range(n_max + 1)]
        for k in range(1, n_max + 1):
            total: Counter[str] = Counter()
            types: Counter[str] = Counter()
            for g, c in counts[k].items():
                total[g[:-1]] += c
                types[g[:-1]] += 1
            d = self.discounts[k]
            gamma = {h: d * types[h] / total[h] for h in total}
            for g, c in counts[k].items():
                h = g[:-1]
                lower = prob[k - 1].get(g[1:]) if k > 1 else uniform
                if lower is None:
                    lower = self._lower(prob, g[1:], uniform)
                prob[k][g] = max(c - d, 0.0) / total[h] + gamma[h] * lower
            for h, v in gamma.items():
                self.backoff[h] = math.log(v) if v > 0 else -1e9
        self.uniform = math.log(uniform)
        self.logp = {g: math.log(p) for k in range(1, n_max + 1) for g, p in prob[k].items()}
        return self

    def _lower(self, prob: list[dict[str, float]], gram: str, uniform: float) -> float:
        """The interpolated probability of a gram not seen at its own order (backoff form)."""
        k = len(gram)
        if k == 0:
            return uniform
        p = prob[k].get(gram)
        if p is not None:
            return p
        w = self.backoff.get(gram[:-1], 0.0)
        return math.exp(w) * self._lower(prob, gram[1:], uniform)

    def logprob(self, label: str) -> float:
        """log P(label + end mark) under the model (nats)."""
        n = self.order
        padded = BOS * (n - 1) + label + EOS
        logp, backoff, total = self.logp, self.backoff, 0.0
        for i in range(n - 1, len(padded)):
            for k in range(n, 0, -1):
                gram = padded[i - k + 1 : i + 1]
                if k > 1 and gram[0] == BOS and gram[1] == BOS:
                    continue
                v = logp.get(gram)
                if v is not None:
                    total += v
                    break
                total += backoff.get(gram[:-1], 0.0)
            else:
                total += self.uniform
        return total

    def scores(self, labels: list[str]) -> dict[str, npt.NDArray[np.float64]]:
        """Every variant for each label (see the module's docstring)."""
        lp = np.array([self.logprob(x) for x in labels], dtype=np.float64)
        symbols = np.array([len(x) + 1 for x in labels], dtype=np.float64)
        llr = symbols * self.uniform - lp  # log P_uniform - log P_lm
        classes = np.array([class_alphabet(x) for x in labels], dtype=np.float64)
        llr_class = symbols * -np.log(classes) - lp  # uniform over the label's own character classes
        return {"nll": -lp / symbols, "llr": llr, "llr_sqrt": llr / np.sqrt(symbols), "llr_class": llr_class}


def class_alphabet(label: str) -> int:
    """Symbols a uniform generator of this label's character classes draws from: 26 if it has a
    letter, 10 if a digit, 1 if a hyphen, any other character 1 each, plus the end mark."""
    letters = any(c.isalpha() and c.isascii() for c in label)
    digits = any(c.isdigit() for c in label)
    other = {c for c in label if not (c.isascii() and c.isalnum())}
    return 1 + 26 * letters + 10 * digits + len(other)


def benign_training_labels(cfg: TrainConfig) -> tuple[list[str], Any, Any]:
    data, split = prepare(cfg)
    rows = split.mask(TRAIN) & (data.family == BENIGN)
    return [label_of(t) for t in data.labels[rows].tolist()], data, split


def fit(cfg: TrainConfig, out: str, order: int, root: Path, folds: list[int]) -> None:
    labels, data, _ = benign_training_labels(replace(cfg, holdout_fold=-1))
    started = time.time()
    lm = CharLM(order).fit(labels)
    fit_s = time.time() - started
    unique = sorted({label_of(t) for t in data.labels.tolist()})
    started = time.time()
    table = lm.scores(unique)
    score_s = time.time() - started
    index = {lab: i for i, lab in enumerate(unique)}
    print(
        f"fit {len(labels)} labels {fit_s:.1f}s; scored {len(unique)} labels {score_s:.1f}s "
        f"({score_s / len(unique) * 1e6:.1f} us each); {len(lm.logp)} grams, {len(lm.backoff)} histories"
    )
    for k in folds:
        fcfg = replace(cfg, holdout_fold=k)
        fold_labels, data, split = benign_training_labels(fcfg)
        if fold_labels != labels:
            raise SystemExit(f"fold {k}: benign training names differ from the random split's")
        rows = np.flatnonzero(split.part != TRAIN)
        at = np.array([index[label_of(t)] for t in data.labels[rows].tolist()])
        tail = f"lfo{k}" if k >= 0 else "rand"
        for v in VARIANTS:
            run = root / f"{out}-{v}-{tail}"
            run.mkdir(parents=True, exist_ok=True)
            save_scores(
                run, data.labels[rows], data.y[rows], data.family[rows], split.part[rows], table[v][at] / SCALE[v]
            )
            info = {
                **asdict(fcfg),
                "arch": f"charlm{order}-{v}",
                "out": str(run),
                "data_dir": str(fcfg.data_dir),
                "cache": str(fcfg.cache),
                "form": fcfg.form.value,
                "width": order,
                "held_out": list(split.held_out),
                "trained_families": [],
                "train_rows": len(labels),
                "train_seconds": round(fit_s, 1),
                "params": len(lm.logp) + len(lm.backoff),
                "discounts": lm.discounts,
                "data_digest": data.digest,
                "epochs_run": 0,
            }
            (run / "run.json").write_text(json.dumps(info, indent=2))


def rarity(s: Scores) -> npt.NDArray[np.float64]:
    from convert.ensemble import rarity as r

    return r(s)


def platt(s: Scores, value: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """`value` mapped to a logit by a logistic fit on the fold's validation rows of the families it
    trained on (s.rows(VAL) excludes the held-out families and the long tail)."""
    from sklearn.linear_model import LogisticRegression

    rows = s.rows(VAL)
    x = value[rows].reshape(-1, 1)
    m = LogisticRegression(C=1e4, max_iter=1000).fit(x, s.y[rows])
    return m.coef_[0, 0] * value + m.intercept_[0]


def member_logit(s: Scores, run: Path) -> npt.NDArray[np.float64]:
    z = np.load(run / "scores.npz")["logit"].astype(np.float64)
    arch = json.loads((run / "run.json").read_text())["arch"]
    return platt(s, z) if arch.startswith("charlm") else z


def combine(members: list[str], how: str, out: str, root: Path, folds: list[str], weights: list[float]) -> None:
    for tail in folds:
        runs = [root / f"{m}-{tail}" for m in members]
        if not all((r / "scores.npz").exists() for r in runs):
            print("skip", tail)
            continue
        s = [Scores.load(r, "logit") for r in runs]
        for other in s[1:]:
            if not np.array_equal(s[0].labels, other.labels):
                raise SystemExit(f"{runs}: not scored on the same names")
        w = np.array(weights or [1.0] * len(runs))
        if how == "mean":
            value = sum(wi * member_logit(si, r) for wi, si, r in zip(w, s, runs, strict=True)) / w.sum()
        elif how == "max":
            value = np.max([rarity(si) for si in s], axis=0)
        elif how == "rmean":
            value = sum(wi * rarity(si) for wi, si in zip(w, s, strict=True)) / w.sum()
        else:
            raise SystemExit(f"unknown combination {how!r}")
        info = json.loads((runs[0] / "run.json").read_text())
        info |= {
            "arch": f"{'+'.join(members)} ({how})",
            "combination": {"how": how, "members": members, "weights": w.tolist()},
        }
        dest = root / f"{out}-{tail}"
        dest.mkdir(parents=True, exist_ok=True)
        save_scores(dest, s[0].labels, s[0].y, s[0].family, s[0].part, value)
        (dest / "run.json").write_text(json.dumps(info, indent=2))


def report(names: list[str], root: Path) -> str:
    """The REPORT's columns per configuration: per-fold and mean unseen-family recall at sinkhole,
    families >= 0.9, recall at log and at the long-tail target, random-split TPR@1e-4, long tail."""
    from convert.experiments import random_split_tpr, summarise

    lines = [
        "| configuration | fold 0 | fold 1 | fold 2 | fold 3 | fold 4 | mean recall @sinkhole (all / char) "
        "| families >= 0.9 | mean recall @log | mean recall @long-tail 0.1% | random split TPR@1e-4 "
        "| long-tail sinkholed / logged | long tail uncleaned: sinkholed / logged |",
        "|" + "---|" * 13,
    ]
    for name in names:
        runs = [root / f"{name}-lfo{k}" for k in range(5) if (root / f"{name}-lfo{k}" / "scores.npz").exists()]
        if not runs:
            continue
        r = summarise(runs, rule="pooled")
        per_fold: dict[str, list[float]] = {}
        for fam in r["families"].values():
            per_fold.setdefault(fam["fold"], []).append(fam["sinkhole"])
        cells = [
            f"{np.mean(per_fold[f'{name}-lfo{k}']):.3f}" if f"{name}-lfo{k}" in per_fold else "-" for k in range(5)
        ]
        tpr = random_split_tpr(root / f"{name}-rand")
        mean = f"{r['mean_recall']['sinkhole']:.3f} / {r['mean_recall_sinkhole_char']:.3f}"
        lines.append(
            f"| {name} | {' | '.join(cells)} | {mean} "
            f"| {r['families_ge_0.9']['sinkhole']}/{r['n_families']} | {r['mean_recall']['log']:.3f} "
            f"| {r['mean_recall']['tail_target']:.3f} | {'-' if tpr is None else f'{tpr:.3f}'} "
            f"| {r['tail']['sinkhole'] * 100:.3f}% / {r['tail']['log'] * 100:.2f}% "
            f"| {r['tail_uncleaned']['sinkhole'] * 100:.3f}% / {r['tail_uncleaned']['log'] * 100:.2f}% |"
        )
    return "\n".join(lines)


START, END = "<!-- charlm: generated by python -m convert.charlm section -->", "<!-- /charlm -->"
ALONE = ("v-suffix", "v-ng1", "lm5-nll", "lm5-llr_sqrt", "lm3-llr", "lm4-llr", "lm5-llr", "lm6-llr")
ALONE += ("lm4c-llr_class", "lm5c-llr_class")
COMBINED = ("v-ng1", "c-ng-lm5-mean", "c-ng-lm5-w0.5", "c-ng-lm5-w0.25", "c-ng-lm5-max", "c-ng-lm4c-w1")
COMBINED += ("c-ng-lm4c-w0.5", "c-ng-lm4c-max", "v-e1-mean", "c-3-lm5-w1", "c-3-lm5-w0.5", "c-3-lm5-max")
COMBINED += ("c-3-lm4c-w1", "c-3-lm4c-w0.5", "c-3-lm4c-max")


def family_moves(root: Path, before: str, after: str, step: float = 0.1) -> str:
    from convert.experiments import summarise

    a, b = (summarise([root / f"{n}-lfo{k}" for k in range(5)], rule="pooled")["families"] for n in (before, after))
    moved = [
        f"{f} {a[f]['sinkhole']:.2f} -> {b[f]['sinkhole']:.2f}"
        for f in sorted(a)
        if f in b and abs(b[f]["sinkhole"] - a[f]["sinkhole"]) >= step
    ]
    return ", ".join(moved) or "none"


def section(root: Path = Path("runs")) -> str:
    from convert.evaluate import threshold_setters
    from convert.report_text import CHARLM

    tail, total, names = threshold_setters([root / f"lm4c-llr_class-lfo{k}" for k in range(5)])
    fields = {
        "{ALONE}": report(list(ALONE), root),
        "{COMBINED}": report(list(COMBINED), root),
        "{SETTERS}": f"{tail} of {total}; the most frequent: " + ", ".join(f"`{n}`" for n in names),
        "{MOVES_LM}": family_moves(root, "v-ng1", "lm4c-llr_class", 0.2),
        "{MOVES_MEAN}": family_moves(root, "v-ng1", "c-ng-lm4c-w1"),
    }
    from convert.vetting import filled

    return filled(CHARLM, fields, START, END)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m convert.charlm", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("--out", required=True, help="configuration name prefix: runs/<out>-<variant>-lfo<k>")
    f.add_argument("--order", type=int, default=5)
    f.add_argument("--root", type=Path, default=Path("runs"))
    f.add_argument("--folds", default="0,1,2,3,4,-1")
    c = sub.add_parser("combine")
    c.add_argument("--members", required=True, help="comma-separated configuration names")
    c.add_argument("--how", default="mean", help="mean (of logits), max or rmean (of rarities)")
    c.add_argument("--weights", default="", help="comma-separated member weights (mean, rmean)")
    c.add_argument("--out", required=True)
    c.add_argument("--root", type=Path, default=Path("runs"))
    c.add_argument("--folds", default="lfo0,lfo1,lfo2,lfo3,lfo4,rand")
    r = sub.add_parser("report")
    r.add_argument("names", nargs="+", help="configuration names (runs/<name>-lfo<k>, runs/<name>-rand)")
    r.add_argument("--root", type=Path, default=Path("runs"))
    sec = sub.add_parser("section", help="the REPORT.md section (--splice FILE writes it there)")
    sec.add_argument("--root", type=Path, default=Path("runs"))
    sec.add_argument("--splice", type=Path)
    a, rest = p.parse_known_args(argv)
    if a.cmd == "section":
        from convert.vetting import show_section

        show_section(section(a.root), a.splice, START, END)
        return
    if a.cmd == "report":
        print(report(a.names, a.root))
        return
    if a.cmd == "fit":
        cfg = parse_args(["--arch", "cnn", "--out", "unused", *rest])
        fit(cfg, a.out, a.order, a.root, [int(k) for k in a.folds.split(",")])
    else:
        weights = [float(x) for x in a.weights.split(",") if x]
        combine(a.members.split(","), a.how, a.out, a.root, a.folds.split(","), weights)


if __name__ == "__main__":
    main()
