"""CNN + linear n-gram stage: an ensemble, and a cascade that lets only uncertain names reach the CNN.

    python -m convert.ensemble --cnn x-suffix --linear x-ng-lr --out x-ens    # per fold k: runs/<out>-lfo<k>

Both runs of a fold come from the same `prepare` (same seed, same data), so their `scores.npz`
rows are the same names in the same order (checked). Each combination is written as a run of its own
(`scores.npz` + `run.json`), so `convert.experiments` scores it like a trained model: calibrated on the
fold's calibration pool, recall on the families that fold never saw.

* `mean`: the mean of the two logits.
* `max`: each model's score turned into its rarity among the calibration benign names (-log10 of the
  share scoring at least as high), and the larger rarity kept: "either model at its own threshold",
  with the joint threshold calibrated afterwards so the union still flags FPR 1e-4.
* `cascade-<q>`: the linear stage alone answers every name below its own FPR-`q` threshold (pass);
  the names above it, and only those, get the CNN's score. `cascade_share` says how many reach the CNN.
* `cascade-mean-<q>`: the same gate, and the names above it get the `mean` (the shipped scorer's form
  since #13 session 7 when the report says so: `resolverguard.model.EnsembleScorer`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from convert.evaluate import Scores, calibrate, fpr_name
from convert.train import save_scores

FLOOR = -50.0  # the logit of a name the cascade's first stage passed: below every real score


def load_pair(cnn: Path, linear: Path) -> tuple[Scores, Scores, dict[str, Any]]:
    a, b = Scores.load(cnn, "logit"), Scores.load(linear, "logit")
    if not np.array_equal(a.labels, b.labels) or a.held_out != b.held_out:
        raise SystemExit(f"{cnn} and {linear} were not scored on the same names: not the same split")
    return a, b, json.loads((cnn / "run.json").read_text())


def logit(s: Scores) -> npt.NDArray[np.float64]:
    p = np.clip(s.score.astype(np.float64), 1e-300, 1 - 1e-16)
    return np.log(p) - np.log1p(-p)


def rarity(s: Scores) -> npt.NDArray[np.float64]:
    """-log10 of the share of calibration benign names scoring at least as high as each name."""
    pool = np.sort(s.score[s.calibration()])
    above = len(pool) - np.searchsorted(pool, s.score, side="left")
    return -np.log10((above + 1.0) / (len(pool) + 1.0)) + 1e-3 * np.tanh(logit(s) / 50.0)


def combined(how: str, a: Scores, b: Scores) -> tuple[npt.NDArray[np.float64], dict[str, Any]]:
    """(logit-like score, facts) of one combination of CNN `a` and linear stage `b`."""
    if how == "mean":
        return (logit(a) + logit(b)) / 2.0, {}
    if how == "max":
        return np.maximum(rarity(a), rarity(b)), {}
    if how.startswith("cascade-wmean-"):  # cascade-wmean-<q>-<w>: the linear stage's logit weighted w
        q, w = (float(x) for x in how.removeprefix("cascade-wmean-").split("-"))
        value, gate, reach = cascade_mean(logit(a), b, q, w)
        return value, {"gate": gate, "q": q, "linear_weight": w, **shares(b, reach)}
    if how.startswith("cascade-mean-"):  # the gate first, then the mean for the names above it
        q = float(how.rsplit("-", 1)[1])
        value, gate, reach = cascade_mean(logit(a), b, q)
        return value, {"gate": gate, "q": q, **shares(b, reach)}
    if how.startswith("cascade-"):
        q = float(how.split("-", 1)[1])
        gate = calibrate(b.score[b.calibration()], [q])[fpr_name(q)]
        reach = b.score >= gate
        return np.where(reach, logit(a), FLOOR), {"gate": gate, "q": q, **shares(b, reach)}
    raise SystemExit(f"unknown combination {how!r}")


def cascade_mean(
    cnn: npt.NDArray[np.float64], b: Scores, q: float, w: float = 0.5
) -> tuple[npt.NDArray[np.float64], float, npt.NDArray[np.bool_]]:
    """The shipped form (`cascade-mean-<q>`) for any CNN logits `cnn` (one model's, or several seeds'
    mean: convert.seeds): names under the linear stage `b`'s FPR-`q` gate pass (FLOOR), the others
    get the mean of the two logits (`w` != 0.5: the linear stage's weighted w, the CNN's 1 - w; an
    experiment, serving has only the plain mean). (value, the gate, which names reached the CNN)."""
    gate = calibrate(b.score[b.calibration()], [q])[fpr_name(q)]
    reach = b.score >= gate
    mean = (cnn + logit(b)) / 2.0 if w == 0.5 else (1.0 - w) * cnn + w * logit(b)
    return np.where(reach, mean, FLOOR), gate, reach


def shares(s: Scores, reach: npt.NDArray[np.bool_]) -> dict[str, float]:
    """The share of names the first stage hands on to the CNN, per kind of name."""
    held = np.isin(s.family, s.held_out) & (s.y == 1)
    return {
        "reach_calibration_benign": float(reach[s.calibration()].mean()),
        "reach_long_tail": float(reach[s.long_tail()].mean()),
        "reach_unseen_dga": float(reach[held].mean()),
    }


def write(out: Path, base: Scores, value: npt.NDArray[np.float64], info: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_scores(out, base.labels, base.y, base.family, base.part, value)
    (out / "run.json").write_text(json.dumps(info, indent=2))


def cascade_table(root: Path, names: list[str]) -> str:
    """Per cascade configuration and fold: the share of names the linear stage hands to the CNN."""
    lines = [
        "| configuration | gate (linear stage at FPR) | folds | calibration benign reaching the CNN "
        "| long-tail benign reaching the CNN | unseen-family DGA reaching the CNN |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        facts = [
            json.loads((run / "run.json").read_text())["combination"]
            for run in sorted(root.glob(f"{name}-lfo[0-9]"))
            if (run / "run.json").exists()
        ]
        if not facts:
            continue
        mean = {k: float(np.mean([f[k] for f in facts])) for k in facts[0] if k.startswith("reach_")}
        lines.append(
            f"| {name} | {facts[0]['q']:g} | {len(facts)} | {mean['reach_calibration_benign'] * 100:.1f}% "
            f"| {mean['reach_long_tail'] * 100:.1f}% | {mean['reach_unseen_dga'] * 100:.1f}% |"
        )
    return "\n".join(lines)


def speeds(stage_path: Path, names: list[str], cnn: Path | None = None, seconds: float = 1.5) -> dict[str, float]:
    """us per name of the linear stage (numpy) and, given, the CNN's `.tflite` (LiteRT, one thread),
    at batch 1 and 64, timed in turns in this one process (best of 3 rounds each, so a loaded
    machine slows both alike)."""
    import time

    from resolverguard.model import load_model
    from resolverguard.ngrams import LinearWeights

    scorers: dict[str, Any] = {"linear": LinearWeights.load(stage_path).logits}
    if cnn is not None:
        scorers["cnn"] = load_model(cnn).score
    best: dict[str, float] = {}
    for _ in range(3):
        for name, score in scorers.items():
            for batch in (1, 64):
                started, n = time.perf_counter(), 0
                while time.perf_counter() - started < seconds / 6:
                    i = (n * 7919) % max(1, len(names) - batch)
                    score(names[i : i + batch])
                    n += batch
                key = f"{name}_us_batch{batch}"
                best[key] = min(best.get(key, float("inf")), (time.perf_counter() - started) / n * 1e6)
    return best


# The stage experiments in the order the report lists them (convert/sweep.sh makes them).
STAGE_CONFIGS = ("x-suffix", "x-ng1", "x-ng1-120k", "x-ng1-c01", "x-ng1-b16", "x-e1-mean", "x-e1-max")
STAGE_CONFIGS += ("x-e1-cascade-0.05", "x-e1-cascade-0.1", "x-e1-cascade-0.2", "x-ng1-fam", "x-ng1-cap2k")
STAGE_CONFIGS += ("x-suffix-cap2k", "x-ng1-rnd20k", "x-ng-wl", "x-ng-wlw")


def speed_text(stage: Path) -> str:
    """One sentence: the linear stage and the shipped CNN timed in turns on the stage's own names."""
    t = speeds(stage, Scores.load(stage.parent, "logit").labels.tolist(), Path("models/default.tflite"))
    return (
        f"timed in turns in one process (`{stage}` in numpy; `models/default.tflite` in LiteRT, one thread), "
        f"the linear stage costs {t['linear_us_batch1']:.1f} us per name at batch 1 and {t['linear_us_batch64']:.1f} "
        f"at batch 64, the CNN {t['cnn_us_batch1']:.1f} and {t['cnn_us_batch64']:.1f}."
    )


def report(
    root: Path, configs_pattern: str, cascades: list[str], stage: Path | None, only: tuple[str, ...] = ()
) -> str:
    """The markdown of the stage experiments: the per-fold table, the cascade shares, the linear speed
    (`only`: these configurations, in this order)."""
    from convert.experiments import configs, fold_table, summarise

    found = configs(root, configs_pattern)
    names = [n for n in only if n in found] if only else list(found)
    results = {name: summarise(found[name], rule="pooled") for name in names}
    parts = [fold_table(results, root), "", cascade_table(root, cascades)]
    if stage is not None:
        parts += ["", speed_text(stage)]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m convert.ensemble", description=__doc__.split("\n")[0])
    p.add_argument("--cnn", help="configuration name of the CNN fold runs (runs/<name>-lfo<k>)")
    p.add_argument("--linear", help="configuration name of the linear stage's fold runs")
    p.add_argument("--how", default="mean", help="mean, max or cascade-<q>")
    p.add_argument("--out", help="configuration name to write")
    p.add_argument("--folds", default="0,1,2,3,4,rand", help="fold numbers (runs <name>-lfo<k>) or run suffixes")
    p.add_argument("--root", type=Path, default=Path("runs"))
    p.add_argument("--cnn-rand", type=Path, help="the CNN's random-split run when not <cnn>-rand (f-tail: runs/cnn)")
    p.add_argument("--report", metavar="GLOB", help="print the stage experiments' tables for these fold runs")
    p.add_argument("--cascades", default="", help="with --report: comma-separated cascade configurations")
    p.add_argument("--speed", type=Path, help="with --report: a linear.npz to time")
    p.add_argument("--stages", action="store_true", help="with --report: the report's configurations, in order")
    a = p.parse_args(argv)
    if a.report:
        only = STAGE_CONFIGS if a.stages else ()
        print(report(a.root, a.report, [c for c in a.cascades.split(",") if c], a.speed, only))
        return
    if not (a.cnn and a.linear and a.out):
        p.error("--cnn, --linear and --out are needed (or --report)")
    for k in a.folds.split(","):
        tail = f"lfo{k}" if k.isdigit() else k
        cnn, linear = a.root / f"{a.cnn}-{tail}", a.root / f"{a.linear}-{tail}"
        if tail == "rand" and a.cnn_rand is not None:
            cnn = a.cnn_rand
        if not (cnn / "scores.npz").exists() or not (linear / "scores.npz").exists():
            continue
        s_cnn, s_lin, info = load_pair(cnn, linear)
        value, facts = combined(a.how, s_cnn, s_lin)
        lin_info = json.loads((linear / "run.json").read_text())
        info = info | {
            "arch": f"{info['arch']}+{lin_info['arch']} ({a.how})",
            "combination": {"how": a.how, "cnn": str(cnn), "linear": str(linear), **facts},
            "train_seconds": info.get("train_seconds", 0) + lin_info.get("train_seconds", 0),
        }
        write(a.root / f"{a.out}-{tail}", s_cnn, value, info)
        print(k, json.dumps(facts))


if __name__ == "__main__":
    main()
