"""Ship a linear n-gram stage as the gate of the Unbound module's cascade (models/<model>.gate.*).

    python -m convert.gate --run runs/gate --model models/default.tflite    # writes default.gate.{npz,json}

The gate is the linear stage's logit at which a share `--fpr` (default 0.05) of the calibration benign
names score at or above it: names below it pass without the CNN (resolverguard/gatestage.py,
resolverguard/unbound_gate.py). It must be a run of the shipped CNN's own split (same data, seed and
exclusions: `convert/sweep.sh` trains `runs/gate` with the CNN's arguments), so the calibration pool is
the one the CNN's thresholds come from. With `--model`, the shipped CNN scores every row the stage did
not train on, and the file records how many names the CNN flags (at its log and sinkhole thresholds)
the gate would clear: the cascade's loss against the CNN alone, which #13 measured as none at 0.05.
Any linear-stage run works (`export_gate` takes the run folder), so a retrained stage is shipped the same way.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from convert.evaluate import Scores
from resolverguard.gatestage import GATE_FORMAT, gate_files
from resolverguard.ngrams import LinearWeights


def stage_logits(stage: LinearWeights, texts: list[str]) -> npt.NDArray[np.float64]:
    return np.concatenate([stage.logits(texts[i : i + 8192]) for i in range(0, len(texts), 8192)] or [np.zeros(0)])


def gate_threshold(logits: npt.NDArray[np.float64], fpr: float) -> float:
    """The lowest logit at which at most `fpr` of these benign names score at or above it (as
    `convert.evaluate.calibrate`, on the float64 logits serving computes)."""
    ordered = np.sort(logits)[::-1]
    k = int(math.floor(fpr * len(ordered)))
    return float(np.nextafter(ordered[k], np.inf)) if k < len(ordered) else float("-inf")


def _shown(run: Path) -> str:
    """The run as the file records it: relative to the working directory (the checkout) when inside it,
    so the shipped file does not name the machine's paths."""
    try:
        return str(run.absolute().relative_to(Path.cwd().absolute()))
    except ValueError:
        return str(run)


def export_gate(run: Path, model: Path, fpr: float = 0.05, check_cnn: bool = True) -> dict[str, Any]:
    """Writes `<model>.gate.npz` (the stage, as trained) and `<model>.gate.json` (the gate and its
    calibration) beside `model`; returns the facts written."""
    stage = LinearWeights.load(run / "linear.npz")
    scores = Scores.load(run, "logit")
    texts = scores.labels.tolist()
    logits = stage_logits(stage, texts)
    calibration = scores.calibration()
    threshold = gate_threshold(logits[calibration], fpr)
    reach = logits >= threshold
    dga = scores.y == 1
    facts: dict[str, Any] = {
        "format": GATE_FORMAT,
        "threshold_logit": threshold,
        "fpr": fpr,
        "calibration_names": int(calibration.sum()),
        "run": _shown(run),
        "meaning": f"linear-stage logit at which {fpr} of the calibration benign names score at or above; "
        "names below it pass without the CNN",
        "reach_calibration_benign": float(reach[calibration].mean()),
        "reach_long_tail": float(reach[scores.long_tail()].mean()),
        "reach_dga_test": float(reach[dga & ~calibration].mean()) if (dga & ~calibration).any() else None,
    }
    weights, facts_path = gate_files(model)
    stage.save(weights)  # first: a shipped ensemble (resolverguard.model.EnsembleScorer) loads it
    if check_cnn:
        facts |= cnn_check(model, texts, reach)
    facts_path.write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    return facts


def cnn_check(model: Path, texts: list[str], reach: npt.NDArray[np.bool_]) -> dict[str, Any]:
    """How many names the CNN flags at each of its thresholds, and how many of those the gate clears."""
    from resolverguard.model import load_model

    cnn = load_model(model)
    score = np.concatenate([cnn.score(texts[i : i + 4096]) for i in range(0, len(texts), 4096)])
    out: dict[str, Any] = {"cnn_model": cnn.metadata.model_version, "cnn_rows": len(texts)}
    for name in ("log", "sinkhole"):
        value = cnn.metadata.thresholds[name]
        flagged = score >= value
        out[f"cnn_{name}_flagged"] = int(flagged.sum())
        out[f"cnn_{name}_flagged_cleared_by_gate"] = int((flagged & ~reach).sum())
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m convert.gate", description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, default=Path("runs/gate"), help="a linear-stage run (convert.ngram)")
    p.add_argument("--model", type=Path, default=Path("models/default.tflite"), help="the CNN it gates")
    p.add_argument("--fpr", type=float, default=0.05)
    p.add_argument("--no-cnn-check", action="store_true")
    a = p.parse_args(argv)
    print(json.dumps(export_gate(a.run, a.model, a.fpr, not a.no_cnn_check), indent=2))


if __name__ == "__main__":
    main()
