"""Ship a trained, quantized model: the `.tflite` and the metadata JSON serving reads.

    python -m convert.ship --run runs/cnn --variant dynamic-int8 --out models/default.tflite

Thresholds are calibrated on the validation benign names with the SHIPPED (quantized) model's own
scores, so the false-positive rates in the metadata are those of the file that serves, not of the
Keras model it came from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from convert.evaluate import DEFAULT_ACTIONS, FPR_TARGETS, Scores, calibrate, fpr_name
from convert.splits import VAL
from resolverguard.model import METADATA_FORMAT, metadata_path


def ship_metadata(run: Path, variant: str, content: bytes, lite_scores: np.ndarray) -> dict[str, Any]:
    info = json.loads((run / "run.json").read_text())
    s = Scores.load(run)
    val_benign = s.rows(VAL) & (s.y == 0)
    thresholds = calibrate(lite_scores[val_benign], FPR_TARGETS)
    thresholds.update({action: thresholds[name] for action, name in DEFAULT_ACTIONS.items()})
    return {
        "format": METADATA_FORMAT,
        "model_version": f"{info['arch']}-{variant}-{datetime.now(UTC).strftime('%Y%m%d')}-{info['data_digest'][:8]}",
        "architecture": info["arch"],
        "quantization": variant,
        "input": {
            "form": info["form"],
            "charset": info["charset"],
            "maxlen": info["maxlen"],
            "padding": "pre",
            "dtype": "int32",
        },
        "thresholds": thresholds,
        "threshold_meaning": {
            fpr_name(f): f"score at which {f:g} of validation benign names score at or above "
            f"({int(val_benign.sum())} names, so about {f * val_benign.sum():.0f} names)"
            for f in FPR_TARGETS
        }
        | {a: f"default '{a}' action = {n}" for a, n in DEFAULT_ACTIONS.items()},
        "temperature": json.loads((run / "tflite" / "temperature.json").read_text())["temperature"],
        "training_data_digest": info["data_digest"],
        "training": {k: info[k] for k in ("seed", "cap", "epochs_run", "train_rows", "params", "train_seconds")},
        "tflite_sha256": hashlib.sha256(content).hexdigest(),
    }


def ship(run: Path, variant: str, out: Path) -> dict[str, Any]:
    """Copies the variant to `out` with its metadata; refuses a variant that failed parity."""
    parity = json.loads((run / "tflite" / "parity.json").read_text()).get(variant, {})
    if not parity.get("ok"):
        raise SystemExit(f"refusing to ship {variant}: parity check failed or missing: {parity}")
    content = (run / "tflite" / f"{variant}.tflite").read_bytes()
    lite_scores = np.load(run / "tflite" / f"{variant}.scores.npy")
    meta = ship_metadata(run, variant, content, lite_scores)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(content)
    metadata_path(out).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m convert.ship", description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--variant", default="dynamic-int8")
    p.add_argument("--out", type=Path, default=Path("models/default.tflite"))
    a = p.parse_args(argv)
    meta = ship(a.run, a.variant, a.out)
    print(json.dumps({k: meta[k] for k in ("model_version", "thresholds")}, indent=2))


if __name__ == "__main__":
    main()
