"""Evaluation: ROC AUC, TPR at fixed FPR, per-family and leave-family-out recall, threshold tables.

    python -m convert.evaluate --run runs/cnn --lfo 'runs/cnn-lfo*' --out runs/cnn/eval

Works from the `scores.npz` a training run writes (numpy + scikit-learn + matplotlib; no TensorFlow).
Thresholds are calibrated on the VALIDATION benign names only; every figure is then measured on
TEST rows, so no number in the report was tuned on the data it is reported on.
"""

from __future__ import annotations

import argparse
import glob
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from convert.data import BENIGN_DNS_MACHINE, BENIGN_DNS_ONLY, BENIGN_FAMILIES
from convert.splits import TEST, VAL, tail_hash

FPR_TARGETS = (1e-2, 1e-3, 1e-4)
DEFAULT_ACTIONS = {"log": "fpr_1e-3", "sinkhole": "fpr_1e-4"}
THRESHOLD_RULES = ("guarded", "pooled", "trusted")  # Scores.thresholds
# The long-tail bounds are ten times the trusted FPR targets: sinkhole 1e-4 -> 0.1% of the long
# tail, log 1e-3 -> 1% (Scores.thresholds).
LONG_TAIL_BOUND = 10.0


@dataclass(frozen=True)
class Scores:
    labels: npt.NDArray[np.str_]
    y: npt.NDArray[np.int8]
    family: npt.NDArray[np.str_]
    part: npt.NDArray[np.int8]
    score: npt.NDArray[np.float32]
    held_out: tuple[str, ...]
    # False (the serving policy, #13): benign names whose scored label is punycode (`xn--`) are outside
    # the model's domain and leave every benign pool (calibration, long tail, test); True: the pools
    # as before, to measure what the policy changes (convert.idn).
    judge_punycode: bool = False
    # tail_half, computed once: every threshold, pool and long-tail rate of a fold needs it (1.2M labels).
    _memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(
        cls, run: Path, variant: str | None = None, judge_punycode: bool = False, tail_quarter_out: bool = False
    ) -> Scores:
        """The run's Keras scores; `tempered`: the same with the fitted temperature; or the scores of
        a quantized `variant` (see convert.quantize). `tail_quarter_out`: without the long-tail names a
        `--tail-train` run trains on (`convert.splits.with_tail_trained`), so a run without it is
        calibrated on the pools such a run has."""
        z = np.load(run / "scores.npz")
        info = json.loads((run / "run.json").read_text())
        score = z["score"]
        if variant == "logit":  # float64 sigmoid of the saved logit: no float32 ties near 1.0
            score = 1.0 / (1.0 + np.exp(-z["logit"].astype(np.float64)))
        elif variant == "tempered":  # the Keras model with its temperature (convert.quantize), no TFLite
            score = np.load(run / "tempered.scores.npy")
        elif variant:
            score = np.load(run / "tflite" / f"{variant}.scores.npy")
        held = tuple(info.get("held_out", ()))
        labels, y, family, part = z["labels"], z["y"], z["family"], z["part"]
        if tail_quarter_out:
            keep = np.ones(len(labels), dtype=bool)
            tail = np.flatnonzero(family == BENIGN_DNS_ONLY)
            keep[tail[tail_hash(labels[tail]) % 4 == 0]] = False
            labels, y, family, part, score = labels[keep], y[keep], family[keep], part[keep], score[keep]
        return cls(labels, y, family, part, score, held, judge_punycode)

    def punycode(self) -> npt.NDArray[np.bool_]:
        """Rows whose scored label is punycode (resolverguard.names.is_punycode): serving passes them
        unscored, whatever the model would say."""
        return np.char.startswith(self.labels.astype(np.str_), "xn--")

    def judged(self) -> npt.NDArray[np.bool_]:
        """Rows the model judges in serving: every DGA row (a DGA name serving passes unscored is a
        miss, and stays counted as the model scored it), and benign rows unless punycode."""
        if self.judge_punycode:
            return np.ones(len(self.labels), dtype=bool)
        return ~self.punycode() | (self.y == 1)

    def calibration(self) -> npt.NDArray[np.bool_]:
        """Every benign name a threshold may be set on: the trusted validation names and one half of
        the long-tail names (the pool the linear stage's gate and the ensemble's rarities use)."""
        return self.trusted_calibration() | self.tail_calibration()

    def trusted_calibration(self) -> npt.NDArray[np.bool_]:
        """The validation benign names (trusted lists): what an FPR target is a rate of."""
        return self.rows(VAL) & (self.y == 0)

    def tail_calibration(self) -> npt.NDArray[np.bool_]:
        """The long-tail half thresholds are checked against: names only one DNS-volume list knows,
        the CDN, API and regional names the trusted lists under-represent. The other half is the
        long-tail test set."""
        return (self.family == BENIGN_DNS_ONLY) & self.tail_half() & self.judged()

    def thresholds(
        self, score: npt.NDArray[Any] | None = None, fprs: Sequence[float] = FPR_TARGETS, rule: str = "guarded"
    ) -> dict[str, float]:
        """For each target FPR f, the lowest threshold that flags at most f of the trusted validation
        names AND keeps the long-tail half under ten times f (the issue's bounds: 0.1% at the sinkhole's
        1e-4, 1% at the log's 1e-3) with 95% confidence (`tail_budget`).

        Why two sets (#13 session 13): a threshold set on the pooled names rested on the ~18 highest,
        nearly all random strings the DNS-volume lists carry (live DGA, ad-fraud): the threshold then
        measured the lists' junk, and held the long tail at a fifth of its bound while unseen families
        went uncaught. The trusted names keep the FPR meaning; the tail budget keeps the long-tail
        promise, with the margin the names it rests on allow.

        `rule` "pooled" (sessions 4-12: FPR f of the trusted and tail names together) and "trusted" (the
        first design: trusted names alone) are kept to measure what this rule changes."""
        if rule not in THRESHOLD_RULES:
            raise ValueError(f"rule: {rule!r} is not one of {THRESHOLD_RULES}")
        score = self.score if score is None else score
        if rule == "pooled":
            return calibrate(score[self.calibration()], fprs)
        if rule == "trusted":
            return calibrate(score[self.trusted_calibration()], fprs)
        trusted = calibrate(score[self.trusted_calibration()], fprs)
        tail = np.sort(score[self.tail_calibration()])[::-1]
        return {
            fpr_name(f): max(trusted[fpr_name(f)], _threshold(tail, tail_budget(LONG_TAIL_BOUND * f, len(tail))))
            for f in fprs
        }

    def long_tail(self) -> npt.NDArray[np.bool_]:
        """The long-tail test names: the half of the one-DNS-list names never calibrated on."""
        return (self.family == BENIGN_DNS_ONLY) & ~self.tail_half() & self.judged()

    def long_tail_uncleaned(self) -> npt.NDArray[np.bool_]:
        """The same test half with the names the cleaning rule removed put back: the long-tail rate
        nobody can say the cleaning made look better."""
        return np.isin(self.family, (BENIGN_DNS_ONLY, BENIGN_DNS_MACHINE)) & ~self.tail_half() & self.judged()

    def removed_calibration_half(self) -> npt.NDArray[np.bool_]:
        """The removed long-tail names of the calibration half: what the pool held before cleaning."""
        return (self.family == BENIGN_DNS_MACHINE) & self.tail_half() & self.judged()

    def tail_half(self) -> npt.NDArray[np.bool_]:
        """A fixed half by a hash of the label (the part before the first dot), the same in every run
        and input form."""
        if "tail_half" not in self._memo:
            self._memo["tail_half"] = tail_hash(self.labels) % 2 == 0
        half: npt.NDArray[np.bool_] = self._memo["tail_half"]
        return half

    def rows(self, part: int, seen_only: bool = True) -> npt.NDArray[np.bool_]:
        mask = (self.part == part) & ~np.isin(self.family, BENIGN_FAMILIES[1:]) & self.judged()
        return mask & ~np.isin(self.family, self.held_out) if seen_only else mask


def fpr_name(fpr: float) -> str:
    return f"fpr_{fpr:.0e}".replace("e-0", "e-")


def calibrate(benign_scores: npt.NDArray[np.float32], fprs: Sequence[float] = FPR_TARGETS) -> dict[str, float]:
    """For each target FPR, the lowest threshold at which at most that share of these benign names
    score at or above it. Rests on `len(benign_scores) * fpr` names: say so wherever it is used."""
    ordered = np.sort(benign_scores)[::-1]
    return {fpr_name(fpr): _threshold(ordered, int(np.floor(fpr * len(ordered)))) for fpr in fprs}


def _threshold(ordered: npt.NDArray[Any], k: int) -> float:
    """The lowest threshold at which at most `k` of these scores (sorted, highest first) are at or above."""
    # The next value above the k-th score in the scores' own precision: serving compares float32
    # scores with the threshold in float32, where a float64 step above would round back onto it.
    t = float(np.nextafter(ordered[k], ordered.dtype.type(2.0))) if k < len(ordered) else 0.0
    return min(t, 1.0)


def tail_budget(bound: float, n: int, level: float = 0.95) -> int:
    """The most of `n` calibration names a threshold may flag so that the rate it implies on names it
    never saw stays under `bound` at `level`: the upper end of the Clopper-Pearson interval of
    k of n. On ~66,000 long-tail names and a 0.1% bound: 50 names (0.076%)."""
    k = int(np.floor(bound * n))
    while k > 0 and fpr_interval(k, n, level)[1] > bound:
        k -= 1
    return k


def fpr_interval(flagged: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact binomial) interval for a false-positive rate seen as `flagged` of `n`:
    what a threshold calibrated on n names can promise about names it has not seen."""
    from scipy.stats import beta

    tail = (1 - level) / 2
    lo = float(beta.ppf(tail, flagged, n - flagged + 1)) if flagged > 0 else 0.0
    hi = float(beta.ppf(1 - tail, flagged + 1, n - flagged)) if flagged < n else 1.0
    return lo, hi


def threshold_support(benign_scores: npt.NDArray[Any], thresholds: dict[str, float]) -> dict[str, dict[str, Any]]:
    """For each threshold: how many of these benign names score at or above it, of how many, and the
    95% interval of the FPR that count implies."""
    n = len(benign_scores)
    out = {}
    for name, t in thresholds.items():
        k = int((benign_scores >= t).sum())
        lo, hi = fpr_interval(k, n) if n else (0.0, 1.0)
        out[name] = {"threshold": t, "flagged": k, "n": n, "fpr": k / n if n else float("nan"), "ci95": [lo, hi]}
    return out


def held_out_support(
    calibration: npt.NDArray[Any], held_out: dict[str, npt.NDArray[Any]], fprs: Sequence[float] = FPR_TARGETS
) -> dict[str, dict[str, Any]]:
    """Thresholds calibrated on `calibration` and checked on benign sets never calibrated on: for each
    target FPR, the names the threshold rests on (with their Clopper-Pearson interval) and, per
    held-out set, how many of its names score at or above it (with theirs). A threshold resting on
    tens of names should see a held-out FPR inside its interval."""
    thresholds = calibrate(calibration, fprs)
    on_pool = threshold_support(calibration, thresholds)
    checks = {name: threshold_support(scores, thresholds) for name, scores in held_out.items()}
    return {
        name: {"target": fpr, **on_pool[name], "held_out": {k: v[name] for k, v in checks.items()}}
        for name, fpr in zip(thresholds, fprs, strict=True)
    }


def roc_auc(y: npt.NDArray[Any], score: npt.NDArray[Any]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def tpr_at_fpr(y: npt.NDArray[Any], score: npt.NDArray[Any], fpr: float) -> float:
    """Best TPR with FPR <= fpr on this set (the ROC-curve reading; thresholds from the set itself)."""
    threshold = calibrate(score[y == 0], [fpr])[fpr_name(fpr)]
    return float((score[y == 1] >= threshold).mean())


def rates(y: npt.NDArray[Any], score: npt.NDArray[Any], threshold: float) -> tuple[float, float]:
    """(FPR, TPR) of `score >= threshold`."""
    return float((score[y == 0] >= threshold).mean()), float((score[y == 1] >= threshold).mean())


def family_recall(s: Scores, mask: npt.NDArray[np.bool_], thresholds: dict[str, float]) -> dict[str, dict[str, Any]]:
    out = {}
    for fam in sorted(set(s.family[mask].tolist()) - set(BENIGN_FAMILIES)):
        rows = mask & (s.family == fam)
        out[fam] = {"n": int(rows.sum()), **{k: float((s.score[rows] >= t).mean()) for k, t in thresholds.items()}}
    return out


def evaluate_run(run: Path, variant: str | None = None) -> dict[str, Any]:
    """Random-split figures of one run: over every family not held out, and (`*_trained`) over the
    families it was trained on, i.e. without those deliberately excluded (convert.train)."""
    s = Scores.load(run, variant)
    test = s.rows(TEST)
    excluded = tuple(json.loads((run / "run.json").read_text()).get("exclude", ()))
    trained = test & ~np.isin(s.family, excluded)
    thresholds = s.thresholds()
    thresholds.update({action: thresholds[name] for action, name in DEFAULT_ACTIONS.items()})
    y, sc = s.y[test], s.score[test]
    n_benign = int((y == 0).sum())
    table = []
    for t in sorted({0.5, 0.9, 0.99, 0.999, *thresholds.values()}):
        fpr, tpr = rates(y, sc, t)
        table.append({"threshold": t, "fpr": fpr, "tpr": tpr, "benign_flagged": int(round(fpr * n_benign))})
    return {
        "run": str(run),
        "test_benign": n_benign,
        "test_dga": int((y == 1).sum()),
        "auc": roc_auc(y, sc),
        "tpr_at_fpr": {fpr_name(f): tpr_at_fpr(y, sc, f) for f in FPR_TARGETS},
        "excluded_from_training": list(excluded),
        "auc_trained": roc_auc(s.y[trained], s.score[trained]),
        "tpr_at_fpr_trained": {fpr_name(f): tpr_at_fpr(s.y[trained], s.score[trained], f) for f in FPR_TARGETS},
        "benign_names_behind_fpr": {fpr_name(f): f * n_benign for f in FPR_TARGETS},
        "thresholds": thresholds,
        "threshold_table": table,
        "family_recall": family_recall(s, test, {k: thresholds[k] for k in DEFAULT_ACTIONS}),
        "top_benign": [(str(lab), float(v)) for lab, v in _top_benign(s, test)],
        "dns_only_benign": _dns_only(s, thresholds),
    }


def _dns_only(s: Scores, thresholds: dict[str, float]) -> dict[str, Any]:
    """Share of the uncurated (DNS-volume-list-only) benign names flagged at each threshold: an
    upper bound on the FPR among less popular names, since these lists also hold live DGA names."""
    rows = s.long_tail()
    top = np.flatnonzero(rows)[np.argsort(-s.score[rows])[:15]]
    return {
        "n": int(rows.sum()),
        "flagged": {k: float((s.score[rows] >= t).mean()) for k, t in thresholds.items()},
        "top": list(zip(s.labels[top].tolist(), s.score[top].tolist(), strict=True)),
    }


def _top_benign(s: Scores, mask: npt.NDArray[np.bool_], n: int = 25) -> list[tuple[str, float]]:
    rows = np.flatnonzero(mask & (s.y == 0))
    top = rows[np.argsort(-s.score[rows])[:n]]
    return list(zip(s.labels[top].tolist(), s.score[top].tolist(), strict=True))


def evaluate_lfo(runs: Sequence[Path], variant: str | None = None) -> dict[str, Any]:
    """Recall on families each fold's model never saw, at that fold's own validation thresholds."""
    per_family: dict[str, dict[str, Any]] = {}
    for run in runs:
        s = Scores.load(run, variant)
        thresholds = s.thresholds()
        named = {action: thresholds[name] for action, name in DEFAULT_ACTIONS.items()}
        held = (s.part == TEST) & np.isin(s.family, s.held_out)
        for fam, rec in family_recall(s, held, named).items():
            per_family[fam] = {**rec, "fold": run.name}
    return per_family


def plot_roc(runs: dict[str, Path], out: Path, variant: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, run in runs.items():
        s = Scores.load(run, variant)
        test = s.rows(TEST)
        fpr, tpr, _ = roc_curve(s.y[test], s.score[test])
        ax.plot(np.maximum(fpr, 1e-6), tpr, label=name)
    ax.set_xscale("log")
    ax.set_xlim(1e-5, 1)
    ax.set_xlabel("false-positive rate (benign test names, log scale)")
    ax.set_ylabel("true-positive rate (DGA test names)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_families(seen: dict[str, dict[str, Any]], unseen: dict[str, dict[str, Any]], key: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = sorted(set(seen) | set(unseen))
    x = np.arange(len(families))
    fig, ax = plt.subplots(figsize=(max(8, len(families) * 0.22), 4.5))
    ax.bar(x - 0.2, [seen.get(f, {}).get(key, np.nan) for f in families], 0.4, label="random split (family seen)")
    ax.bar(x + 0.2, [unseen.get(f, {}).get(key, np.nan) for f in families], 0.4, label="leave-family-out (unseen)")
    ax.set_xticks(x, families, rotation=90, fontsize=7)
    ax.set_ylabel(f"recall at the {key} threshold")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m convert.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, required=True, help="training run directory (random split)")
    p.add_argument("--lfo", default="", help="glob of leave-family-out run directories")
    p.add_argument("--variant", help="evaluate the quantized variant's scores (e.g. dynamic-int8)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    result = evaluate_run(a.run, a.variant)
    lfo_runs = sorted(Path(x) for x in glob.glob(a.lfo)) if a.lfo else []
    result["leave_family_out"] = evaluate_lfo(lfo_runs, a.variant) if lfo_runs else {}
    (a.out / "eval.json").write_text(json.dumps(result, indent=2))
    plot_roc({a.run.name: a.run}, a.out / "roc.png", a.variant)
    plot_families(result["family_recall"], result["leave_family_out"], "sinkhole", a.out / "families.png")
    print(json.dumps({k: result[k] for k in ("auc", "tpr_at_fpr", "thresholds")}, indent=2))


if __name__ == "__main__":
    main()


def threshold_setters(runs: Sequence[Path], k: int = 18, by_count: bool = True) -> tuple[int, int, list[str]]:
    """The `k` highest-scoring calibration names of each fold model (the names its sinkhole threshold
    rests on): how many come from the long-tail half, of how many, and 12 of the names (the most
    frequent over the folds, or with `by_count=False` the first met)."""
    seen: list[str] = []
    tail = total = 0
    for run in runs:
        s = Scores.load(run, "logit")
        pool = np.flatnonzero(s.calibration())
        top = pool[np.argsort(-s.score[pool])[:k]]
        tail += int((s.family[top] == BENIGN_DNS_ONLY).sum())
        total += len(top)
        seen += s.labels[top].tolist()
    if by_count:
        from collections import Counter

        return tail, total, [n for n, _ in Counter(seen).most_common(12)]
    return tail, total, list(dict.fromkeys(seen))[:12]
