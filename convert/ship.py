"""Ship a trained, quantized model: the `.tflite` and the metadata JSON serving reads.

    python -m convert.ship --run runs/cnn --variant dynamic-int8 --out models/default.tflite

Thresholds are calibrated (`convert.evaluate.Scores.thresholds`: the trusted validation benign names,
guarded by the long-tail calibration names) with the SHIPPED (quantized) model's own scores, so the
false-positive rates in the metadata are those of the file that serves, not of the Keras model it
came from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from convert.data import InputForm
from convert.evaluate import DEFAULT_ACTIONS, FPR_TARGETS, LONG_TAIL_BOUND, Scores, fpr_name, threshold_support
from resolverguard.encoding import NameEncoder
from resolverguard.model import ModelMetadata, load_metadata, metadata_path


def ship_metadata(run: Path, variant: str, lite_scores: npt.NDArray[np.float32]) -> ModelMetadata:
    """The shipped model's metadata: thresholds from the shipped file's own scores on the validation
    benign names, each with how many names it rests on and the 95% interval of its FPR, and which
    families the model trained on (the replay benchmark uses only the others)."""
    info = json.loads((run / "run.json").read_text())
    s = Scores.load(run)
    thresholds = s.thresholds(lite_scores)
    named = {fpr_name(f): thresholds[fpr_name(f)] for f in FPR_TARGETS}
    thresholds.update({action: thresholds[name] for action, name in DEFAULT_ACTIONS.items()})
    support = threshold_support(lite_scores[s.trusted_calibration()], named)
    tail = threshold_support(lite_scores[s.tail_calibration()], named)
    trained = info.get("trained_families", [])
    every = sorted(set(s.family[s.y == 1].tolist()) | set(trained))
    extra = {
        "quantization": variant,
        "threshold_meaning": {
            name: f"lowest score at which at most {f:g} of the trusted validation benign names score at or "
            f"above ({sup['n']} names, {sup['flagged']} at or above; FPR 95% interval "
            f"{sup['ci95'][0]:.1e}..{sup['ci95'][1]:.1e}) and the long-tail calibration names stay under "
            f"{LONG_TAIL_BOUND * f:g} at 95% confidence ({tl['n']} names, {tl['flagged']} at or above; 95% "
            f"interval {tl['ci95'][0]:.1e}..{tl['ci95'][1]:.1e})"
            for f in FPR_TARGETS
            for name, sup, tl in [(fpr_name(f), support[fpr_name(f)], tail[fpr_name(f)])]
        }
        | {a: f"default '{a}' action = {n}" for a, n in DEFAULT_ACTIONS.items()},
        "threshold_support": support,
        "tail_support": tail,
        "temperature": json.loads((run / "tflite" / "temperature.json").read_text())["temperature"],
        "training_data_digest": info["data_digest"],
        "training": {
            **{k: info.get(k) for k in ("seed", "cap", "epochs_run", "train_rows", "params", "train_seconds")},
            **{
                k: info.get(k)
                for k in ("balance", "suffix_dropout", "compounds", "width", "tail_train", "tail_eighths")
            },
            "families": trained,
            "held_out_families": [f for f in every if f not in trained],
        },
    }
    return ModelMetadata(
        model_version=f"{info['arch']}-{variant}-{datetime.now(UTC).strftime('%Y%m%d')}-{info['data_digest'][:8]}",
        architecture=info["arch"],
        encoder=NameEncoder(info["charset"], info["maxlen"]),
        input_form=InputForm(info["form"]),
        thresholds=thresholds,
        extra=extra,
    )


GATE_FPR = 0.05  # the linear stage's gate (= convert.gate's default: the Unbound gate is the same one)


def ensemble_metadata(
    run: Path, linear_run: Path, out: Path, lite_scores: npt.NDArray[np.float32], temperature: float
) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
    """The shipped scorer as the CNN + linear stage (`resolverguard.model.EnsembleScorer`, the
    configuration `e-f1-cmean` of models/REPORT.md): its scores on the run's names, computed with
    serving's own function from the quantized CNN's scores and the linear stage as serving loads it,
    and the `ensemble` metadata (the gate, the CNN's own thresholds, random-split facts)."""
    from convert.evaluate import family_recall, tpr_at_fpr
    from convert.gate import gate_threshold, stage_logits
    from convert.splits import TEST
    from resolverguard.gatestage import gate_files
    from resolverguard.model import ENSEMBLE_HOW, ensemble_scores, linear_digest
    from resolverguard.ngrams import LinearWeights

    s = Scores.load(run)
    linear_info = json.loads((linear_run / "run.json").read_text())
    if linear_info.get("data_digest") != json.loads((run / "run.json").read_text()).get("data_digest"):
        raise SystemExit(f"{linear_run} was not trained on the data {run} was")
    stage = LinearWeights.load(linear_run / "linear.npz")
    linear = stage_logits(stage, s.labels.tolist())
    pool = s.calibration()
    gate = gate_threshold(linear[pool], GATE_FPR)
    scores = ensemble_scores(lite_scores, linear, gate, temperature)
    cnn_thresholds = s.thresholds(lite_scores)
    ours = s.thresholds(scores)
    test = s.rows(TEST) & ~np.isin(s.family, json.loads((run / "run.json").read_text()).get("exclude", []))
    tail = s.long_tail()
    facts = {
        "tpr_1e-4": tpr_at_fpr(s.y[test], scores[test], 1e-4),
        "cnn_tpr_1e-4": tpr_at_fpr(s.y[test], lite_scores[test], 1e-4),
        "tail_sinkhole": float((scores[tail] >= ours[DEFAULT_ACTIONS["sinkhole"]]).mean()),
        "tail_log": float((scores[tail] >= ours[DEFAULT_ACTIONS["log"]]).mean()),
        "reach_calibration": float((linear[pool] >= gate).mean()),
        # Per family at the sinkhole, on families it trained on: the report holds the leave-family-out
        # recall against what the same scorer reaches on a family it has seen.
        "families_seen": {
            f: r["sinkhole"]
            for f, r in family_recall(
                replace(s, score=scores), test, {"sinkhole": ours[DEFAULT_ACTIONS["sinkhole"]]}
            ).items()
        },
    }
    spec = {
        "how": ENSEMBLE_HOW,
        "meaning": "names whose linear-stage logit is under the gate (benign FPR "
        f"{GATE_FPR}) score 0 and never reach the CNN; the others score sigmoid((T * CNN logit + linear "
        "logit) / 2), T the CNN's temperature.",
        "linear": gate_files(out)[0].name,
        "linear_sha256": linear_digest(stage),
        "linear_run": linear_run.name,
        "gate_logit": gate,
        "gate_fpr": GATE_FPR,
        "cnn_temperature": temperature,
        "cnn_thresholds": {**cnn_thresholds, **{a: cnn_thresholds[n] for a, n in DEFAULT_ACTIONS.items()}},
        "calibration_names": int(s.trusted_calibration().sum()),
        "random_split": facts,
    }
    return scores, spec


def ship(run: Path, variant: str, out: Path, linear_run: Path | None = None) -> dict[str, Any]:
    """Copies the variant to `out` with its metadata; refuses a variant that failed parity. With
    `linear_run` (a linear-stage run on the same data: runs/gate) the shipped scorer is the ensemble,
    whose thresholds the metadata then carries (the CNN's own in `ensemble.cnn_thresholds`)."""
    parity = json.loads((run / "tflite" / "parity.json").read_text()).get(variant, {})
    if not parity.get("ok"):
        raise SystemExit(f"refusing to ship {variant}: parity check failed or missing: {parity}")
    content = (run / "tflite" / f"{variant}.tflite").read_bytes()
    lite_scores = np.load(run / "tflite" / f"{variant}.scores.npy")
    spec = None
    if linear_run is not None:
        temperature = json.loads((run / "tflite" / "temperature.json").read_text())["temperature"]
        lite_scores, spec = ensemble_metadata(run, linear_run, out, lite_scores, temperature)
    meta = ship_metadata(run, variant, lite_scores)
    # The files' digest ends the version: two models of one day and one data set (session 18 retrained
    # on the same data) must not share it; the report tells a regeneration from a new model by it.
    files = hashlib.sha256(content + (spec or {}).get("linear_sha256", "").encode()).hexdigest()[:8]
    meta = replace(meta, model_version=f"{meta.model_version}-{files}")
    if spec is not None:
        arch = f"{meta.architecture}+linear"
        version = meta.model_version.replace(meta.architecture, arch, 1)
        meta = replace(meta, model_version=version, architecture=arch, extra={**(meta.extra or {}), "ensemble": spec})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(content)
    meta.write(out, content)
    return load_metadata(metadata_path(out)).extra or {}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m convert.ship", description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--variant", default="dynamic-int8")
    p.add_argument("--out", type=Path, default=Path("models/default.tflite"))
    p.add_argument("--linear", type=Path, help="a linear-stage run (runs/gate): ship the CNN + linear ensemble")
    a = p.parse_args(argv)
    meta = ship(a.run, a.variant, a.out, a.linear)
    print(json.dumps({k: meta[k] for k in ("model_version", "thresholds")}, indent=2))


if __name__ == "__main__":
    main()
